"""Evaluate an expression tree with NumPy arrays: the reference semantics of rule equations.

Names are looked up through a callable, so the caller decides how each symbol broadcasts.
Only our own tree is evaluated; nothing here touches ``eval``.
"""

from __future__ import annotations

import numpy as np

from eigraph.expr import ast as ex
from eigraph.model import units

UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0.0),
    "heaviside": lambda x: np.where(x > 0, 1.0, 0.0),
}


def evaluate_array(expr: ex.Expr, lookup, mean=None, population=None):
    """``lookup(name)`` returns the value of a symbol; ``mean(name)`` the population mean of
    ``pre`` or ``post``; ``population(call, evaluate)`` the value of a function over the post
    population (``top_fraction``, ``bernoulli``, ``uniform``), ``evaluate`` evaluating its arguments."""
    if isinstance(expr, ex.Number):
        if expr.unit is None:
            return expr.value
        return expr.value * units.UNITS[expr.unit][1]
    if isinstance(expr, ex.Name):
        return lookup(expr.dotted)
    if isinstance(expr, ex.Neg):
        return -evaluate_array(expr.operand, lookup, mean, population)
    if isinstance(expr, ex.BinOp):
        left = evaluate_array(expr.left, lookup, mean, population)
        right = evaluate_array(expr.right, lookup, mean, population)
        if expr.op == "+":
            return left + right
        if expr.op == "-":
            return left - right
        if expr.op == "*":
            return left * right
        if expr.op == "/":
            return left / right
        return np.power(left, right)
    if isinstance(expr, ex.Call):
        if expr.func == "mean":
            return mean(expr.args[0].dotted)
        if expr.func in ("top_fraction", "bernoulli", "uniform"):
            return population(expr, lambda e: evaluate_array(e, lookup, mean, population))
        args = [evaluate_array(a, lookup, mean, population) for a in expr.args]
        if expr.func in UNARY:
            return UNARY[expr.func](args[0])
        if expr.func == "clip":
            return np.minimum(np.maximum(args[0], args[1]), args[2])
        if expr.func == "min":
            return np.minimum(args[0], args[1])
        if expr.func == "max":
            return np.maximum(args[0], args[1])
    raise ValueError(f"cannot evaluate {ex.to_text(expr)}")
