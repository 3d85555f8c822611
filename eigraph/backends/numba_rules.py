"""Numba code for learning rules (one projection at a time), matching the NumPy reference.

Statements run in the order written, grouped by the side they live on: per batch element
(``const``), per source neuron (``pre``), per target neuron (``post``), per synapse (``syn``).
A statement only reads its own side or lower ones, so grouping keeps the written order, except
where a statement reads a trace before its equation updates it: then it reads a snapshot.

A factorised ``dw`` is a sum of terms ``post_factor x pre_factor^T / B`` (one BLAS product per
term) times a power of ``w``; the update, the Dale clip, bounds, the mask and normalisation
are one pass over each row of W.
"""

from __future__ import annotations

import numpy as np

from eigraph.compile.codetext import comment_text, ident_part
from eigraph.compile.program import PopulationPlan, Program, ProjectionPlan
from eigraph.compile.rules import (
    BATCH,
    CONST,
    DRAWS,
    POST,
    PRE,
    SELECT,
    SYN,
    draw_count,
    draw_site,
    expression_sides,
    selected_count,
    shape_of,
    term_factor,
)
from eigraph.expr import ast as ex
from eigraph.model import units

_ORDER = {CONST: 0, PRE: 1, POST: 1, SYN: 2}


# f'(x) of each activation (numpy_ref.derivative): relu's is 0 at 0, clip01's 0 at 0 and 1
_DERIVATIVES = {
    "relu": "(ONE if {v} > ZERO else ZERO)",
    "tanh": "(ONE - np.tanh({v}) ** 2)",
    "sigmoid": "((ONE / (ONE + np.exp(-{v}))) * (ONE - ONE / (ONE + np.exp(-{v}))))",
    "softplus": "(ONE / (ONE + np.exp(-{v})))",
    "linear": "ONE",
    "clip01": "(ONE if ({v} > ZERO and {v} < ONE) else ZERO)",
}


def reads_target(q: ProjectionPlan) -> bool:
    return any(isinstance(n, ex.Name) and n.dotted == "target" for s in q.rule.statements for n in ex.walk(s.value))


def reads_reward(q: ProjectionPlan, symbol: str = "reward") -> bool:
    return any(isinstance(n, ex.Name) and n.dotted == symbol for s in q.rule.statements for n in ex.walk(s.value))


class RuleEmitter:
    """Emits the learn-and-update code of one plastic projection into the kernel body."""

    def __init__(self, program: Program, q: ProjectionPlan, const):
        self.program, self.q, self.rule = program, q, q.rule
        self.const = const  # const(name, value, comment) -> constant name (module global)
        self.id = q.ident
        # a learned bias (BiasPlan): the rule of a projection from one always-on unit, pre = 1
        self.bias = q.source is None
        self.pre_pop = _ALWAYS_ON if self.bias else program.populations[q.source]
        self.post_pop = program.populations[q.target]
        self.sparse = q.weights.is_sparse
        self.analysis = q.rule.analysis
        self.numbers: dict[float, str] = {}
        self.snapshots: dict[str, set[int]] = {}  # trace -> statement positions that read its old value
        statements = [s for s in self.rule.statements if s.kind != "init"]
        self.statements = statements
        known = self.analysis.sides
        self.side = {}
        for pos, s in enumerate(statements):
            self.side[pos] = shape_of(expression_sides(s.value, known) | (known.get(s.target, set()) if s.kind == "ode" else set()))
            if s.kind == "ode":
                self.side[pos] = self.analysis.trace_shape[s.target]
        self.ode_pos = {s.target: pos for pos, s in enumerate(statements) if s.kind == "ode"}
        self.temps = {s.target: pos for pos, s in enumerate(statements) if s.kind == "let" and s.target != "dw"}
        for pos, s in enumerate(statements):
            for node in ex.walk(s.value):
                if isinstance(node, ex.Name) and node.dotted in self.ode_pos:
                    trace_pos = self.ode_pos[node.dotted]
                    is_dw = s.kind == "let" and s.target == "dw"
                    later_group = _ORDER[self.side[pos]] > _ORDER[self.analysis.trace_shape[node.dotted]]
                    if pos < trace_pos and (later_group or is_dw):
                        self.snapshots.setdefault(node.dotted, set()).add(pos)
        self.matrix_products = self.analysis.factorised and self._inlined_reads_agree()
        self.reads_fprime = any(isinstance(n, ex.Name) and n.parts == ("post", "fprime") and n.phase is None
                                for s in statements for n in ex.walk(s.value))
        self.draws = draw_count(statements)  # streams of uniform draws: rnd_ID[t, stream, i, b]
        self.selections: dict[tuple[int, str], str] = {}  # (statement, top_fraction text) -> its array
        self._selected: dict[tuple[str, int], str] = {}  # (code of x, count) -> its array

    def _inlined_reads_agree(self) -> bool:
        """The factorised dw has its temporaries written into it, so a trace it reads through a
        temporary is read where dw is. A temporary written before the trace's equation saw the
        old value: dw then reads the snapshot. Where dw would need both the old and the new value
        of one trace, it is evaluated per synapse instead (temporaries kept in order)."""
        dw_pos = next(pos for pos, s in enumerate(self.statements) if s.kind == "let" and s.target == "dw")
        old: dict[str, set[bool]] = {}

        def visit(pos: int, seen: frozenset) -> None:
            for node in ex.walk(self.statements[pos].value):
                if not isinstance(node, ex.Name):
                    continue
                if node.dotted in self.ode_pos:
                    old.setdefault(node.dotted, set()).add(pos < self.ode_pos[node.dotted])
                elif node.dotted in self.temps and node.dotted not in seen:
                    visit(self.temps[node.dotted], seen | {node.dotted})

        visit(dw_pos, frozenset())
        if any(len(kinds) > 1 for kinds in old.values()):
            return False
        for trace, kinds in old.items():
            if kinds == {True}:
                self.snapshots.setdefault(trace, set()).add(dw_pos)
        return True

    # names ---------------------------------------------------------------------------------
    def trace_var(self, name: str) -> str:
        return f"tr_{self.id}_{ident_part(name)}"

    def temp_var(self, name: str) -> str:
        return f"tm_{self.id}_{ident_part(name)}"

    def args(self) -> list[tuple[str, str]]:
        out = [(self.trace_var(t), f"trace:{self.q.name}:{t}") for t in self.analysis.trace_shape]
        if not self.sparse and self.q.weights.mask is not None:
            out.append((f"{self.id}_mask", f"mask:{self.q.name}"))
        if self.bias:
            out.append((self.q.ident, f"biasw:{self.q.target}"))
        if self.draws:
            out.append((f"rnd_{self.id}", f"draws:{self.q.name}"))
        return out

    def number(self, value: float) -> str:
        if value not in self.numbers:
            self.numbers[value] = self.const(f"K_{self.id}_{len(self.numbers)}", value, f"a number in rule {self.rule.name}")
        return self.numbers[value]

    # expressions -----------------------------------------------------------------------------
    def expr(self, e: ex.Expr, level: str, pos: int) -> str:
        """Scalar code for ``e`` inside a loop over ``level`` (const: b; pre: j, b; post: i, b;
        syn: i, j, b with k for CSR)."""
        if isinstance(e, ex.Number):
            value = e.value if e.unit is None else e.value * units.UNITS[e.unit][1]
            return self.number(value)
        if isinstance(e, ex.Neg):
            return f"(-{self.expr(e.operand, level, pos)})"
        if isinstance(e, ex.BinOp):
            op = "**" if e.op == "^" else e.op
            return f"({self.expr(e.left, level, pos)} {op} {self.expr(e.right, level, pos)})"
        if isinstance(e, ex.Call):
            if e.func == "mean":
                return f"m{e.args[0].dotted}_{self.id}[b]"
            if e.func == SELECT:  # computed over the population before this statement
                return f"{self.selections[(pos, ex.to_text(e))]}[i, b]"
            if e.func in DRAWS:
                u = f"rnd_{self.id}[t, {draw_site(e)}, i, b]"
                if e.func == "uniform":
                    return u
                return f"(ONE if {u} < min(max({self.expr(e.args[0], level, pos)}, ZERO), ONE) else ZERO)"
            a = [self.expr(x, level, pos) for x in e.args]
            return {
                "exp": lambda: f"np.exp({a[0]})", "log": lambda: f"np.log({a[0]})", "sqrt": lambda: f"np.sqrt({a[0]})",
                "abs": lambda: f"abs({a[0]})", "tanh": lambda: f"np.tanh({a[0]})",
                "sigmoid": lambda: f"(ONE / (ONE + np.exp(-{a[0]})))", "relu": lambda: f"max({a[0]}, ZERO)",
                "heaviside": lambda: f"(ONE if {a[0]} > ZERO else ZERO)",
                "clip": lambda: f"min(max({a[0]}, {a[1]}), {a[2]})", "min": lambda: f"min({a[0]}, {a[1]})",
                "max": lambda: f"max({a[0]}, {a[1]})",
            }[e.func]()
        if isinstance(e, ex.Name):
            return self.name(e.dotted, level, pos)
        raise ValueError(f"cannot emit {ex.to_text(e)}")

    def name(self, name: str, level: str, pos: int) -> str:
        q, post = self.q, self.post_pop
        syn_index = "k" if self.sparse else "i, j"
        if self.bias and name.startswith("pre@"):
            return "ONE"  # the always-on unit of a learned bias
        if "@" in name:  # the value at the end of an earlier phase: kept by the simulator
            array = f"pv{self.program.phase_values.index(self.program.phase_value_key(q, name))}"
            return f"{array}[j, b]" if name.startswith("pre@") else f"{array}[i, b]"
        if name == "pre":
            return f"pre_{self.id}[j, b]"
        if name == "post":
            return f"post_{self.id}[i, b]"
        if name == "post.x":
            return f"x_{post.ident}[nxt, i, b]"
        if name == "post.fprime":  # f'(x) at the post population's new state: computed once per step
            return f"fp_{self.id}[i, b]"
        if name.startswith("post."):
            return f"c_{post.ident}_{ident_part(name[5:])}[i, b]"
        if name == "w":
            return f"{q.ident}_data[k]" if self.sparse else f"{q.ident}[i, j]"
        if name == "target":
            return f"tgt_{post.ident}[t, i, b]"
        if name == "reward":
            return "rew[t, b]"
        if name == "reward_baseline":
            return "rbar[t, b]"
        if name == "dt":
            return "DT"
        if name == "sign":
            return self.const(f"S_{self.id}", q.sign if q.sign != 0 else 1, f"sign of the source of {q.name}")
        if name == "t":
            return "((n + 1) * DT)"
        if name in self.rule.params:
            return self.const(f"P_{self.id}_{ident_part(name)}", self.rule.params[name],
                              f"{name} of rule {self.rule.name} on {q.name}")
        if name in self.temps:
            kind = self.side[self.temps[name]]
            if kind == SYN:
                return f"{self.temp_var(name)}[b]"  # per synapse: one value per batch element
            return f"{self.temp_var(name)}[{_index(kind)}]"
        if name in self.ode_pos:
            kind = self.analysis.trace_shape[name]
            var = self.trace_var(name)
            if pos in self.snapshots.get(name, ()):
                var += "_old"
            base = {SYN: syn_index, CONST: "", PRE: "j", POST: "i"}[kind]
            if self.analysis.batched[name]:
                index = f"{base}, b" if base else "b"
            else:
                index = base or "0"
            return f"{var}[{index}]"
        raise ValueError(f"unknown symbol {name}")

    # code --------------------------------------------------------------------------------------
    def emit(self, body, timing_apply: str) -> None:
        q, rule = self.q, self.rule
        pre, post = self.pre_pop, self.post_pop
        i_pre, i_post = pre.ident, post.ident
        slot_pre = {0: f"(n + 1) % {pre.history}", 1: f"n % {pre.history}"}.get(q.delay, f"(n + 1 - {q.delay}) % {pre.history}")
        body(f"# rule {comment_text(rule.name)} on {comment_text(q.name)} "
             f"({'matrix products' if self.matrix_products else 'per synapse'}, on {comment_text(rule.timing)})")
        if self.bias:
            body(f"pre_{self.id} = one_{self.id}  # a learned bias: the always-on unit, rate 1")
        else:
            body(f"pre_{self.id} = r_{i_pre}[{slot_pre}]")
        body(f"post_{self.id} = r_{i_post}[(n + 1) % {post.history}]")
        body(f"apply_{self.id} = {timing_apply}")
        if self.reads_fprime:  # once per post neuron, not once per synapse
            x = f"x_{post.ident}[nxt, i, b]"
            body(f"for i in range({post.size}):  # post.fprime: f'(x) of {comment_text(post.activation)}")
            body("    for b in range(B):")
            body(f"        fp_{self.id}[i, b] = {_DERIVATIVES[post.activation].format(v=x)}")
        uses = {n.args[0].dotted for s in self.statements for n in ex.walk(s.value)
                if isinstance(n, ex.Call) and n.func == "mean"}
        for side in sorted(uses):
            size = pre.size if side == "pre" else post.size
            body(f"for b in range(B):  # mean({side})")
            body("    acc = 0.0")
            body(f"    for z in range({size}):")
            body(f"        acc += {side}_{self.id}[z, b]")
            body(f"    m{side}_{self.id}[b] = acc / {size}")
        for trace in self.snapshots:
            body(f"{self.trace_var(trace)}_old = {self.trace_var(trace)}.copy()")
        body("tchk = 0.0  # traces must stay finite too")
        for level in (CONST, PRE, POST):
            for pos, s in enumerate(self.statements):
                if self.side[pos] == level and not (s.kind == "let" and s.target == "dw"):
                    self.select(body, s.value, pos)
                    self.statement(body, s, pos, level)
        dw_pos = next(pos for pos, s in enumerate(self.statements) if s.kind == "let" and s.target == "dw")
        if not self.matrix_products:  # (matrix products: in factorised, when dw is applied)
            for pos, s in enumerate(self.statements):
                if self.side[pos] == SYN or pos == dw_pos:
                    self.select(body, s.value, pos)
        body("if tchk != 0.0:")
        body("    status[0] = n")
        body(f"    status[1] = {1000 + self.q.index}")
        body("    return 1")
        if self.matrix_products:
            self.factorised(body)
        else:
            self.per_synapse(body)

    def select(self, body, expr: ex.Expr, pos: int) -> None:
        """Compute each ``top_fraction(x, f)`` that ``expr`` (statement ``pos``) reads: for every
        batch element, x over the post population, then 1 for the ceil(f * N) largest of them
        that are > 0 (a stable sort: on ties the lower index first), 0 elsewhere."""
        calls = [n for n in ex.walk(expr) if isinstance(n, ex.Call) and n.func == SELECT]
        for call in reversed(calls):  # inner ones first: an argument may select too
            key = (pos, ex.to_text(call))
            if key in self.selections:
                continue
            size = self.post_pop.size
            count = selected_count(call.args[1], self.rule.params, size)
            value = self.expr(call.args[0], POST, pos)
            done = self._selected
            if (value, count) in done:  # the same code reads the same values: a temporary's, inlined in dw
                self.selections[key] = done[(value, count)]
                continue
            k = len(done)
            var = f"sel_{self.id}_{k}"
            self.selections[key] = done[(value, count)] = var
            body(f"for b in range(B):  # {comment_text(ex.to_text(call))}: the {count} largest of {size}, if > 0")
            body(f"    for i in range({size}):")
            body(f"        selx_{self.id}_{k}[i] = {value}")
            if count >= size:
                body(f"    for i in range({size}):")
                body(f"        {var}[i, b] = ONE if selx_{self.id}_{k}[i] > ZERO else ZERO")
            else:
                body(f"    order = np.argsort(-selx_{self.id}_{k}, kind='mergesort')  # stable")
                body(f"    for i in range({size}):")
                body(f"        {var}[i, b] = ZERO")
                body(f"    for rank in range({count}):")
                body("        i = order[rank]")
                body(f"        if selx_{self.id}_{k}[i] > ZERO:")
                body(f"            {var}[i, b] = ONE")

    def statement(self, body, s, pos: int, level: str) -> None:
        loops = {CONST: [], PRE: [("j", self.pre_pop.size)], POST: [("i", self.post_pop.size)]}[level]
        for var, size in loops:
            body(f"for {var} in range({size}):")
            body.indent += 1
        value = self.expr(s.value, level, pos)
        if s.kind == "ode":
            var = self.trace_var(s.target)
            index = _index(level)
            if self.analysis.batched[s.target]:
                body(f"for b in range(B):  # {comment_text(s.target)}' = ...")
                body(f"    {var}[{index}] += DT * {value}")
                body(f"    tchk += {var}[{index}] - {var}[{index}]")
            else:
                shared_index = index.replace(", b", "") if level != CONST else "0"
                body(f"acc = 0.0  # {comment_text(s.target)}' = ... : shared (averaged over the batch)")
                body("for b in range(B):")
                body(f"    acc += {value}")
                body(f"{var}[{shared_index}] += DT * (acc / B)")
                body(f"tchk += {var}[{shared_index}] - {var}[{shared_index}]")
        else:
            body(f"for b in range(B):  # {comment_text(s.target)} = ...")
            body(f"    {self.temp_var(s.target)}[{_index(level)}] = {value}")
        body.indent -= len(loops)

    def scratch(self) -> list[str]:
        """Arrays allocated once before the time loop."""
        dtype = np.dtype(self.program.dtype).name
        out = []
        pre, post = self.pre_pop.size, self.post_pop.size
        if self.bias:
            out.append(f"one_{self.id} = np.ones((1, B), dtype=np.{dtype})")
        if self.reads_fprime:
            out.append(f"fp_{self.id} = np.empty(({post}, B), dtype=np.{dtype})")
        for name, pos in self.temps.items():
            kind = self.side[pos]
            shape = {CONST: "(B,)", PRE: f"({pre}, B)", POST: f"({post}, B)", SYN: "(B,)"}[kind]
            out.append(f"{self.temp_var(name)} = np.empty({shape}, dtype=np.{dtype})")
        uses = {n.args[0].dotted for s in self.statements for n in ex.walk(s.value)
                if isinstance(n, ex.Call) and n.func == "mean"}
        for side in sorted(uses):
            out.append(f"m{side}_{self.id} = np.empty(B, dtype=np.{dtype})")
        for k in range(self.selection_sites()):
            out.append(f"sel_{self.id}_{k} = np.empty(({post}, B), dtype=np.{dtype})")
            out.append(f"selx_{self.id}_{k} = np.empty({post}, dtype=np.{dtype})")
        if self.matrix_products:
            for t, term in enumerate(self.analysis.terms):
                if term_factor(term, POST) is not None or term.batch:
                    out.append(f"A_{self.id}_{t} = np.empty(({post}, B), dtype=np.{dtype})")
                if term_factor(term, PRE) is not None:
                    out.append(f"Bp_{self.id}_{t} = np.empty(({pre}, B), dtype=np.{dtype})")
        return out

    def selection_sites(self) -> int:
        """How many top_fraction arrays :meth:`emit` fills (an upper bound is not enough: the
        scratch arrays are named one by one). Counted as emit counts them."""
        seen = set()
        dw_pos = next(pos for pos, s in enumerate(self.statements) if s.kind == "let" and s.target == "dw")
        exprs = [(pos, s.value) for pos, s in enumerate(self.statements)
                 if not (self.matrix_products and pos == dw_pos)]
        if self.matrix_products:
            exprs += [(dw_pos, f) for term in self.analysis.terms for side in (POST, PRE, BATCH)
                      if (f := term_factor(term, side)) is not None]
        for pos, e in exprs:
            for n in ex.walk(e):
                if isinstance(n, ex.Call) and n.func == SELECT:
                    seen.add((pos, ex.to_text(n)))
        return len(seen)

    def factorised(self, body) -> None:
        pre, post = self.pre_pop, self.post_pop
        dw_pos = next(pos for pos, s in enumerate(self.statements) if s.kind == "let" and s.target == "dw")
        body(f"if apply_{self.id}:")
        body.indent += 1
        for term in self.analysis.terms:  # dw with its temporaries written in
            for side in (POST, PRE, BATCH):
                factor = term_factor(term, side)
                if factor is not None:
                    self.select(body, factor, dw_pos)
        pieces = []
        for t, term in enumerate(self.analysis.terms):
            post_f, pre_f, batch_f = term_factor(term, POST), term_factor(term, PRE), term_factor(term, BATCH)
            has_a = post_f is not None or batch_f is not None
            if has_a:
                a_expr = " * ".join(self.expr(f, POST, dw_pos) for f in (post_f, batch_f) if f is not None)
                body(f"for i in range({post.size}):  # term {t}: post side")
                body("    for b in range(B):")
                body(f"        A_{self.id}_{t}[i, b] = {a_expr}")
            if pre_f is not None:
                body(f"for j in range({pre.size}):  # term {t}: pre side")
                body("    for b in range(B):")
                body(f"        Bp_{self.id}_{t}[j, b] = {self.expr(pre_f, PRE, dw_pos)}")
            wp = "" if term.w_power == 0 else (" * wv" if term.w_power == 1 else f" * wv ** {term.w_power}")
            if has_a and pre_f is not None:
                if self.sparse:
                    pieces.append(("sparse-outer", t, wp))
                else:
                    body(f"G_{self.id}_{t} = np.dot(A_{self.id}_{t}, Bp_{self.id}_{t}.T)  # one BLAS product")
                    pieces.append((f"G_{self.id}_{t}[i, j] * INV_B", t, wp))
            elif has_a:  # per target neuron: the batch mean (plain loops: numba's axis sums compile slowly)
                body(f"ra_{self.id}_{t} = np.empty({post.size}, dtype=A_{self.id}_{t}.dtype)")
                body(f"for i in range({post.size}):")
                body("    acc = 0.0")
                body("    for b in range(B):")
                body(f"        acc += A_{self.id}_{t}[i, b]")
                body(f"    ra_{self.id}_{t}[i] = acc * INV_B")
                pieces.append((f"ra_{self.id}_{t}[i]", t, wp))
            elif pre_f is not None:  # per source neuron
                body(f"ca_{self.id}_{t} = np.empty({pre.size}, dtype=Bp_{self.id}_{t}.dtype)")
                body(f"for j in range({pre.size}):")
                body("    acc = 0.0")
                body("    for b in range(B):")
                body(f"        acc += Bp_{self.id}_{t}[j, b]")
                body(f"    ca_{self.id}_{t}[j] = acc * INV_B")
                pieces.append((f"ca_{self.id}_{t}[j]", t, wp))
            else:
                pieces.append(("ONE", t, wp))
        self.update_pass(body, pieces)
        body.indent -= 1

    def update_pass(self, body, pieces) -> None:
        q, program = self.q, self.program
        clip0 = program.dale and q.sign != 0
        steps = ["W += dw"] + (["Dale clip"] if clip0 else []) + (["bounds"] if q.bounds else []) + (
            ["normalize"] if q.normalize else [])
        body(f"chk = 0.0  # {', then '.join(steps)}")
        ref = self._open_synapse_loop(body, "prange" if getattr(self, "parallel", False) else "range")
        if not self.sparse and q.weights.mask is not None:
            body(f"if {q.ident}_mask[i, j] == 0:")
            body("    continue")
        body(f"wv = {ref}")
        terms = []
        for code, t, wp in pieces:
            if code == "sparse-outer":
                body(f"acc = 0.0  # term {t}: post x pre over the batch")
                body("for b in range(B):")
                body(f"    acc += A_{self.id}_{t}[i, b] * Bp_{self.id}_{t}[j, b]")
                code = "acc * INV_B"
                body(f"d{t} = {code}{wp}")
            else:
                body(f"d{t} = {code}{wp}")
            terms.append(f"d{t}")
        self._store(body, ref, " + ".join(terms) or "ZERO", clip0)
        body.indent -= 1
        self._normalize_row(body)
        body.indent -= 1
        self._nan_check(body)

    def _open_synapse_loop(self, body, loop: str) -> str:
        """Open the loops over target rows i and their synapses (j; k for CSR), indented twice;
        returns the expression of the synapse's stored weight."""
        q = self.q
        body(f"for i in {loop}({self.post_pop.size}):")
        body.indent += 1
        if q.normalize:
            body("rowsum = 0.0")
        if self.sparse:
            body(f"for k in range({q.ident}_indptr[i], {q.ident}_indptr[i + 1]):")
            body(f"    j = {q.ident}_indices[k]")
            ref = f"{q.ident}_data[k]"
        else:
            body(f"for j in range({self.pre_pop.size}):")
            ref = f"{q.ident}[i, j]"
        body.indent += 1
        return ref

    def _store(self, body, ref: str, dw: str, clip0: bool) -> None:
        q = self.q
        body(f"wn = wv + {dw}")
        if clip0:
            body("wn = max(wn, ZERO)")
        if q.bounds:
            lo = self.const(f"LO_{self.id}", q.bounds[0], f"lower bound of {q.name}")
            hi = self.const(f"HI_{self.id}", q.bounds[1], f"upper bound of {q.name}")
            body(f"wn = min(max(wn, {lo}), {hi})")
        body(f"{ref} = wn")
        if q.normalize:
            body("rowsum += abs(wn)")
        body("chk += wn - wn")

    def _normalize_row(self, body) -> None:
        q = self.q
        if not q.normalize:
            return
        target = self.const(f"NORM_{self.id}", q.normalize, f"normalize of {q.name}")
        body("if rowsum > 0.0:")
        body(f"    scale = {target} / rowsum")
        if self.sparse:
            body(f"    for k in range({q.ident}_indptr[i], {q.ident}_indptr[i + 1]):")
            body(f"        {q.ident}_data[k] *= scale")
        else:
            body(f"    for j in range({self.pre_pop.size}):")
            body(f"        {q.ident}[i, j] *= scale")

    def _nan_check(self, body) -> None:
        body("if chk != 0.0:")
        body("    status[0] = n")
        body(f"    status[1] = {1000 + self.q.index}")
        body("    return 1")

    def per_synapse(self, body) -> None:
        """Synapse traces and temporaries, and dw averaged over the batch, in one loop per synapse."""
        q = self.q
        clip0 = self.program.dale and q.sign != 0
        syn_statements = [(pos, s) for pos, s in enumerate(self.statements) if self.side[pos] == SYN
                          or (s.kind == "let" and s.target == "dw")]
        body("chk = 0.0")
        ref = self._open_synapse_loop(body, "range")
        body(f"wv = {ref}")
        body("dsum = 0.0")
        syn_index = "k" if self.sparse else "i, j"
        # statements of one synapse run over the batch in order; shared traces average over it
        for pos, s in syn_statements:
            value = self.expr(s.value, SYN, pos)
            if s.kind == "ode":
                var = self.trace_var(s.target)
                if self.analysis.batched[s.target]:
                    body(f"for b in range(B):  # {comment_text(s.target)}' = ...")
                    body(f"    {var}[{syn_index}, b] += DT * {value}")
                    body(f"    chk += {var}[{syn_index}, b] - {var}[{syn_index}, b]")
                else:
                    body(f"acc = 0.0  # {comment_text(s.target)}' = ... : shared")
                    body("for b in range(B):")
                    body(f"    acc += {value}")
                    body(f"{var}[{syn_index}] += DT * (acc / B)")
                    body(f"chk += {var}[{syn_index}] - {var}[{syn_index}]")
            elif s.target == "dw":
                body(f"if apply_{self.id}:")
                body("    for b in range(B):")
                body(f"        dsum += {value}")
            else:
                body(f"for b in range(B):  # {comment_text(s.target)} = ... (this synapse)")
                body(f"    {self.temp_var(s.target)}[b] = {value}")
        present = f" and {q.ident}_mask[i, j] != 0" if not self.sparse and q.weights.mask is not None else ""
        body(f"if apply_{self.id}{present}:  # traces run on every entry, weights change where a synapse is")
        body.indent += 1
        self._store(body, ref, "dsum * INV_B", clip0)
        body.indent -= 1
        body.indent -= 1
        if q.normalize:
            body(f"if apply_{self.id}:")
            body.indent += 1
            self._normalize_row(body)
            body.indent -= 1
        body.indent -= 1
        self._nan_check(body)


# the source of a learned bias: one neuron, always at rate 1 (never a population of the program)
_ALWAYS_ON = PopulationPlan(name="1", index=-1, size=1, role="input", sign=0, alpha=1.0, activation="linear",
                            bias=0.0, noise=0.0, x0=0.0, compartments=(), compartment_gains={}, history=1)


def _index(kind: str) -> str:
    return {CONST: "b", PRE: "j, b", POST: "i, b"}[kind]
