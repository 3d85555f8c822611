"""Placed shapes and edge paths: where each node is, the curve of each projection, where its
label goes. Both layout engines (the built-in one and Graphviz) produce a :class:`Geometry`;
the renderer only draws it. Coordinates are points, y upwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from eigraph.viz import style
from eigraph.viz.scene import TAB_H, Node, Scene

SAMPLES = 48


@dataclass
class Shape:
    """A node's body (and compartment tabs) at its final place."""

    kind: str  # "circle" or "box"
    cx: float
    cy: float
    w: float
    h: float
    tabs: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0, y0, x1, y1
    ports: list[tuple[float, float]] = field(default_factory=list)  # top-centre of each tab
    pad: float = 0.0  # drawn outside w x h (a readout's second outline)

    def inside(self, pts: np.ndarray, margin: float = 0.0) -> np.ndarray:
        pts = np.atleast_2d(pts)
        margin = margin + self.pad
        dx, dy = pts[:, 0] - self.cx, pts[:, 1] - self.cy
        if self.kind == "circle":
            hit = dx * dx + dy * dy <= (self.w / 2 + margin) ** 2
        else:
            hit = (np.abs(dx) <= self.w / 2 + margin) & (np.abs(dy) <= self.h / 2 + margin)
        for x0, y0, x1, y1 in self.tabs:
            hit |= (pts[:, 0] >= x0 - margin) & (pts[:, 0] <= x1 + margin) & (pts[:, 1] >= y0 - margin) & (
                pts[:, 1] <= y1 + margin)
        if self.tabs:  # the stem between body and tabs
            top = self.cy + self.h / 2
            hit |= (np.abs(dx) <= 2 + margin) & (pts[:, 1] >= top - 1) & (pts[:, 1] <= self.tabs[0][1] + 1)
        return hit

    def tabs_inside(self, pts: np.ndarray, margin: float = 0.0, skip: int | None = None) -> np.ndarray:
        pts = np.atleast_2d(pts)
        hit = np.zeros(len(pts), bool)
        for k, (x0, y0, x1, y1) in enumerate(self.tabs):
            if k == skip:
                continue
            hit |= (pts[:, 0] >= x0 - margin) & (pts[:, 0] <= x1 + margin) & (pts[:, 1] >= y0 - margin) & (
                pts[:, 1] <= y1 + margin)
        return hit

    def body_inside(self, pts: np.ndarray, margin: float = 0.0) -> np.ndarray:
        tabs, self.tabs = self.tabs, []
        try:
            return self.inside(pts, margin)
        finally:
            self.tabs = tabs

    @property
    def radius(self) -> float:
        return self.w / 2 if self.kind == "circle" else math.hypot(self.w, self.h) / 2

    def bbox(self) -> tuple[float, float, float, float]:
        x0, y0 = self.cx - self.w / 2 - self.pad, self.cy - self.h / 2 - self.pad
        x1, y1 = self.cx + self.w / 2 + self.pad, self.cy + self.h / 2 + self.pad
        for tx0, ty0, tx1, ty1 in self.tabs:
            x0, y0, x1, y1 = min(x0, tx0), min(y0, ty0), max(x1, tx1), max(y1, ty1)
        return x0, y0, x1, y1


def make_shape(node: Node, cx: float, cy: float) -> Shape:
    """The shape of ``node`` with its body centred on (cx, cy)."""
    shape = Shape("circle" if node.kind == "hidden" else "box", cx, cy, node.w, node.h,
                  pad=3.0 if node.kind == "readout" else 0.0)
    if node.compartments:
        total = sum(node.tab_w) + 4 * (len(node.tab_w) - 1)
        x = cx - total / 2
        y0 = cy + node.h / 2 + (node.tab_h - TAB_H)
        for w in node.tab_w:
            shape.tabs.append((x, y0, x + w, y0 + TAB_H))
            shape.ports.append((x + w / 2, y0 + TAB_H))
            x += w + 4
    return shape


@dataclass
class Geometry:
    shapes: dict[str, Shape]
    clusters: dict[str, tuple[float, float, float, float]]  # path -> x0, y0, x1, y1
    paths: list[np.ndarray | None]  # per scene edge: polyline from the tail's boundary to the head
    labels: list[tuple[float, float] | None]  # per scene edge: label centre
    engine: str = "built-in"
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    def compute_bounds(self, scene: Scene) -> None:
        xs, ys = [], []
        for name, s in self.shapes.items():
            x0, y0, x1, y1 = s.bbox()
            node = scene.nodes[name]
            if node.label_outside:
                y0 -= node.outside_h
                x0 = min(x0, s.cx - node.outside_w / 2)
                x1 = max(x1, s.cx + node.outside_w / 2)
            xs += [x0, x1]
            ys += [y0, y1]
        for x0, y0, x1, y1 in self.clusters.values():
            xs += [x0, x1]
            ys += [y0, y1]
        for p in self.paths:
            if p is not None and len(p):
                xs += [p[:, 0].min(), p[:, 0].max()]
                ys += [p[:, 1].min(), p[:, 1].max()]
        for edge, at in zip(scene.edges, self.labels):
            if at is not None:
                w, h = label_size(edge)
                xs += [at[0] - w / 2, at[0] + w / 2]
                ys += [at[1] - h / 2, at[1] + h / 2]
        if not xs:
            xs, ys = [0.0, 1.0], [0.0, 1.0]
        pad = 10.0
        self.bounds = (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)


def label_size(edge) -> tuple[float, float]:
    lines = edge.label_lines
    if not lines:
        return 0.0, 0.0
    w = max(style.text_width(line, style.EDGE_PT, bold=(line == edge.rule)) for line in lines)
    return w + 6.0, len(lines) * style.EDGE_PT * 1.2 + 3.0


# ---------------------------------------------------------------------------------- curves
def quad(p0, c, p2, n: int = SAMPLES) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(c) + t ** 2 * np.asarray(p2)


def cubic(p0, p1, p2, p3, n: int = SAMPLES) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def bezier_chain(points: list[tuple[float, float]], per_segment: int = 16) -> np.ndarray:
    """Sample a piecewise cubic Bezier given as p0 c1 c2 p1 c1 c2 p2 ... (Graphviz's splines)."""
    pts = np.asarray(points, dtype=float)
    out = [pts[:1]]
    for i in range(0, len(pts) - 3, 3):
        out.append(cubic(pts[i], pts[i + 1], pts[i + 2], pts[i + 3], per_segment)[1:])
    return np.vstack(out)


def smooth(points: list[tuple[float, float]], per_segment: int = 14) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` (for routes through the layout's bend points)."""
    pts = np.asarray(points, dtype=float)
    if len(pts) < 3:
        return np.linspace(pts[0], pts[-1], SAMPLES)
    ext = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    out = [pts[:1]]
    t = np.linspace(0, 1, per_segment)[1:, None]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        seg = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)
        out.append(seg)
    return np.vstack(out)


def _bisect(a, b, inside_fn, a_inside: bool, steps: int = 18):
    a, b = np.asarray(a, float), np.asarray(b, float)
    for _ in range(steps):
        m = (a + b) / 2
        if bool(inside_fn(m[None])[0]) == a_inside:
            a = m
        else:
            b = m
    return (a + b) / 2


def clip(path: np.ndarray, tail: Shape, head: Shape, head_port: tuple[float, float] | None = None,
         gap: float = 1.5, loop: bool = False) -> np.ndarray | None:
    """The part of ``path`` between leaving the tail's shape and reaching the head's (or the
    compartment port), with a small gap at both ends so arrowheads do not touch the outline."""
    if path is None or len(path) < 2:
        return None
    tail_in = tail.inside if loop else tail.body_inside
    head_in = head.inside if loop else head.body_inside
    out_tail = ~tail_in(path, gap)
    idx = np.flatnonzero(out_tail)
    if len(idx) == 0:
        return None
    i = idx[0]
    start = path[i] if i == 0 else _bisect(path[i - 1], path[i], lambda p: tail_in(p, gap), True)
    rest = path[i:]
    if head_port is not None:
        end = np.asarray(head_port, float) + np.array([0.0, gap])
        body = rest[:-1]
        j = len(body)
        hit = np.flatnonzero(head.body_inside(body, gap)) if len(body) else []
        if len(hit):
            j = hit[0]
        return np.vstack([start, body[:j], end])
    in_head = head_in(rest, gap)
    hit = np.flatnonzero(in_head)
    if len(hit) == 0:
        return np.vstack([start, rest])
    j = hit[0]
    if j == 0:
        return None
    end = _bisect(rest[j - 1], rest[j], lambda p: head_in(p, gap), False)
    return np.vstack([start, rest[:j], end])


def self_loop(shape: Shape, angle: float) -> np.ndarray:
    c = np.array([shape.cx, shape.cy])
    r = shape.radius
    reach = r + 30.0
    d1 = np.array([math.cos(angle - 0.55), math.sin(angle - 0.55)])
    d2 = np.array([math.cos(angle + 0.55), math.sin(angle + 0.55)])
    return cubic(c, c + d1 * reach * 1.35, c + d2 * reach * 1.35, c, 64)


def path_length(path: np.ndarray) -> np.ndarray:
    seg = np.hypot(*np.diff(path, axis=0).T)
    return np.concatenate([[0.0], np.cumsum(seg)])


def point_at(path: np.ndarray, fraction: float) -> np.ndarray:
    cum = path_length(path)
    target = cum[-1] * fraction
    i = int(np.searchsorted(cum, target))
    i = min(max(i, 1), len(path) - 1)
    seg = cum[i] - cum[i - 1]
    t = 0.0 if seg == 0 else (target - cum[i - 1]) / seg
    return path[i - 1] + (path[i] - path[i - 1]) * t


def trim_end(path: np.ndarray, length: float) -> np.ndarray:
    """``path`` shortened by ``length`` points at its end."""
    cum = path_length(path)
    if cum[-1] <= length + 1e-6:
        return path[:1].repeat(2, axis=0)
    return np.vstack([path[cum < cum[-1] - length], point_at(path, (cum[-1] - length) / cum[-1])[None]])


def end_direction(path: np.ndarray, back: float = 8.0) -> np.ndarray:
    cum = path_length(path)
    if cum[-1] == 0:
        return np.array([1.0, 0.0])
    p = point_at(path, max(0.0, (cum[-1] - back) / cum[-1]))
    d = path[-1] - p
    n = math.hypot(*d)
    return d / n if n else np.array([1.0, 0.0])


# ---------------------------------------------------------------------------- edge routing
def route_edges(scene: Scene, shapes: dict[str, Shape], clusters: dict, routes: dict | None = None,
                given: list | None = None) -> list[np.ndarray | None]:
    """A path per scene edge. ``routes``: bend points per edge index (from the layout);
    ``given``: ready paths (Graphviz splines) to clip to our shapes."""
    routes = routes or {}
    pairs: dict[tuple[str, str], int] = {}
    for e in scene.edges:
        pairs[(e.source, e.target)] = pairs.get((e.source, e.target), 0) + 1
    obstacles = list(shapes.items())
    # a very large drawing: no search for a better curve (it would take minutes), just clip
    fast = len(scene.edges) > 400 or len(shapes) > 200
    paths: list[np.ndarray | None] = [None] * len(scene.edges)
    drawn: list[np.ndarray] = []
    order = sorted(range(len(scene.edges)), key=lambda i: (scene.edges[i].source == scene.edges[i].target,
                                                           -scene.edges[i].width))
    loops = []
    for i in order:
        e = scene.edges[i]
        tail, head = shapes[e.source], shapes[e.target]
        port = _port(scene, e, head)
        if e.source == e.target:
            loops.append(i)
            continue
        if given is not None and given[i] is not None:
            raw = given[i]
            start = np.array([[tail.cx, tail.cy]])
            end = np.array([port]) if port is not None else np.array([[head.cx, head.cy]])
            raw = np.vstack([start, raw, end])
            path = clip(raw, tail, head, port)
            cost = 0.0 if fast else _cost(path, shapes_list=obstacles, clusters=clusters, scene=scene, e=e,
                                          drawn=drawn, port=port)
            if cost > 5.0:  # Graphviz's spline runs through a node or takes a detour: try ours
                other = _best_direct(e, tail, head, port, obstacles, clusters, scene, drawn,
                                     (e.target, e.source) in pairs)
                other_cost = _cost(other, shapes_list=obstacles, clusters=clusters, scene=scene, e=e, drawn=drawn,
                                   port=port)
                if other_cost + 3.0 < cost:
                    path = other
            paths[i] = path
        elif i in routes:
            start = (tail.cx, tail.cy)
            end = port if port is not None else (head.cx, head.cy)
            pts = [start, *routes[i], end]
            if port is not None:
                pts.insert(len(pts) - 1, (port[0], port[1] + 24))
            paths[i] = clip(smooth(pts), tail, head, port)
        elif fast:
            p0, p2 = np.array([tail.cx, tail.cy]), np.array(port if port is not None else (head.cx, head.cy))
            d = p2 - p0
            normal = np.array([d[1], -d[0]]) / (math.hypot(*d) or 1.0)
            bend = 0.15 if (e.target, e.source) in pairs else 0.0
            paths[i] = clip(quad(p0, (p0 + p2) / 2 + normal * bend * math.hypot(*d), p2, 16), tail, head, port)
        else:
            paths[i] = _best_direct(e, tail, head, port, obstacles, clusters, scene, drawn,
                                    (e.target, e.source) in pairs)
        if paths[i] is not None and not fast:
            drawn.append(paths[i])
    for i in loops:
        e = scene.edges[i]
        shape = shapes[e.source]
        if fast:
            paths[i] = clip(self_loop(shape, math.pi / 2), shape, shape, loop=True)
        else:
            paths[i] = _loop(e, shape, scene, paths, obstacles)
    return paths


def _port(scene: Scene, e, head: Shape):
    if e.compartment and head.ports:
        node = scene.nodes[e.target]
        k = node.compartments.index(e.compartment) if e.compartment in node.compartments else 0
        return head.ports[min(k, len(head.ports) - 1)]
    return None


def _cost(path, shapes_list, clusters, scene, e, drawn, port=None) -> float:
    """How bad a path is: through nodes (or compartment tabs it does not target), across areas
    that hold neither end, along other edges, and how much longer than a straight line."""
    if path is None:
        return 1e9
    cost = 0.0
    for name, s in shapes_list:
        x0, y0, x1, y1 = s.bbox()
        if path[:, 0].max() < x0 - 6 or path[:, 0].min() > x1 + 6 or path[:, 1].max() < y0 - 6 or \
                path[:, 1].min() > y1 + 6:
            continue
        if name == e.source or name == e.target:
            skip = None
            if name == e.target and port is not None and port in s.ports:
                skip = s.ports.index(port)
            cost += 1000.0 * float(s.tabs_inside(path[1:-1], 2.0, skip).sum())
            continue
        cost += 1000.0 * float(s.inside(path, 5.0).sum())
    su, sv = scene.nodes[e.source].cluster, scene.nodes[e.target].cluster
    for path_name, (x0, y0, x1, y1) in clusters.items():
        if (su and (su == path_name or su.startswith(path_name + "."))) or \
                (sv and (sv == path_name or sv.startswith(path_name + "."))):
            continue
        inside = (path[:, 0] > x0) & (path[:, 0] < x1) & (path[:, 1] > y0) & (path[:, 1] < y1)
        cost += 40.0 * float(inside.sum())
    for other in drawn:
        if other is None or len(other) == 0:
            continue
        d = np.hypot(path[::3, None, 0] - other[None, ::3, 0], path[::3, None, 1] - other[None, ::3, 1])
        cost += 3.0 * float((d.min(axis=1) < 4.0).sum())
    length = float(path_length(path)[-1])
    straight = math.hypot(*(path[-1] - path[0]))
    cost += 0.15 * max(0.0, length - 1.6 * straight - 30.0)
    return cost


def _best_direct(e, tail, head, port, obstacles, clusters, scene, drawn, has_reverse) -> np.ndarray | None:
    p0 = np.array([tail.cx, tail.cy])
    p2 = np.array(port, float) if port is not None else np.array([head.cx, head.cy])
    d = p2 - p0
    dist = math.hypot(*d) or 1.0
    normal = np.array([d[1], -d[0]]) / dist  # to the right of the direction of travel
    if has_reverse:
        bends = [0.2, 0.3, 0.42, 0.58, 0.8]
    else:
        bends = [0.0, 0.12, -0.12, 0.25, -0.25, 0.4, -0.4, 0.6, -0.6, 0.85, -0.85]
    least = 34.0 + 2.0 * e.width if has_reverse else 0.0  # a pair of opposite arrows stays apart
    best, best_cost = None, float("inf")
    for k, bend in enumerate(bends):
        c = (p0 + p2) / 2 + normal * max(bend * dist, least + (bend - 0.2) * dist)
        if port is not None:
            approach = np.array([p2[0], p2[1] + max(30.0, 0.35 * dist)])
            raw = cubic(p0, c, approach, p2, SAMPLES + 16)
        else:
            raw = quad(p0, c, p2, SAMPLES + 16)
        path = clip(raw, tail, head, port)
        cost = _cost(path, obstacles, clusters, scene, e, drawn, port) + 6.0 * abs(bend) + k * 0.5
        if cost < best_cost:
            best, best_cost = path, cost
        if best_cost < 1.0:
            break
    return best


def _loop(e, shape: Shape, scene: Scene, paths, obstacles) -> np.ndarray | None:
    taken = []
    for other, path in zip(scene.edges, paths):
        if path is None or other is e or other.source == other.target:
            continue
        for end in ((path[0], other.source), (path[-1], other.target)):
            if end[1] == e.source:
                taken.append(math.atan2(end[0][1] - shape.cy, end[0][0] - shape.cx))
    candidates = [math.pi / 2, -math.pi / 2, 3 * math.pi / 4, math.pi / 4, -3 * math.pi / 4, -math.pi / 4,
                  math.pi, 0.0]
    if shape.tabs:
        candidates = [a for a in candidates if math.sin(a) < 0.5]
    best, best_cost = None, float("inf")
    for k, angle in enumerate(candidates):
        raw = self_loop(shape, angle)
        path = clip(raw, shape, shape, loop=True)
        if path is None:
            continue
        spread = min((abs(math.atan2(math.sin(angle - t), math.cos(angle - t))) for t in taken), default=math.pi)
        cost = 1000.0 * sum(float(s.inside(path, 4.0).sum()) for name, s in obstacles if name != e.source)
        cost += 40.0 * max(0.0, 1.2 - spread) + k * 0.5
        if cost < best_cost:
            best, best_cost = path, cost
    return best


# ---------------------------------------------------------------------------------- labels
def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(scene: Scene, shapes: dict[str, Shape], paths, given: list | None = None,
                 clusters: dict | None = None) -> list[tuple[float, float] | None]:
    """A label centre per edge: beside its path (or on it, boxed, when there is no room), where
    it covers no node, no other label and as little of the other edges as possible."""
    labels: list[tuple[float, float] | None] = [None] * len(scene.edges)
    if not scene.labels:
        return labels
    boxes = []
    node_boxes = []
    for name, s in shapes.items():
        node_boxes.append(s.bbox())
        node = scene.nodes[name]
        if node.label_outside:
            node_boxes.append((s.cx - node.outside_w / 2, s.cy - s.h / 2 - node.outside_h, s.cx + node.outside_w / 2,
                               s.cy - s.h / 2))
    titles = []
    for path_name, (x0, y0, x1, y1) in (clusters or {}).items():
        titles.append((x0, y1 - style.AREA_PT * 1.9, x1, y1))
    clouds = [p[::2] for p in paths if p is not None and len(p)]
    cloud = np.vstack(clouds) if clouds else np.zeros((0, 2))
    order = sorted(range(len(scene.edges)), key=lambda i: (not scene.edges[i].plastic, -scene.edges[i].width))
    fractions = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74)
    for i in order:
        e, path = scene.edges[i], paths[i]
        if path is None or not e.label_lines:
            continue
        w, h = label_size(e)
        candidates = []
        if given is not None and given[i] is not None:
            candidates.append((given[i], -1.0))
        if e.source == e.target:
            centre = np.array([shapes[e.source].cx, shapes[e.source].cy])
            far = path[np.argmax(np.hypot(*(path - centre).T))]
            out = far - centre
            out = out / (np.hypot(*out) or 1.0)
            reach = abs(out[0]) * w / 2 + abs(out[1]) * h / 2 + 3.0
            candidates.append(((float(far[0] + out[0] * reach), float(far[1] + out[1] * reach)), 0.0))
            for side in (1, -1):
                n = np.array([-out[1], out[0]]) * side
                p = far - out * 8
                reach = abs(n[0]) * w / 2 + abs(n[1]) * h / 2 + 14.0
                candidates.append(((float(p[0] + n[0] * reach), float(p[1] + n[1] * reach)), 2.0))
        else:
            for k, f in enumerate(fractions):
                p = point_at(path, f)
                q = point_at(path, min(1.0, f + 0.03))
                t = q - point_at(path, max(0.0, f - 0.03))
                t = t / (np.hypot(*t) or 1.0)
                n = np.array([-t[1], t[0]])
                reach = abs(n[0]) * w / 2 + abs(n[1]) * h / 2 + 2.5
                pref = abs(f - 0.5) * 14 + k * 0.2
                candidates.append(((float(p[0] + n[0] * reach), float(p[1] + n[1] * reach)), pref))
                candidates.append(((float(p[0] - n[0] * reach), float(p[1] - n[1] * reach)), pref + 0.5))
                candidates.append(((float(p[0]), float(p[1])), pref + 6.0))
        best, best_cost = None, float("inf")
        for (x, y), pref in candidates:
            box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
            cost = pref
            cost += sum(_overlap(box, b) for b in node_boxes) * 4.0
            cost += sum(_overlap(box, b) for b in boxes) * 4.0
            cost += sum(_overlap(box, b) for b in titles) * 1.0
            if len(cloud):
                inside = (cloud[:, 0] > box[0]) & (cloud[:, 0] < box[2]) & (cloud[:, 1] > box[1]) & (
                    cloud[:, 1] < box[3])
                cost += 2.5 * float(inside.sum())
            if cost < best_cost:
                best, best_cost = (x, y), cost
        labels[i] = best
        x, y = best
        boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return labels
