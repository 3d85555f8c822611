"""The rule compiler's analysis: what each symbol, trace and temporary of a rule depends on,
and how ``dw`` factorises.

Sides: ``pre`` (one value per source neuron), ``post`` (per target neuron), ``syn`` (per
synapse), ``batch`` (per batch element only: ``reward``, ``mean(pre)``), ``const``. A trace's
shape follows from what its equation reads (LANGUAGE.md: pre only -> per source neuron, post
only -> per target neuron, both or ``w`` -> per synapse).

A ``dw`` that is a sum of products of a pre-only factor, a post-only factor, batch factors,
constants and powers of ``w`` compiles to matrix products over the batch (BLAS); anything else
to a per-synapse kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eigraph.expr import ast as ex
from eigraph.frontend import ast

PRE, POST, SYN, BATCH, CONST = "pre", "post", "syn", "batch", "const"

# Functions of a rule over the post population (one value per post neuron and batch element):
# the most active fraction (EIANN's max_pop_fraction) and seeded random draws.
SELECT = "top_fraction"
DRAWS = ("bernoulli", "uniform")
POPULATION_FUNCTIONS = (SELECT,) + DRAWS

# What each built-in symbol depends on. "w" is per synapse and has no batch dimension.
SYMBOL_SIDES = {"pre": {PRE}, "post": {POST}, "target": {POST}, "w": {"w"}, "reward": {BATCH}, "reward_baseline": {BATCH}, "dt": set(), "t": set(),
                "sign": set()}


@dataclass
class Term:
    """One product in a factorised dw: coef * (post factors) * (pre factors) * (batch factors) * w^power."""

    coef: list[ex.Expr] = field(default_factory=list)  # constant factors (parameters, numbers)
    post: list[ex.Expr] = field(default_factory=list)
    pre: list[ex.Expr] = field(default_factory=list)
    batch: list[ex.Expr] = field(default_factory=list)
    w_power: int = 0
    negative: bool = False


class NotFactorisable(Exception):
    pass


@dataclass
class RuleAnalysis:
    sides: dict[str, set]  # every trace and temporary -> the sides it depends on
    trace_shape: dict[str, str]  # trace -> pre | post | syn | const
    batched: dict[str, bool]  # trace -> keeps a batch dimension (not shared, and reads batch data)
    terms: list[Term] | None  # None: per-synapse kernel
    dw: ex.Expr
    temporaries: list[str]

    @property
    def factorised(self) -> bool:
        return self.terms is not None

    @property
    def synapse_traces(self) -> list[str]:
        return [name for name, shape in self.trace_shape.items() if shape == SYN]


def shape_of(sides: set) -> str:
    """The shape of something that depends on ``sides``: syn, pre, post or const."""
    if "w" in sides or SYN in sides or (PRE in sides and POST in sides):
        return SYN
    if PRE in sides:
        return PRE
    if POST in sides:
        return POST
    return CONST


def _walk_outside_means(expr: ex.Expr):
    """Nodes of the tree, not descending into mean(...): a population mean is per batch element."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if not (isinstance(node, ex.Call) and node.func == "mean"):
            stack.extend(node.children())


def expression_sides(expr: ex.Expr, known: dict[str, set]) -> set:
    sides: set = set()
    for node in _walk_outside_means(expr):
        if isinstance(node, ex.Name):
            if len(node.parts) == 2 and node.parts[0] == "post":
                sides.add(POST)  # post.x, post.COMPARTMENT (and their values at the end of a phase)
            elif node.phase is not None:
                sides |= SYMBOL_SIDES[node.base]  # pre@PHASE, post@PHASE
            elif node.dotted in SYMBOL_SIDES:
                sides |= SYMBOL_SIDES[node.dotted]
            elif node.dotted in known:
                sides |= known[node.dotted]
        elif isinstance(node, ex.Call) and node.func == "mean":
            sides.add(BATCH)
        elif isinstance(node, ex.Call) and node.func in POPULATION_FUNCTIONS:
            sides.add(POST)  # one value per post neuron (and batch element), whatever it reads
    return sides


def statement_sides(statements: list[ast.Statement]) -> dict[str, set]:
    """What every trace and temporary depends on (a fixpoint: traces may read each other)."""
    known: dict[str, set] = {s.target: set() for s in statements if s.kind == "ode"}
    for _ in range(len(statements) + 2):
        changed = False
        for s in statements:
            if s.kind == "init":
                continue
            sides = expression_sides(s.value, known) | known.get(s.target, set())
            if sides != known.get(s.target):
                known[s.target] = sides
                changed = True
        if not changed:
            break
    return known


def number_draws(statements: list[ast.Statement]) -> list[ast.Statement]:
    """Each ``bernoulli(p)`` / ``uniform()`` written in the rule gets its own stream of draws: the
    call is marked ``site = K`` (K counted in the order written). A temporary written into ``dw``
    keeps its mark, so its draw is the same wherever it is read."""
    import dataclasses

    count = [0]

    def rewrite(expr):
        if isinstance(expr, ex.BinOp):
            return ex.BinOp(expr.op, rewrite(expr.left), rewrite(expr.right), span=expr.span)
        if isinstance(expr, ex.Neg):
            return ex.Neg(rewrite(expr.operand), span=expr.span)
        if isinstance(expr, ex.Call):
            args = tuple(rewrite(a) for a in expr.args)
            kwargs = expr.kwargs
            if expr.func in DRAWS:
                kwargs = (ex.Keyword("site", ex.Number(float(count[0]))),)
                count[0] += 1
            return ex.Call(expr.func, args, kwargs, func_span=expr.func_span, span=expr.span)
        return expr

    return [s if s.kind == "init" else dataclasses.replace(s, value=rewrite(s.value)) for s in statements]


def draw_site(call: ex.Call) -> int:
    """The stream of a draw marked by :func:`number_draws`."""
    return int(next(k.value.value for k in call.kwargs if k.name == "site"))


def draw_count(statements: list[ast.Statement]) -> int:
    """How many streams of draws a rule (numbered by :func:`number_draws`) reads each step."""
    sites = [draw_site(n) for s in statements if s.kind != "init" for n in ex.walk(s.value)
             if isinstance(n, ex.Call) and n.func in DRAWS]
    return max(sites) + 1 if sites else 0


def selected_count(fraction: ex.Expr, params: dict[str, float], size: int) -> int:
    """How many neurons ``top_fraction(x, f)`` selects at most: ceil(f * N) in double precision
    (EIANN's ``math.ceil(max_pop_fraction * pop.size)``), within [0, N]. ``f`` reads numbers and
    parameters only (validate: R612)."""
    import math

    from eigraph.expr.evaluate import Value, evaluate

    f = evaluate(fraction, {k: Value(v) for k, v in params.items()}).magnitude
    return min(max(math.ceil(f * size), 0), size)


def select_top(values, count: int):
    """The reference selection over one population (axis 0; one column per batch element): 1
    where the value is > 0 and among the ``count`` largest of its column (ties: the lower index
    first, a stable descending sort), else 0."""
    import numpy as np

    positive = values > 0
    n = values.shape[0]
    if count >= n:
        return positive
    order = np.argsort(-values, axis=0, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n)[:, None], order.shape), axis=0)
    return positive & (rank < count)


def analyse(statements: list[ast.Statement], params: set[str]) -> RuleAnalysis:
    """Sides of traces and temporaries (a fixpoint: traces may read each other), trace shapes,
    and the factorisation of dw."""
    traces = [s for s in statements if s.kind == "ode"]
    known = statement_sides(statements)
    shared = {s.target for s in traces if s.shared}
    trace_shape = {s.target: shape_of(known[s.target]) for s in traces}
    batched = {s.target: s.target not in shared for s in traces}
    temporaries = [s.target for s in statements if s.kind == "let" and s.target != "dw"]
    dw = next(s.value for s in statements if s.kind == "let" and s.target == "dw")
    definitions = {s.target: s.value for s in statements if s.kind == "let" and s.target != "dw"}
    try:
        terms = factorise(_inline(dw, definitions), known)
    except NotFactorisable:
        terms = None
    return RuleAnalysis(known, trace_shape, batched, terms, dw, temporaries)


def _inline(expr: ex.Expr, definitions: dict[str, ex.Expr]) -> ex.Expr:
    """Replace temporaries by their definitions (they are pure functions of the step's values)."""
    if isinstance(expr, ex.Name) and len(expr.parts) == 1 and expr.dotted in definitions:
        return _inline(definitions[expr.dotted], definitions)
    if isinstance(expr, ex.BinOp):
        return ex.BinOp(expr.op, _inline(expr.left, definitions), _inline(expr.right, definitions), span=expr.span)
    if isinstance(expr, ex.Neg):
        return ex.Neg(_inline(expr.operand, definitions), span=expr.span)
    if isinstance(expr, ex.Call):
        return ex.Call(expr.func, tuple(_inline(a, definitions) for a in expr.args), expr.kwargs,
                       func_span=expr.func_span, span=expr.span)
    return expr


def _side_of(expr: ex.Expr, known: dict[str, set]) -> str:
    """The single side a factor belongs to, or raise NotFactorisable."""
    sides = expression_sides(expr, known)
    if isinstance(expr, ex.Name) and expr.dotted == "w":
        return "w"
    if "w" in sides:
        raise NotFactorisable
    sides.discard(CONST)
    neuron = sides - {BATCH}
    if len(neuron) > 1:
        raise NotFactorisable
    if neuron:
        (side,) = neuron
        if side == SYN:
            raise NotFactorisable
        return side
    return BATCH if BATCH in sides else CONST


def factorise(expr: ex.Expr, known: dict[str, set]) -> list[Term]:
    """dw as few products as possible, each of one factor per side; or raise NotFactorisable."""
    return _group(_expand(expr, known))


def _pure(expr: ex.Expr, known: dict[str, set]) -> str | None:
    """The side of a subexpression that reads one side only (and no w), else None."""
    if any(isinstance(n, ex.Name) and n.dotted == "w" for n in ex.walk(expr)):
        return None
    try:
        return _side_of(expr, known)
    except NotFactorisable:
        return None


def _expand(expr: ex.Expr, known: dict[str, set]) -> list[Term]:
    side = _pure(expr, known)
    if side is not None:  # one side only: keep it whole (post * (post - theta) is one factor)
        return [_single(side, expr)]
    if isinstance(expr, ex.BinOp) and expr.op in "+-":
        left, right = _expand(expr.left, known), _expand(expr.right, known)
        if expr.op == "-":
            right = [_negate(t) for t in right]
        return left + right
    if isinstance(expr, ex.Neg):
        return [_negate(t) for t in _expand(expr.operand, known)]
    if isinstance(expr, ex.BinOp) and expr.op == "*":
        out = []
        for a in _expand(expr.left, known):
            for b in _expand(expr.right, known):
                out.append(_merge(a, b))
        return out
    if isinstance(expr, ex.BinOp) and expr.op == "/":
        side = _side_of(expr.right, known)
        if side == "w":
            raise NotFactorisable
        reciprocal = ex.BinOp("/", ex.Number(1.0), expr.right)
        return [_merge(t, _single(side, reciprocal)) for t in _expand(expr.left, known)]
    if isinstance(expr, ex.BinOp) and expr.op == "^":
        if isinstance(expr.left, ex.Name) and expr.left.dotted == "w" and isinstance(expr.right, ex.Number) \
                and expr.right.value == int(expr.right.value) and expr.right.value >= 0:
            return [Term(w_power=int(expr.right.value))]
        return [_single(_side_of(expr, known), expr)]
    return [_single(_side_of(expr, known), expr)]


def _single(side: str, expr: ex.Expr) -> Term:
    if side == "w":
        return Term(w_power=1)
    term = Term()
    {CONST: term.coef, PRE: term.pre, POST: term.post, BATCH: term.batch}[side].append(expr)
    return term


def _merge(a: Term, b: Term) -> Term:
    return Term(a.coef + b.coef, a.post + b.post, a.pre + b.pre, a.batch + b.batch, a.w_power + b.w_power,
                a.negative != b.negative)


def _negate(t: Term) -> Term:
    return Term(t.coef, t.post, t.pre, t.batch, t.w_power, not t.negative)


def _key(exprs: list[ex.Expr]) -> tuple[str, ...]:
    return tuple(sorted(ex.to_text(e) for e in exprs))


def term_factor(t: Term, side: str) -> ex.Expr | None:
    """The product of a term's factors on one side (coefficients and sign go to the post side)."""
    factors = {PRE: t.pre, BATCH: t.batch}.get(side)
    if side == POST:
        factors = t.coef + t.post
    if not factors:
        product = None
    else:
        product = factors[0]
        for f in factors[1:]:
            product = ex.BinOp("*", product, f)
    if side == POST and t.negative:
        product = ex.Neg(product if product is not None else ex.Number(1.0))
    return product


def _group(terms: list[Term]) -> list[Term]:
    """Terms with the same pre factors, batch factors and power of w share one product:
    their post sides are summed (covariance and BCM need one matrix product each)."""
    groups: dict[tuple, list[Term]] = {}
    for t in terms:
        groups.setdefault((_key(t.pre), _key(t.batch), t.w_power), []).append(t)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        total = None
        for t in members:
            part = term_factor(t, POST) or ex.Number(1.0)
            total = part if total is None else ex.BinOp("+", total, part)
        first = members[0]
        out.append(Term([], [total], list(first.pre), list(first.batch), first.w_power, False))
    return out
