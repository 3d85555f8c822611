"""Constant evaluation of declaration values, with units: ``1 / sqrt(fan_in)``, ``2 * 10 ms``.

Only our own tree is evaluated (never ``eval``). Errors carry the span of the sub-expression at
fault, so a diagnostic can point into the middle of a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from eigraph.diagnostics import Span
from eigraph.expr import ast as ex
from eigraph.model import units

FUNCTIONS = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "abs": abs, "tanh": math.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)), "relu": lambda x: max(x, 0.0),
    "heaviside": lambda x: 1.0 if x > 0 else 0.0, "min": min, "max": max,
    "clip": lambda x, lo, hi: min(max(x, lo), hi),
}
ARITY = {"clip": 3, "min": 2, "max": 2}
CONSTANTS = {"pi": math.pi, "e": math.e}


class EvalError(Exception):
    def __init__(self, message: str, span: Span | None, hint: str = "", code: str = "U520"):
        super().__init__(message)
        self.message, self.span, self.hint, self.code = message, span, hint, code


@dataclass(frozen=True)
class Value:
    """A number with a dimension (see :mod:`eigraph.model.units`); ``magnitude`` is in SI/steps."""

    magnitude: float
    dim: dict = field(default_factory=dict)


def _combine(a: dict, b: dict, sign: int) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + sign * v
    return {k: v for k, v in out.items() if v}


def evaluate(expr: ex.Expr, env: dict[str, Value] | None = None) -> Value:
    """Evaluate a constant expression. ``env`` binds names (``fan_in``) to values."""
    env = env or {}
    if isinstance(expr, ex.Number):
        if not math.isfinite(expr.value):
            raise EvalError(f"number '{expr.text}' is too large", expr.span, "use a number below 1e308", code="U521")
        if expr.unit is None:
            return Value(expr.value)
        if expr.unit not in units.UNITS:
            import difflib

            close = difflib.get_close_matches(expr.unit, list(units.UNITS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise EvalError(f"unknown unit '{expr.unit}'", expr.unit_span or expr.span,
                            hint + "units are ms, s and steps for time, Hz for rates", code="U508")
        dim, scale = units.UNITS[expr.unit]
        return Value(expr.value * scale, dict(dim))
    if isinstance(expr, ex.Name):
        if expr.dotted in env:
            return env[expr.dotted]
        if expr.dotted in CONSTANTS:
            return Value(CONSTANTS[expr.dotted])
        allowed = ", ".join(sorted(set(env) | set(CONSTANTS)))
        raise EvalError(f"unknown name '{expr.dotted}' in a value", expr.span,
                        f"a value may use numbers, units and {allowed}", code="N105")
    if isinstance(expr, ex.Neg):
        inner = evaluate(expr.operand, env)
        return Value(-inner.magnitude, inner.dim)
    if isinstance(expr, ex.BinOp):
        left, right = evaluate(expr.left, env), evaluate(expr.right, env)
        try:
            return _binop(expr, left, right)
        except (OverflowError, ZeroDivisionError, ValueError) as exc:
            raise EvalError(f"cannot compute '{ex.to_text(expr)}': {exc}", expr.span, "check the arithmetic",
                            code="U521") from None
    if isinstance(expr, ex.Call):
        if expr.func in ("mean", "top_fraction", "bernoulli") or (expr.func == "uniform" and not expr.args):
            raise EvalError(f"'{expr.func}(...)' is a function of a rule's equations; it cannot be used in a value",
                            expr.func_span or expr.span,
                            f"use {expr.func}(...) in an equation of a rule; a value is one number"
                            + (" (or a distribution: uniform(a, b))" if expr.func == "uniform" else ""), code="R613")
        if expr.func not in FUNCTIONS or expr.kwargs:
            raise EvalError(f"'{expr.func}(...)' cannot be used in a value here", expr.func_span or expr.span,
                            "functions in values: " + ", ".join(sorted(FUNCTIONS)), code="N108")
        want = ARITY.get(expr.func, 1)
        if len(expr.args) != want:
            raise EvalError(f"'{expr.func}' takes {want} argument(s), got {len(expr.args)}", expr.span,
                            f"for example: {expr.func}({', '.join(['x', 'lo', 'hi'][:want])})", code="N111")
        args = [evaluate(a, env) for a in expr.args]
        for a, node in zip(args, expr.args):
            if not units.is_plain(a.dim) and expr.func not in ("abs", "min", "max", "clip"):
                raise EvalError(f"'{expr.func}' needs a plain number, got {units.describe(a.dim)}", node.span,
                                "divide by a unit first, for example sqrt(tau / 1 ms)", code="U505")
        try:
            result = FUNCTIONS[expr.func](*[a.magnitude for a in args])
        except (OverflowError, ValueError, ZeroDivisionError) as exc:
            raise EvalError(f"cannot compute '{ex.to_text(expr)}': {exc}", expr.span, "check the argument",
                            code="U521") from None
        return Value(float(result), args[0].dim if expr.func in ("abs", "min", "max", "clip") else {})
    if isinstance(expr, ex.String):
        raise EvalError("a string is not a number", expr.span, "remove the double quotes", code="U505")
    if isinstance(expr, ex.ListExpr):
        raise EvalError("a list is not a number", expr.span, "this setting takes one number", code="U505")
    raise EvalError("not a value", expr.span, "write a number")


def _binop(expr: ex.BinOp, left: Value, right: Value) -> Value:
    op = expr.op
    if op in "+-":
        if units.dim_key(left.dim) != units.dim_key(right.dim):
            raise EvalError(f"cannot {'add' if op == '+' else 'subtract'} {units.describe(left.dim)} and "
                            f"{units.describe(right.dim)}", expr.span, "give both sides the same units", code="U505")
        mag = left.magnitude + right.magnitude if op == "+" else left.magnitude - right.magnitude
        return _finite(Value(mag, left.dim), expr)
    if op == "*":
        return _finite(Value(left.magnitude * right.magnitude, _combine(left.dim, right.dim, 1)), expr)
    if op == "/":
        if right.magnitude == 0:
            raise EvalError(f"division by zero in '{ex.to_text(expr)}'", expr.span, "check the divisor", code="U521")
        return _finite(Value(left.magnitude / right.magnitude, _combine(left.dim, right.dim, -1)), expr)
    if op == "^":
        if not units.is_plain(right.dim):
            raise EvalError("an exponent must be a plain number", expr.right.span, "remove the unit from the exponent",
                            code="U505")
        power = right.magnitude
        if not units.is_plain(left.dim) and power != int(power):
            raise EvalError("a quantity with units can only be raised to a whole power", expr.span,
                            "use a whole exponent, or divide by a unit first", code="U505")
        mag = float(left.magnitude) ** power
        if isinstance(mag, complex):
            raise EvalError(f"'{ex.to_text(expr)}' is not a real number", expr.span,
                            "a negative number to a fractional power has no real value", code="U521")
        dim = {k: int(v * power) for k, v in left.dim.items()}
        return _finite(Value(mag, dim), expr)
    raise EvalError(f"unknown operator {op}", expr.span, "operators are + - * / ^")


def _finite(value: Value, expr: ex.Expr) -> Value:
    if not math.isfinite(value.magnitude):
        raise EvalError(f"'{ex.to_text(expr)}' overflows", expr.span, "use smaller numbers", code="U521")
    return value
