"""Colours, sizes and text measurement shared by every renderer (DOT, matplotlib, HTML).

All lengths are in points (1/72 inch): the layout, the fonts and the figure use one unit, so a
drawing saved at any size keeps its text readable and its labels where the layout put them.
"""

from __future__ import annotations

import math

# Sign colours: a dark stroke for lines and outlines, a pale fill that black text reads well on.
EXC, EXC_FILL = "#c62828", "#f9d0cc"
INH, INH_FILL = "#1f5fae", "#cfdff3"
UNS, UNS_FILL = "#6b6b6b", "#e3e3e3"
PLASTIC, PLASTIC_HALO = "#2e7d32", "#9fd4a2"
ERROR, WARNING = "#7b1fa2", "#e08600"
HIGHLIGHT = "#111111"
AREA_FILL, AREA_EDGE, AREA_TEXT = "#f6f6f4", "#a8a8a8", "#4a4a4a"
TEXT, SUBTEXT = "#1a1a1a", "#4d4d4d"
FONT = "DejaVu Sans"

SIGN_STROKE = {1: EXC, -1: INH, 0: UNS}
SIGN_FILL = {1: EXC_FILL, -1: INH_FILL, 0: UNS_FILL}
SIGN_WORD = {1: "excitatory", -1: "inhibitory", 0: "unsigned"}

# Font sizes (points).
NAME_PT = 9.5
COUNT_PT = 7.5
EDGE_PT = 7.5
AREA_PT = 10.0
TAB_PT = 7.0
TITLE_PT = 12.0
LEGEND_PT = 8.0

# Edge widths (points) for the smallest and the largest expected synapse count of a model.
WIDTH_MIN, WIDTH_MAX = 0.8, 4.2

# DejaVu Sans advance widths in em for ASCII 32..126 (regular and bold), measured once with
# matplotlib so that the DOT writer can size nodes without importing it.
_REGULAR = (
    0.318, 0.401, 0.46, 0.838, 0.636, 0.95, 0.78, 0.275, 0.39, 0.39, 0.5, 0.838, 0.318, 0.361, 0.318, 0.337,
    0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.337, 0.337, 0.838, 0.838, 0.838,
    0.531, 1.0, 0.709, 0.686, 0.698, 0.77, 0.632, 0.575, 0.775, 0.752, 0.295, 0.295, 0.656, 0.557, 0.863,
    0.748, 0.787, 0.603, 0.787, 0.695, 0.635, 0.595, 0.732, 0.684, 0.989, 0.685, 0.611, 0.685, 0.39, 0.337,
    0.39, 0.838, 0.5, 0.5, 0.613, 0.635, 0.55, 0.635, 0.615, 0.344, 0.635, 0.634, 0.278, 0.278, 0.579, 0.278,
    0.974, 0.634, 0.612, 0.635, 0.635, 0.395, 0.521, 0.392, 0.634, 0.592, 0.818, 0.592, 0.592, 0.525, 0.636,
    0.337, 0.636, 0.838)
_BOLD = (
    0.348, 0.456, 0.521, 0.838, 0.696, 1.002, 0.872, 0.306, 0.457, 0.457, 0.523, 0.838, 0.38, 0.415, 0.38,
    0.365, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.4, 0.4, 0.838, 0.838, 0.838,
    0.58, 1.0, 0.774, 0.762, 0.734, 0.83, 0.683, 0.683, 0.821, 0.837, 0.372, 0.372, 0.775, 0.637, 0.995, 0.837,
    0.85, 0.733, 0.85, 0.77, 0.68, 0.703, 0.812, 0.774, 1.103, 0.771, 0.724, 0.725, 0.457, 0.365, 0.457,
    0.838, 0.5, 0.5, 0.675, 0.716, 0.593, 0.716, 0.678, 0.405, 0.716, 0.712, 0.343, 0.343, 0.665, 0.343, 1.042,
    0.712, 0.687, 0.716, 0.716, 0.493, 0.595, 0.478, 0.712, 0.652, 0.924, 0.645, 0.652, 0.582, 0.712, 0.365,
    0.712, 0.838)


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in points of one line of DejaVu Sans text."""
    table = _BOLD if bold else _REGULAR
    total = 0.0
    for ch in text:
        code = ord(ch)
        total += table[code - 32] if 32 <= code < 127 else 0.65
    return total * size


def block_size(lines: list[str], size: float, bold: bool = False, spacing: float = 1.2) -> tuple[float, float]:
    """(width, height) in points of a block of lines."""
    if not lines:
        return 0.0, 0.0
    return max(text_width(line, size, bold) for line in lines), len(lines) * size * spacing


def body_radius(neurons: int) -> float:
    """Radius (points) of a population's circle: grows with the logarithm of its neuron count."""
    return 12.0 + 8.0 * math.log10(max(1, neurons))


def edge_width(synapses: float, lo: float, hi: float) -> float:
    """Line width (points) on a log scale between the model's smallest and largest projection."""
    if hi <= lo or synapses <= 0:
        return (WIDTH_MIN + WIDTH_MAX) / 2 if hi <= lo else WIDTH_MIN
    span = math.log10(hi) - math.log10(lo)
    t = (math.log10(max(synapses, lo)) - math.log10(lo)) / max(span, 1.0)
    if span < 1.0:  # less than a factor of 10 between the extremes: centre the widths
        t += (1.0 - span) / 2
    return WIDTH_MIN + (WIDTH_MAX - WIDTH_MIN) * min(1.0, max(0.0, t))


def human(n: float) -> str:
    """A count for people: 80, 1,200, 1.3M."""
    n = float(n)
    if n >= 1e7:
        return f"{n / 1e6:.0f}M"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{round(n):,}"
