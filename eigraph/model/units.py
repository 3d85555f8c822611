"""Units of the language: time (``ms``, ``s``, ``steps``) and rate (``Hz``).

Times are normalised to seconds; ``steps`` stay steps until the network's ``dt`` converts them.
A dimension is a small mapping from base unit to exponent: ``{"s": 1}`` is a time,
``{"s": -1}`` a rate, ``{"steps": 1}`` a number of time steps, ``{}`` a plain number.
"""

from __future__ import annotations

UNITS: dict[str, tuple[dict[str, int], float]] = {
    "ms": ({"s": 1}, 1e-3),
    "s": ({"s": 1}, 1.0),
    "steps": ({"steps": 1}, 1.0),
    "Hz": ({"s": -1}, 1.0),
}

TIME_UNITS = ("ms", "s", "steps")


def dim_key(dim: dict[str, int]) -> tuple:
    return tuple(sorted((k, v) for k, v in dim.items() if v))


def is_time(dim: dict[str, int]) -> bool:
    return dim_key(dim) in ((("s", 1),), (("steps", 1),))


def is_plain(dim: dict[str, int]) -> bool:
    return not dim_key(dim)


def describe(dim: dict[str, int]) -> str:
    key = dim_key(dim)
    names = {(): "a plain number", (("s", 1),): "a time", (("steps", 1),): "a number of steps", (("s", -1),): "a rate"}
    return names.get(key, "a quantity in " + " ".join(f"{k}^{v}" for k, v in key))
