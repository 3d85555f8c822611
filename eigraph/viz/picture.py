"""Draw a placed scene with matplotlib: areas, nodes, edges, labels, legend and findings.

One data unit is one point, so the figure this module makes has text, line widths and shapes
at the sizes the layout measured. Every node and projection carries a ``gid`` (``node-3``,
``edge-7``) that :func:`annotate_svg` turns into ids, classes and tooltips in the SVG.
"""

from __future__ import annotations

import html
import re
import textwrap

import numpy as np

from eigraph.viz import style
from eigraph.viz.geometry import Geometry, end_direction, label_size, trim_end
from eigraph.viz.scene import Scene

LEGEND_MIN_WIDTH = 470.0
BATCH_EDGES = 1500  # above this many edges, draw them as collections


def _mpl():
    from matplotlib import patches
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    return Figure, patches, Line2D


class Canvas:
    """Drawing helpers on one axes, in points."""

    def __init__(self, ax):
        self.ax = ax
        self.Figure, self.patches, self.Line2D = _mpl()

    def text(self, x, y, s, size, color=style.TEXT, bold=False, italic=False, ha="center", va="center",
             alpha=1.0, gid=None, z=6):
        t = self.ax.text(x, y, s, fontsize=size, color=color, fontweight="bold" if bold else "normal",
                         fontstyle="italic" if italic else "normal", ha=ha, va=va, alpha=alpha,
                         family=style.FONT, zorder=z)
        if gid:
            t.set_gid(gid)
        return t

    def line(self, pts, width, color, alpha=1.0, z=2, gid=None, cap="butt", dashes=None):
        pts = np.asarray(pts)
        ln = self.Line2D(pts[:, 0], pts[:, 1], linewidth=width, color=color, alpha=alpha, zorder=z,
                         solid_capstyle=cap, solid_joinstyle="round", dash_capstyle=cap)
        if dashes:
            ln.set_dashes(dashes)
        if gid:
            ln.set_gid(gid)
        self.ax.add_line(ln)
        return ln

    def add(self, patch, gid=None):
        if gid:
            patch.set_gid(gid)
        self.ax.add_patch(patch)
        return patch

    def box(self, x0, y0, x1, y1, face, edge, lw=1.0, radius=4.0, alpha=1.0, z=0, gid=None, ls="-"):
        p = self.patches.FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle=f"round,pad=0,rounding_size={radius}",
                                        facecolor=face, edgecolor=edge, linewidth=lw, alpha=alpha, zorder=z,
                                        linestyle=ls)
        return self.add(p, gid)


# ------------------------------------------------------------------------------------ nodes
def _draw_node(cv: Canvas, scene: Scene, node, shape, idx: int):
    alpha = 0.28 if node.dim else 1.0
    stroke, fill = style.SIGN_STROKE[node.sign], style.SIGN_FILL[node.sign]
    cx, cy, w, h = shape.cx, shape.cy, shape.w, shape.h
    gid = f"node-{idx}"
    z = 4
    # compartment tabs (drawn first: the stem runs under the body's outline)
    for (tx0, ty0, tx1, ty1), comp in zip(shape.tabs, node.compartments):
        cv.line([(cx, cy + h / 2 - 2), ((tx0 + tx1) / 2, ty0)], 1.6, stroke, alpha, z=z - 0.5)
        cv.box(tx0, ty0, tx1, ty1, "white", stroke, lw=1.0, radius=3.0, alpha=alpha, z=z)
        cv.text((tx0 + tx1) / 2, (ty0 + ty1) / 2, comp, style.TAB_PT, stroke, italic=True, alpha=alpha, z=z + 1)
    if node.kind == "hidden":
        patch = cv.patches.Circle((cx, cy), w / 2, facecolor=fill, edgecolor=stroke, linewidth=1.4, alpha=alpha,
                                  zorder=z)
    elif node.kind == "input":
        tip = h * 0.42
        x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
        patch = cv.patches.Polygon([(x0, y0), (x1 - tip, y0), (x1, cy), (x1 - tip, y1), (x0, y1)], closed=True,
                                   facecolor=fill, edgecolor=stroke, linewidth=1.4, alpha=alpha, zorder=z,
                                   joinstyle="round")
    elif node.kind == "readout":
        cv.box(cx - w / 2 - 3, cy - h / 2 - 3, cx + w / 2 + 3, cy + h / 2 + 3, "none", stroke, lw=1.0, radius=6,
               alpha=alpha, z=z)
        patch = cv.patches.FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0,rounding_size=4",
                                          facecolor=fill, edgecolor=stroke, linewidth=1.4, alpha=alpha, zorder=z)
    else:  # a group: an area drawn as one node, with its E/I neuron split as a bar
        patch = cv.patches.FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0,rounding_size=6",
                                          facecolor=style.AREA_FILL, edgecolor=style.AREA_EDGE, linewidth=1.2,
                                          alpha=alpha, zorder=z)
    cv.add(patch, gid)
    if node.kind == "group" and node.excitatory_fraction is not None:
        bx0, bx1, by = cx - w / 2 + 8, cx + w / 2 - 8, cy - h / 2 + 6
        split = bx0 + (bx1 - bx0) * node.excitatory_fraction
        if split > bx0:
            cv.line([(bx0, by), (split, by)], 4.0, style.EXC, alpha, z=z + 1)
        if split < bx1:
            cv.line([(split, by), (bx1, by)], 4.0, style.INH, alpha, z=z + 1)
    if node.highlight:
        ring = _ring(cv, node, shape, 4.0, style.HIGHLIGHT, 2.2)
        ring.set_zorder(z - 0.2)
    # name and neuron count
    if node.label_outside:
        top = cy - h / 2 - 2
        cv.text(cx, top - style.NAME_PT * 0.62, node.label, style.NAME_PT, style.TEXT, bold=True, alpha=alpha,
                z=z + 1)
        cv.text(cx, top - style.NAME_PT * 1.25 - style.COUNT_PT * 0.6, node.sublabel, style.COUNT_PT,
                style.SUBTEXT, alpha=alpha, z=z + 1)
    else:
        shift = -4.0 if node.kind == "input" else 0.0
        lift = 3.0 if node.kind == "group" else 0.0
        cv.text(cx + shift, cy + style.COUNT_PT * 0.55 + lift, node.label, node.name_pt, style.TEXT, bold=True,
                alpha=alpha, z=z + 1)
        cv.text(cx + shift, cy - style.NAME_PT * 0.62 + lift, node.sublabel, style.COUNT_PT, style.SUBTEXT,
                alpha=alpha, z=z + 1)


def _ring(cv: Canvas, node, shape, offset: float, color: str, lw: float, dashed: bool = False):
    cx, cy, w, h = shape.cx, shape.cy, shape.w, shape.h
    ls = (0, (3, 2)) if dashed else "-"
    if node.kind == "hidden":
        p = cv.patches.Circle((cx, cy), w / 2 + offset, facecolor="none", edgecolor=color, linewidth=lw, zorder=5,
                              linestyle=ls)
        return cv.add(p)
    return cv.box(cx - w / 2 - offset, cy - h / 2 - offset, cx + w / 2 + offset, cy + h / 2 + offset, "none", color,
                  lw=lw, radius=6, z=5, ls=ls)


def _badge(cv: Canvas, x, y, text, color, gid=None):
    r = max(7.0, style.text_width(text, 7.0, bold=True) / 2 + 3)
    cv.add(cv.patches.Circle((x, y), r, facecolor=color, edgecolor="white", linewidth=1.2, zorder=9), gid)
    cv.text(x, y, text, 7.0, "white", bold=True, z=10)


# ------------------------------------------------------------------------------------ edges
def _head_length(width: float) -> float:
    return 6.5 + 1.7 * width


def _draw_edge(cv: Canvas, scene: Scene, e, path, idx: int):
    if path is None or len(path) < 2:
        return
    alpha = 0.18 if e.dim else 0.95
    w = e.width
    color = e.color
    inhibitory = e.sign < 0
    head = _head_length(w)
    body = trim_end(path, head * 0.8 if not inhibitory else 0.0)
    for number in e.findings[:1]:
        f = scene.findings[number - 1]
        cv.line(path, w + 9.0, f.color, 0.35, z=1.5, cap="round")
    if e.plastic:
        cv.line(body, w + 5.5, style.PLASTIC_HALO, 0.9 if not e.dim else 0.3, z=1.8, cap="round")
    cv.line(body, w, color, alpha, z=2, gid=f"edge-{idx}", dashes=(4, 2.5) if e.error else None)
    tip = path[-1]
    d = end_direction(path, back=head)
    n = np.array([-d[1], d[0]])
    if inhibitory:
        half = 4.2 + 1.0 * w
        bar_w = max(2.2, 0.9 * w + 1.0)
        c = tip - d * bar_w / 2
        cv.line([c - n * half, c + n * half], bar_w, color, alpha, z=2.1, gid=f"edge-{idx}-head")
    else:
        half = 2.6 + 1.05 * w
        base = tip - d * head
        pts = [tip, base + n * half, base - n * half]
        cv.add(cv.patches.Polygon(pts, closed=True, facecolor=color, edgecolor=color, linewidth=0.6, alpha=alpha,
                                  zorder=2.1, joinstyle="miter"), f"edge-{idx}-head")


def _draw_edges_batched(cv: Canvas, scene: Scene, paths):
    """Thousands of edges as a few collections (one artist each would take minutes to draw);
    the SVG then has no group per projection."""
    from matplotlib.collections import LineCollection, PolyCollection

    lines, widths, colors, heads, head_colors = [], [], [], [], []
    for e, path in zip(scene.edges, paths):
        if path is None or len(path) < 2:
            continue
        head = _head_length(e.width) * 0.8
        d = end_direction(path, back=head)
        n = np.array([-d[1], d[0]])
        tip = path[-1]
        lines.append(trim_end(path, head * 0.8))
        widths.append(e.width)
        colors.append(e.color)
        half = 2.2 + 0.8 * e.width
        if e.sign < 0:
            heads.append([tip + n * half, tip - n * half, tip - n * half - d * 2.0, tip + n * half - d * 2.0])
        else:
            heads.append([tip, tip - d * head + n * half, tip - d * head - n * half])
        head_colors.append(e.color)
    cv.ax.add_collection(LineCollection(lines, linewidths=widths, colors=colors, alpha=0.55, zorder=2))
    cv.ax.add_collection(PolyCollection(heads, facecolors=head_colors, edgecolors="none", alpha=0.8, zorder=2.1))


def _draw_label(cv: Canvas, scene: Scene, e, at, idx: int):
    if at is None:
        return
    lines = e.label_lines
    if not lines:
        return
    w, h = label_size(e)
    x, y = at
    alpha = 0.3 if e.dim else 1.0
    cv.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2, "white", "none", lw=0, radius=2.5, alpha=0.88 * alpha, z=7,
           gid=f"edge-{idx}-label")
    top = y + h / 2 - 1.5
    for line in lines:
        is_rule = line == e.rule
        cv.text(x, top - style.EDGE_PT * 0.6, line, style.EDGE_PT, style.PLASTIC if is_rule else style.SUBTEXT,
                bold=is_rule, italic=is_rule, alpha=alpha, z=8)
        top -= style.EDGE_PT * 1.2


# ----------------------------------------------------------------------------------- legend
def _legend_items(scene: Scene) -> list[tuple[str, str, dict]]:
    items = []
    nodes = list(scene.nodes.values())
    signs = {n.sign for n in nodes if n.kind != "group"} | {1 for n in nodes if n.kind == "group"} | \
        {-1 for n in nodes if n.kind == "group"}
    for sign in (1, -1, 0):
        if sign in signs:
            items.append(("node-sign", style.SIGN_WORD[sign], {"sign": sign}))
    if any(n.kind == "input" for n in nodes):
        items.append(("node-input", "input", {}))
    if any(n.kind == "readout" for n in nodes):
        items.append(("node-readout", "readout", {}))
    if any(n.kind == "group" for n in nodes):
        items.append(("node-group", "area (bar: E / I neurons)", {}))
    if any(n.compartments for n in nodes):
        items.append(("node-tab", "dendritic compartment", {}))
    edge_signs = {e.sign for e in scene.edges}
    for sign in (1, -1, 0):
        if sign in edge_signs:
            items.append(("edge-sign", f"{style.SIGN_WORD[sign]} projection", {"sign": sign}))
    if any(e.plastic for e in scene.edges):
        items.append(("edge-plastic", "plastic (learning rule)", {}))
    if any(e.error for e in scene.edges):
        items.append(("edge-error", "error feedback (carry = error)", {}))
    if scene.edges:
        lo, hi = scene.synapse_range
        text = (f"width: synapses {style.human(lo)}–{style.human(hi)} (log)" if hi > lo * 1.01
                else f"~{style.human(lo)} synapses each")
        items.append(("edge-width", text, {}))
    if any(n.kind == "hidden" for n in nodes):
        items.append(("text", "circle area ~ log(neurons); number: neurons", {}))
    if scene.labels and scene.defaults:
        items.append(("text", "unlabelled projections: " + ", ".join(scene.defaults), {}))
    if any(f.severity == "error" for f in scene.findings):
        items.append(("finding", "error (numbered below)", {"color": style.ERROR}))
    if any(f.severity != "error" for f in scene.findings):
        items.append(("finding", "warning (numbered below)", {"color": style.WARNING}))
    return items


def _legend_icon(cv: Canvas, kind: str, x: float, y: float, opts: dict):
    if kind == "node-sign":
        cv.add(cv.patches.Circle((x + 9, y), 6.5, facecolor=style.SIGN_FILL[opts["sign"]],
                                 edgecolor=style.SIGN_STROKE[opts["sign"]], linewidth=1.2, zorder=4))
    elif kind == "node-input":
        cv.add(cv.patches.Polygon([(x, y - 6), (x + 12, y - 6), (x + 18, y), (x + 12, y + 6), (x, y + 6)],
                                  facecolor="white", edgecolor=style.UNS, linewidth=1.2, zorder=4))
    elif kind == "node-readout":
        cv.box(x - 2, y - 8, x + 20, y + 8, "none", style.UNS, lw=0.9, radius=4, z=4)
        cv.box(x + 1, y - 5, x + 17, y + 5, "white", style.UNS, lw=1.2, radius=3, z=4)
    elif kind == "node-group":
        cv.box(x - 2, y - 7, x + 22, y + 7, style.AREA_FILL, style.AREA_EDGE, lw=1.0, radius=3, z=4)
        cv.line([(x + 2, y - 3), (x + 14, y - 3)], 3.0, style.EXC, z=5)
        cv.line([(x + 14, y - 3), (x + 18, y - 3)], 3.0, style.INH, z=5)
    elif kind == "node-tab":
        cv.line([(x + 9, y - 4), (x + 9, y + 1)], 1.4, style.EXC, z=4)
        cv.box(x + 1, y + 1, x + 17, y + 8, "white", style.EXC, lw=1.0, radius=2, z=4)
        cv.add(cv.patches.Circle((x + 9, y - 8), 5, facecolor=style.EXC_FILL, edgecolor=style.EXC, linewidth=1.2,
                                 zorder=4))
    elif kind == "edge-error":
        cv.line([(x, y), (x + 15, y)], 1.6, style.UNS, z=4, dashes=(4, 2.5))
        cv.add(cv.patches.Polygon([(x + 22, y), (x + 14, y + 4), (x + 14, y - 4)], facecolor=style.UNS,
                                  edgecolor=style.UNS, linewidth=0.5, zorder=4))
    elif kind in ("edge-sign", "edge-plastic", "edge-width"):
        sign = opts.get("sign", 1)
        color = style.SIGN_STROKE[sign] if kind == "edge-sign" else style.UNS
        if kind == "edge-plastic":
            cv.line([(x, y), (x + 14, y)], 1.6 + 5.5, style.PLASTIC_HALO, 0.9, z=3, cap="round")
        if kind == "edge-width":
            cv.line([(x, y - 4), (x + 22, y - 4)], style.WIDTH_MIN, style.UNS, z=4)
            cv.line([(x, y + 3), (x + 22, y + 3)], style.WIDTH_MAX, style.UNS, z=4)
            return
        cv.line([(x, y), (x + 15 if sign >= 0 else x + 20, y)], 1.6, color, z=4)
        if sign < 0:
            cv.line([(x + 21, y - 5), (x + 21, y + 5)], 2.4, color, z=4)
        else:
            cv.add(cv.patches.Polygon([(x + 22, y), (x + 14, y + 4), (x + 14, y - 4)], facecolor=color,
                                      edgecolor=color, linewidth=0.5, zorder=4))
    elif kind == "finding":
        cv.add(cv.patches.Circle((x + 9, y), 6.5, facecolor=opts["color"], edgecolor="white", linewidth=1, zorder=4))


def _legend_layout(items, width: float):
    """Rows of (x, item) fitting ``width``; returns rows and the total height."""
    rows, row, x = [], [], 0.0
    for kind, text, opts in items:
        w = (0 if kind == "text" else 28) + style.text_width(text, style.LEGEND_PT) + 16
        if row and x + w > width:
            rows.append(row)
            row, x = [], 0.0
        row.append((x, kind, text, opts))
        x += w
    if row:
        rows.append(row)
    return rows, len(rows) * 20.0


def _wrap(text: str, width: float, size: float) -> list[str]:
    chars = max(30, int(width / (size * 0.62)))
    return textwrap.wrap(text, chars) or [""]


# ------------------------------------------------------------------------------------ figure
def render(scene: Scene, geometry: Geometry, ax=None, legend: bool = True, title: bool = True):
    """Draw the scene; returns the matplotlib Figure (a new one unless ``ax`` is given)."""
    Figure, patches, Line2D = _mpl()
    x0, y0, x1, y1 = geometry.bounds
    draw_w = x1 - x0
    total_w = max(draw_w, LEGEND_MIN_WIDTH if legend else 0.0)
    # the blocks above and below the drawing
    title_h = 40.0 if title else 0.0
    items = _legend_items(scene) if legend else []
    rows, legend_h = _legend_layout(items, total_w - 20)
    text_lines = []
    for note in scene.notes:
        text_lines += [(line, style.SUBTEXT, False) for line in _wrap("Note: " + note, total_w - 20, style.LEGEND_PT)]
    for f in scene.findings:
        marker = f"[{f.badge}] " if f.targets else f"[{f.badge}, not drawn] "
        head = f"{marker}{f.severity} {f.code}" + (f" at {f.where}" if f.where else "") + f": {f.message}"
        wrapped = _wrap(head, total_w - 20, style.LEGEND_PT)
        text_lines += [(line, f.color if i == 0 else style.TEXT, i == 0) for i, line in enumerate(wrapped)]
    below_h = (legend_h + 12 if items else 0) + len(text_lines) * style.LEGEND_PT * 1.45 + (8 if text_lines else 0)
    left = x0 - (total_w - draw_w) / 2
    right = left + total_w
    top = y1 + title_h
    bottom = y0 - below_h
    if ax is None:
        fig = Figure(figsize=((right - left) / 72.0, (top - bottom) / 72.0))
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.figure
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_axis_off()
    cv = Canvas(ax)

    if title:
        cv.text(left + 10, top - 14, scene.title, style.TITLE_PT, style.TEXT, bold=True, ha="left", z=6)
        cv.text(left + 10, top - 30, scene.subtitle, style.LEGEND_PT, style.SUBTEXT, ha="left", z=6)

    # areas, outermost first, deeper ones a shade darker
    depth = {p: p.count(".") for p in geometry.clusters}
    shades = ["#f6f6f4", "#ecece8", "#e2e2dc", "#d8d8d0"]
    for i, (path, (bx0, by0, bx1, by1)) in enumerate(sorted(geometry.clusters.items(), key=lambda kv: depth[kv[0]])):
        cluster = scene.clusters[path]
        alpha = 0.35 if cluster.dim else 1.0
        cv.box(bx0, by0, bx1, by1, shades[min(depth[path], 3)], style.AREA_EDGE, lw=1.0, radius=8, alpha=alpha,
               z=0.1 + depth[path] * 0.01, gid=f"area-{i}")
        cv.text(bx0 + 8, by1 - style.AREA_PT * 0.95, cluster.label, style.AREA_PT, style.AREA_TEXT, bold=True,
                ha="left", alpha=alpha, z=0.5)
        for number in cluster.findings[:1]:
            _badge(cv, bx1 - 8, by1 - 8, scene.findings[number - 1].badge, scene.findings[number - 1].color)

    if len(scene.edges) > BATCH_EDGES:
        _draw_edges_batched(cv, scene, geometry.paths)
    else:
        for idx, (e, path) in enumerate(zip(scene.edges, geometry.paths)):
            _draw_edge(cv, scene, e, path, idx)
    node_index = {name: i for i, name in enumerate(scene.nodes)}
    for name, node in scene.nodes.items():
        _draw_node(cv, scene, node, geometry.shapes[name], node_index[name])
    for idx, (e, at) in enumerate(zip(scene.edges, geometry.labels)):
        _draw_label(cv, scene, e, at, idx)

    # findings: a ring on each node, a numbered badge on nodes and edges
    for name, node in scene.nodes.items():
        if not node.findings:
            continue
        shape = geometry.shapes[name]
        f = scene.findings[node.findings[0] - 1]
        _ring(cv, node, shape, 5.5, f.color, 2.4, dashed=f.severity != "error")
        bx = shape.cx + (shape.w / 2) * (0.72 if node.kind == "hidden" else 1.0)
        by = shape.cy + (shape.h / 2) * (0.72 if node.kind == "hidden" else 1.0)
        for k, number in enumerate(node.findings[:3]):
            g = scene.findings[number - 1]
            _badge(cv, bx + k * 17, by, g.badge, g.color, gid=f"finding-{number}")
    for idx, (e, path) in enumerate(zip(scene.edges, geometry.paths)):
        if not e.findings or path is None:
            continue
        at = geometry.labels[idx]
        if at is not None:
            w, h = label_size(e)
            bx, by = at[0] + w / 2 + 6, at[1] + h / 2
        else:
            mid = path[len(path) // 2]
            bx, by = mid[0] + 8, mid[1] + 8
        for k, number in enumerate(e.findings[:3]):
            g = scene.findings[number - 1]
            _badge(cv, bx + k * 17, by, g.badge, g.color, gid=f"finding-{number}")

    # legend and the list of findings under the drawing
    y = y0 - 8
    for row in rows:
        y -= 10
        for x, kind, text, opts in row:
            x += left + 10
            if kind == "text":
                cv.text(x, y, text, style.LEGEND_PT, style.SUBTEXT, ha="left", italic=True)
                continue
            _legend_icon(cv, kind, x, y, opts)
            cv.text(x + 28, y, text, style.LEGEND_PT, style.TEXT, ha="left")
        y -= 10
    y -= 6
    for line, color, bold in text_lines:
        y -= style.LEGEND_PT * 1.45
        cv.text(left + 10, y + style.LEGEND_PT * 0.5, line, style.LEGEND_PT, color, bold=bold, ha="left")
    return fig


# -------------------------------------------------------------------------------------- SVG
def annotate_svg(svg: str, scene: Scene) -> str:
    """Give the SVG's node and edge groups a class, the element's name and a tooltip."""
    names = list(scene.nodes)

    def node_sub(m):
        i = int(m.group(1))
        node = scene.nodes[names[i]]
        return (f'<g id="node-{i}" class="population" data-name="{html.escape(node.id)}">'
                f"<title>{html.escape(node.tooltip)}</title>")

    def edge_sub(m):
        i = int(m.group(1))
        e = scene.edges[i]
        return (f'<g id="edge-{i}" class="projection" data-name="{html.escape(e.id)}" '
                f'data-source="{html.escape(e.source)}" data-target="{html.escape(e.target)}">'
                f"<title>{html.escape(e.tooltip)}</title>")

    svg = re.sub(r'<g id="node-(\d+)">', node_sub, svg)
    svg = re.sub(r'<g id="edge-(\d+)">', edge_sub, svg)
    return svg


__all__ = ["render", "annotate_svg"]
