"""The expression tree: values in declarations (``uniform(0, 0.1)``, ``10 ms``) and rule equations.

Every node keeps the :class:`~eigraph.diagnostics.Span` it came from; spans never take part in
equality, so two trees parsed from different files compare equal when they say the same thing.
Code for every backend is emitted from this tree, never from the user's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eigraph.diagnostics import Span

# Binding strength, for printing with the fewest parentheses.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4}


@dataclass(frozen=True)
class Expr:
    span: Span | None = field(default=None, compare=False, repr=False, kw_only=True)

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True)
class Number(Expr):
    value: float
    unit: str | None = None
    text: str | None = field(default=None, compare=False, repr=False)
    unit_span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Name(Expr):
    """``pre``, ``post.apical``; with ``phase``, the value it had at the end of that phase of the
    trial (``pre@free``): ``dotted`` then ends in ``@PHASE`` and ``base`` is the plain name."""

    parts: tuple[str, ...]
    phase: str | None = None

    @property
    def base(self) -> str:
        return ".".join(self.parts)

    @property
    def dotted(self) -> str:
        return self.base + (f"@{self.phase}" if self.phase else "")


@dataclass(frozen=True)
class String(Expr):
    value: str


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Keyword, ...] = ()
    func_span: Span | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return self.args + tuple(k.value for k in self.kwargs)


@dataclass(frozen=True)
class BinOp(Expr):
    op: str  # one of + - * / ^
    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class ListExpr(Expr):
    items: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.items


def walk(expr: Expr):
    """Every node of the tree, depth first, without recursion."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children()))


def names(expr: Expr) -> list[Name]:
    return [n for n in walk(expr) if isinstance(n, Name)]


def format_number(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return repr(float(value))
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def to_text(expr: Expr) -> str:
    """The expression as eigraph source text, with the fewest parentheses that keep its meaning."""
    return _text(expr, 0)


def _text(expr: Expr, outer: int) -> str:
    if isinstance(expr, Number):
        body = expr.text if expr.text is not None else format_number(expr.value)
        return f"{body} {expr.unit}" if expr.unit else body
    if isinstance(expr, Name):
        return expr.dotted
    if isinstance(expr, String):
        return '"' + expr.value + '"'
    if isinstance(expr, ListExpr):
        return "[" + ", ".join(_text(item, 0) for item in expr.items) + "]"
    if isinstance(expr, Call):
        parts = [_text(a, 0) for a in expr.args]
        parts += [f"{k.name} = {_text(k.value, 0)}" for k in expr.kwargs]
        return f"{expr.func}(" + ", ".join(parts) + ")"
    if isinstance(expr, Neg):
        inner = _PRECEDENCE["neg"]
        text = "-" + _text(expr.operand, inner)
        return f"({text})" if inner < outer else text
    if isinstance(expr, BinOp):
        mine = _PRECEDENCE[expr.op]
        if expr.op == "^":  # right associative: a^b^c = a^(b^c); the base binds tighter than unary
            text = f"{_text(expr.left, mine + 1)}^{_text(expr.right, mine)}"
        else:  # left associative
            text = f"{_text(expr.left, mine)} {expr.op} {_text(expr.right, mine + 1)}"
        return f"({text})" if mine < outer else text
    raise TypeError(f"not an expression node: {expr!r}")
