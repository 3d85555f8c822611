"""Graphviz: the DOT text of a scene (always available, no program needed), and the layered
layout computed by the ``dot`` program when it is installed.

The DOT text is the drawing in Graphviz's language: ``dot -Tsvg out.dot`` renders it. Besides
the styling, every node and edge carries its data (``neurons``, ``sign``, ``role``, ``area``;
``key``, ``connectivity``, ``delay``, ``learn``, ``synapses``), so ``networkx.nx_pydot.read_dot``
reads back a graph with the same nodes and the same keyed edges as the model's.

``EIGRAPH_DOT`` names the program to use (default: ``dot`` on the PATH); ``EIGRAPH_DOT=none``
turns Graphviz off, for the built-in layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict

import numpy as np

from eigraph.viz import style
from eigraph.viz.geometry import Geometry, bezier_chain, make_shape, place_labels, route_edges
from eigraph.viz.layout import attachments
from eigraph.viz.scene import Scene

DOT_TIMEOUT = 30.0


def find_dot() -> str | None:
    """The Graphviz ``dot`` program, or None."""
    choice = os.environ.get("EIGRAPH_DOT", "")
    if choice.lower() in ("none", "off", "0", "no"):
        return None
    if choice:
        return shutil.which(choice) or (choice if os.path.isfile(choice) and os.access(choice, os.X_OK) else None)
    return shutil.which("dot")


# Graphviz's own defaults, for the attribute declarations at the top of the DOT text.
_DEFAULTS = {"shape": "ellipse", "style": "", "fillcolor": "lightgrey", "color": "black", "penwidth": "1",
             "fixedsize": "false", "width": "0.75", "height": "0.5", "peripheries": "1", "fontcolor": "black",
             "arrowhead": "normal", "arrowsize": "1", "constraint": "true", "labelfontsize": "14",
             "labelfontcolor": "black", "weight": "1", "label": "\\N"}


def _q(text) -> str:
    text = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attrs(pairs: dict) -> str:
    parts = []
    for key, value in pairs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            parts.append(f"{key}={value}")  # an HTML-like label
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
        else:
            parts.append(f"{key}={_q(value)}")
    return "[" + ", ".join(parts) + "]"


def _inch(points: float) -> float:
    return round(points / 72.0, 4)


def to_dot(scene: Scene, graph=None, for_layout: bool = False, flip: bool = False) -> str:
    """The scene as DOT text. ``graph`` (the population graph) adds each element's data."""
    lines = [f"digraph {_q(scene.name)} {{"]
    same_rank = {}
    for group in _all_rank_groups(scene):
        for m in group:
            same_rank[m] = group[0]
    gattrs = {"rankdir": "LR", "fontname": style.FONT, "compound": True, "newrank": True, "splines": "true",
              "nodesep": 0.35, "ranksep": 0.75, "outputorder": "edgesfirst"}
    if not for_layout:
        gattrs.update({"label": f"{scene.title}\n{scene.subtitle}", "labelloc": "t", "labeljust": "l",
                       "fontsize": style.TITLE_PT})
    lines.append(f"  graph {_attrs(gattrs)};")
    node_lines = [f"  {_q(name)} {_attrs(_node_attrs(scene, node, graph, for_layout))};"
                  for name, node in scene.nodes.items()]
    edge_attrs = []
    for i, e in enumerate(scene.edges):
        attrs = _edge_attrs(scene, e, i, graph, for_layout)
        if e.source != e.target and same_rank.get(e.source, e.source) == same_rank.get(e.target, e.target):
            attrs["constraint"] = False  # the rank's order is set above
            # a labelled flat edge makes dot reorder the rank, and Graphviz 2.43 mixes up the
            # attributes of its label: place such labels after the layout (xlabel)
            label = attrs.pop("label", None)
            if label is not None and not for_layout:
                attrs["xlabel"] = label
            attrs.pop("headport", None)  # a port on a flat edge sends dot's spline round the rank
        edge_attrs.append(attrs)
    # Declare every attribute before its first use (safer with old Graphviz versions).
    node_defaults = {"fontname": style.FONT, "fontsize": style.NAME_PT}
    for name, node in scene.nodes.items():
        for key in _node_attrs(scene, node, graph, for_layout):
            node_defaults.setdefault(key, _DEFAULTS.get(key, ""))
    edge_defaults = {"fontname": style.FONT, "fontsize": style.EDGE_PT}
    for attrs in edge_attrs:
        for key in attrs:
            if key != "label":
                edge_defaults.setdefault(key, _DEFAULTS.get(key, ""))
    lines.append(f"  node {_attrs(node_defaults)};")
    lines.append(f"  edge {_attrs(edge_defaults)};")
    lines += node_lines
    # areas as clusters, with E/I partners on one rank as in the built-in layout
    index = {path: i for i, path in enumerate(scene.clusters)}

    def emit(path, indent):
        pad = "  " * indent
        nodes, subs = scene.children(path)
        inner = []
        for c in subs:
            inner += emit(c.path, indent + 1)
        members = [n.id for n in nodes]
        ranks = _rank_groups(scene, members)
        body = [f"{pad}  {_q(m)};" for m in members]
        for group in ranks:
            body.append(f"{pad}  {{rank=same; {' '.join(_q(m) for m in group)}}}")
            # in a left-to-right drawing, invisible edges within a rank suggest the order (dot
            # does not always follow them: layout_with_dot checks and tries the other way)
            if for_layout:
                pairs = zip(group, group[1:]) if not flip else zip(group[1:], group)
                body += [f"{pad}  {_q(a)} -> {_q(b)} [style=invis, weight=5];" for a, b in pairs]
        if path is None:
            return inner + body
        c = scene.clusters[path]
        attrs = {"label": c.label, "labeljust": "l", "style": "rounded,filled", "fillcolor": style.AREA_FILL,
                 "color": style.AREA_EDGE, "fontsize": style.AREA_PT, "fontname": style.FONT, "margin": 14}
        out = [f"{pad}subgraph {_q(f'cluster_{index[path]}')} {{", f"{pad}  graph {_attrs(attrs)};"]
        if not for_layout:
            out.append(f"{pad}  area={_q(path)};")
        return out + inner + body + [f"{pad}}}"]

    lines += emit(None, 1)
    for e, attrs in zip(scene.edges, edge_attrs):
        lines.append(f"  {_q(e.source)} -> {_q(e.target)} {_attrs(attrs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _all_rank_groups(scene: Scene) -> list[list[str]]:
    out = []
    for path in [None, *scene.clusters]:
        nodes, _ = scene.children(path)
        out += _rank_groups(scene, [n.id for n in nodes])
    return out


def _rank_groups(scene: Scene, members: list[str]) -> list[list[str]]:
    info = {m: {"kind": scene.nodes[m].kind, "sign": scene.nodes[m].sign} for m in members}
    wedges = defaultdict(float)
    inside = set(members)
    for e in scene.edges:
        if e.source in inside and e.target in inside and e.source != e.target:
            wedges[(e.source, e.target)] += 1.0
    attach = attachments(members, info, dict(wedges))
    groups = defaultdict(list)
    for it, anchor in attach.items():
        groups[anchor].append(it)
    compartment = {(e.source, e.target) for e in scene.edges if e.compartment}
    out = []
    for anchor, its in groups.items():
        above = [m for m in its if (m, anchor) in compartment]
        below = [m for m in its if m not in above]
        out.append(above + [anchor] + below)
    return out


def _node_attrs(scene: Scene, node, graph, for_layout: bool) -> dict:
    stroke, fill = style.SIGN_STROKE[node.sign], style.SIGN_FILL[node.sign]
    bw, bh = node.box
    if for_layout:
        plain_circle = node.kind == "hidden" and not node.compartments and not node.label_outside
        return {"shape": "circle" if plain_circle else "box", "fixedsize": True, "label": "",
                "width": _inch(bw if not plain_circle else node.w), "height": _inch(bh if not plain_circle else node.h)}
    shape = {"hidden": "circle", "input": "cds", "readout": "box", "group": "box"}[node.kind]
    label = f"{node.label}\n{node.sublabel}"
    if node.compartments:
        label += "\n[" + ", ".join(node.compartments) + "]"
    attrs = {
        "label": label, "shape": shape, "style": "filled" if node.kind != "readout" else "rounded,filled",
        "fillcolor": fill if node.kind != "group" else style.AREA_FILL, "color": stroke, "penwidth": 1.4,
        "fixedsize": False, "width": _inch(node.w), "height": _inch(node.h), "tooltip": node.tooltip,
        "peripheries": 2 if node.kind == "readout" else None,
        "neurons": node.size, "sign": node.sign, "role": node.kind,
    }
    if node.kind == "group":
        attrs["style"] = "rounded,filled"
    if graph is not None and node.id in graph.nodes:
        d = graph.nodes[node.id]
        attrs.update({"celltype": d.get("celltype"), "area": d.get("area") or None,
                      "compartments": ",".join(d.get("compartments") or []) or None})
    if node.findings:
        f = scene.findings[node.findings[0] - 1]
        attrs.update({"color": f.color, "penwidth": 3.0, "xlabel": " ".join(scene.findings[n - 1].badge
                                                                              for n in node.findings)})
    if node.dim:
        attrs.update({"color": stroke + "40", "fillcolor": fill + "40", "fontcolor": "#00000050"})
    if node.highlight:
        attrs["penwidth"] = 3.0
    return attrs


def _edge_attrs(scene: Scene, e, i: int, graph, for_layout: bool) -> dict:
    lines = e.label_lines if scene.labels else []
    if for_layout:
        attrs = {"id": f"e{i}"}
        if lines:
            attrs["label"] = "\n".join(lines)
        if e.compartment:
            attrs["headport"] = "n"
        return attrs
    color = e.color + ("40" if e.dim else "")
    attrs = {
        "key": e.id, "color": color, "penwidth": round(e.width, 2),
        "arrowhead": "tee" if e.sign < 0 else "normal", "arrowsize": 0.8,
        "fontcolor": style.SUBTEXT, "tooltip": e.tooltip, "sign": e.sign, "plastic": e.plastic,
        "synapses": round(e.synapses, 3),
    }
    if e.plastic:
        attrs["style"] = "bold"
    if e.error:
        attrs["style"] = "dashed"  # an error feedback (carry = error)
        attrs["carry"] = "error"
    if lines:
        if e.rule and e.rule in lines:
            body = "<BR/>".join(_html(x) for x in e.lines)
            rule = f'<FONT COLOR="{style.PLASTIC}"><B><I>{_html(e.rule)}</I></B></FONT>'
            attrs["label"] = "<" + (body + "<BR/>" if body else "") + rule + ">"
        else:
            attrs["label"] = "\n".join(lines)
    if e.compartment:
        attrs.update({"headport": "n", "headlabel": e.compartment, "labelfontsize": style.TAB_PT,
                      "labelfontcolor": e.color, "compartment": e.compartment})
    if e.findings:
        f = scene.findings[e.findings[0] - 1]
        attrs["color"] = f"{f.color}:{color}"
        attrs["xlabel"] = " ".join(scene.findings[n - 1].badge for n in e.findings)
    if graph is not None:
        data = _edge_data(graph).get(e.id)
        if data is not None:
            attrs.update({"connectivity": data["connectivity"].get("text", data["connectivity"].get("kind")),
                          "delay": data.get("delay"), "learn": data["learn"]["text"] if data.get("learn") else None})
    return attrs


_EDGE_DATA: dict = {}


def _edge_data(graph) -> dict:
    """{projection name: edge data}, built once per graph."""
    key = id(graph)
    cached = _EDGE_DATA.get(key)
    if cached is None or cached[0] is not graph:
        _EDGE_DATA.clear()
        cached = _EDGE_DATA[key] = (graph, {k: d for _, _, k, d in graph.edges(keys=True, data=True)})
    return cached[1]


# --------------------------------------------------------------------------- layout by dot
class DotFailed(Exception):
    def __init__(self, message: str, quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet


def layout_with_dot(scene: Scene, program: str, timeout: float = DOT_TIMEOUT) -> Geometry:
    """Positions and edge splines from Graphviz ``dot``; raises DotFailed when it cannot.

    dot's crossing minimisation may reorder an E/I column (interneurons above their excitatory
    partner and the reverse in the next area); then it runs again with the initial order kept
    (``mclimit``), and if the columns are still out of order the caller uses the built-in layout."""
    started = time.perf_counter()
    for flip, extra in ((False, ""), (False, "mclimit=0.01"), (True, ""), (True, "mclimit=0.01")):
        left = max(1.0, timeout - (time.perf_counter() - started))
        geometry = _run_dot(scene, program, left, extra, flip)
        if _columns_ok(scene, geometry):
            return geometry
        if not _all_rank_groups(scene):
            break
    raise DotFailed("Graphviz dot could not keep each area's E/I column in order", quiet=True)


def _columns_ok(scene: Scene, geometry: Geometry) -> bool:
    for group in _all_rank_groups(scene):
        ys = [geometry.shapes[m].cy for m in group]
        if any(a <= b for a, b in zip(ys, ys[1:])):
            return False
    return True


def _run_dot(scene: Scene, program: str, timeout: float, extra: str, flip: bool = False) -> Geometry:
    text = to_dot(scene, for_layout=True, flip=flip)
    if extra:
        text = text.replace("  graph [", f"  graph [{extra}, ", 1)
    try:
        run = subprocess.run([program, "-Tjson0"], input=text.encode("utf-8"), capture_output=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DotFailed(f"Graphviz dot took longer than {timeout:g} s") from None
    except OSError as exc:
        raise DotFailed(f"cannot run Graphviz dot ({program}): {exc.strerror or exc}") from None
    if run.returncode != 0:
        message = run.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DotFailed("Graphviz dot failed" + (f": {message[-1]}" if message else ""))
    try:
        data = json.loads(run.stdout.decode("utf-8"))
        return _read_layout(scene, data)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise DotFailed(f"could not read Graphviz's layout ({type(exc).__name__})") from None


def _pt(text: str) -> tuple[float, float]:
    x, y = text.split(",")[:2]
    return float(x), float(y)


def _read_layout(scene: Scene, data: dict) -> Geometry:
    by_index = {i: path for i, path in enumerate(scene.clusters)}
    shapes, clusters = {}, {}
    for obj in data.get("objects", []):
        name = obj.get("name", "")
        if "nodes" in obj or "subgraphs" in obj or name.startswith("cluster_"):
            if name.startswith("cluster_") and "bb" in obj:
                x0, y0, x1, y1 = (float(v) for v in obj["bb"].split(","))
                clusters[by_index[int(name[len("cluster_"):])]] = (x0, y0, x1, y1)
            continue
        if name in scene.nodes and "pos" in obj:
            node = scene.nodes[name]
            x, y = _pt(obj["pos"])
            shapes[name] = make_shape(node, x, y - node.body_offset)
    missing = set(scene.nodes) - set(shapes)
    if missing:
        raise KeyError(sorted(missing)[0])
    given: list = [None] * len(scene.edges)
    label_at: list = [None] * len(scene.edges)
    for obj in data.get("edges", []):
        ident = obj.get("id", "")
        if not ident.startswith("e"):
            continue
        i = int(ident[1:])
        e = scene.edges[i]
        if "lp" in obj:
            label_at[i] = _pt(obj["lp"])
        if "pos" not in obj or e.source == e.target:
            continue
        spline = obj["pos"].split(";")[0].split()
        tips = [tok for tok in spline if tok.startswith(("e,", "s,"))]
        pts = [_pt(tok) for tok in spline if not tok.startswith(("e,", "s,"))]
        if len(pts) < 4:
            continue
        curve = bezier_chain(pts)
        tail, head = shapes[e.source], shapes[e.target]
        if np.hypot(*(curve[0] - (head.cx, head.cy))) < np.hypot(*(curve[0] - (tail.cx, tail.cy))):
            curve = curve[::-1]
        for tok in tips:
            tip = np.array([_pt(tok[2:])])
            if np.hypot(*(tip[0] - curve[-1])) < np.hypot(*(tip[0] - curve[0])):
                curve = np.vstack([curve, tip])
            else:
                curve = np.vstack([tip, curve])
        given[i] = curve
    paths = route_edges(scene, shapes, clusters, given=given)
    labels = place_labels(scene, shapes, paths, given=label_at, clusters=clusters)
    geometry = Geometry(shapes, clusters, paths, labels, engine="graphviz dot")
    geometry.compute_bounds(scene)
    return geometry
