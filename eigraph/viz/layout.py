"""The built-in layout: needs only numpy and networkx.

Areas are laid out from the inside out. Each area (and the network itself) is one level: its
populations and its sub-areas (already laid out, so of known size) are placed as a small graph,
and the area becomes a box of that size in the level above. A level is laid out either

* ``layered`` (Sugiyama style, left to right): cycles broken by a greedy feedback arc set,
  inputs first; an inhibitory population reciprocally wired to an excitatory one of the same
  area shares its column (the usual E/I picture: E above, I below); long edges get bend points
  so they run between nodes, not under them; barycentre sweeps reduce crossings; and an
  isotonic regression places each column so edges run as straight as the spacing allows;
* or ``spring`` (networkx's Fruchterman-Reingold, seeded), scaled until no two boxes overlap.

Edges are then routed on the final positions (:func:`eigraph.viz.geometry.route_edges`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from eigraph.viz import style
from eigraph.viz.geometry import Geometry, label_size, make_shape, place_labels, route_edges
from eigraph.viz.scene import Scene

LAYER_GAP = 64.0
NODE_GAP = 30.0
PAD = 14.0


def _chain(path: str | None) -> list[str]:
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def child_at(scene: Scene, node_id: str, level: str | None) -> str:
    chain = _chain(scene.nodes[node_id].cluster)
    idx = 0 if level is None else chain.index(level) + 1
    return f"c:{chain[idx]}" if idx < len(chain) else f"n:{node_id}"


def lca(scene: Scene, a: str, b: str) -> str | None:
    ca, cb = _chain(scene.nodes[a].cluster), _chain(scene.nodes[b].cluster)
    common = None
    for x, y in zip(ca, cb):
        if x != y:
            break
        common = x
    return common


def attachments(items, info, wedges) -> dict[str, str]:
    """Inhibitory populations reciprocally wired to an excitatory one: drawn in its column."""
    attach = {}
    for it in items:
        meta = info[it]
        if meta.get("kind") != "hidden" or meta.get("sign", 0) >= 0:
            continue
        best = None
        for other in items:
            om = info[other]
            if other == it or om.get("kind") != "hidden" or om.get("sign", 0) <= 0:
                continue
            if (it, other) in wedges and (other, it) in wedges:
                w = wedges[(it, other)] + wedges[(other, it)]
                if best is None or w > best[0]:
                    best = (w, other)
        if best:
            attach[it] = best[1]
    return attach


def _eades(nodes: list[str], edges: dict[tuple[str, str], float], info) -> list[str]:
    """A linear order with few backward edges (Eades, Lin & Smyth 1993), inputs first."""
    out_w, in_w = defaultdict(float), defaultdict(float)
    succ, pred = defaultdict(set), defaultdict(set)
    for (a, b), w in edges.items():
        out_w[a] += w
        in_w[b] += w
        succ[a].add(b)
        pred[b].add(a)
    left = set(nodes)
    rank = {n: i for i, n in enumerate(nodes)}
    s1, s2 = [], []

    def drop(n):
        left.discard(n)
        for m in succ[n]:
            in_w[m] -= edges[(n, m)]
            pred[m].discard(n)
        for m in pred[n]:
            out_w[m] -= edges[(m, n)]
            succ[m].discard(n)

    while left:
        changed = True
        while changed:
            changed = False
            for n in sorted(left, key=rank.get):
                if not (succ[n] & left) and info[n].get("kind") != "input" and (pred[n] & left):
                    s2.insert(0, n)
                    drop(n)
                    changed = True
            for n in sorted(left, key=rank.get):
                if not (pred[n] & left):
                    s1.append(n)
                    drop(n)
                    changed = True
        if not left:
            break
        pick = max(sorted(left, key=rank.get), key=lambda n: (info[n].get("kind") == "input",
                                                              -(info[n].get("kind") == "readout"),
                                                              round(out_w[n] - in_w[n], 9), -rank[n]))
        s1.append(pick)
        drop(pick)
    return s1 + s2


def _isotonic(targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pool adjacent violators: the non-decreasing sequence closest to ``targets``."""
    blocks: list[list[float]] = []  # [sum_w, sum_wt, count]
    for t, w in zip(targets, weights):
        blocks.append([w, w * t, 1])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] > blocks[-1][1] / blocks[-1][0]:
            w2, wt2, c2 = blocks.pop()
            blocks[-1][0] += w2
            blocks[-1][1] += wt2
            blocks[-1][2] += c2
    out = []
    for w, wt, c in blocks:
        out += [wt / w] * c
    return np.array(out)


def _crossings(upper: list[str], lower: list[str], links: list[tuple[str, str]]) -> int:
    pu = {n: i for i, n in enumerate(upper)}
    pl = {n: i for i, n in enumerate(lower)}
    segs = [(pu[a], pl[b]) for a, b in links if a in pu and b in pl]
    segs += [(pu[b], pl[a]) for a, b in links if b in pu and a in pl]
    count = 0
    for i in range(len(segs)):
        a1, b1 = segs[i]
        for j in range(i + 1, len(segs)):
            a2, b2 = segs[j]
            if (a1 - a2) * (b1 - b2) < 0:
                count += 1
    return count


def layered(items: list[str], size: dict, wedges: dict, info: dict, comp_edges: set, label_w: dict):
    """Positions (y down) of ``items`` and bend points per (a, b) item pair."""
    attach = attachments(items, info, wedges)
    reps = [it for it in items if it not in attach]
    cw: dict[tuple[str, str], float] = defaultdict(float)
    for (a, b), w in wedges.items():
        ra, rb = attach.get(a, a), attach.get(b, b)
        if ra != rb:
            cw[(ra, rb)] += w
    order = _eades(reps, dict(cw), info)
    pos = {n: i for i, n in enumerate(order)}
    rank = {n: 0 for n in reps}
    for n in order:
        for (a, b) in cw:
            if a == n and pos[b] > pos[a]:
                rank[b] = max(rank[b], rank[a] + 1)
    top = max(rank.values(), default=0)
    for n in reps:  # readouts that feed nothing forward sit in the last column
        if info[n].get("kind") == "readout" and not any(a == n and pos[b] > pos[a] for (a, b) in cw):
            rank[n] = max(rank[n], top)
    for it, anchor in attach.items():
        rank[it] = rank[anchor]

    # blocks: an anchor with its attached interneurons (those targeting a compartment above it)
    members = defaultdict(list)
    for it, anchor in attach.items():
        members[anchor].append(it)
    blocks: dict[str, list[str]] = {}
    for r in reps:
        above = [m for m in members[r] if (m, r) in comp_edges]
        below = [m for m in members[r] if m not in above]
        blocks[r] = above + [r] + below

    # bend points for edges spanning more than one column
    n_layers = max(rank.values(), default=0) + 1
    layers: list[list[str]] = [[] for _ in range(n_layers)]  # block ids
    block_of = {}
    for r in sorted(reps, key=lambda n: info[n].get("order", 0)):
        layers[rank[r]].append(r)
        for m in blocks[r]:
            block_of[m] = r
    dummies: dict[tuple[str, str], list[str]] = {}
    links: list[tuple[str, str]] = []  # between adjacent layers
    dsize = {}
    for (a, b) in wedges:
        ra, rb = rank[a], rank[b]
        if abs(ra - rb) <= 1:
            if ra != rb:
                links.append((a, b))
            continue
        step = 1 if rb > ra else -1
        chain = []
        for r in range(ra + step, rb, step):
            d = f"d:{a}>{b}:{r}"
            chain.append(d)
            blocks[d] = [d]
            block_of[d] = d
            layers[r].append(d)
            rank[d] = r
            dsize[d] = (0.0, 10.0)
        dummies[(a, b)] = chain
        seq = [a, *chain, b]
        links += list(zip(seq, seq[1:]))

    def flat(layer):
        return [m for blk in layer for m in blocks[blk]]

    neighbours = defaultdict(list)
    for a, b in links:
        neighbours[a].append(b)
        neighbours[b].append(a)

    def sweep(direction):
        rng = range(1, n_layers) if direction > 0 else range(n_layers - 2, -1, -1)
        for r in rng:
            ref = {m: i for i, m in enumerate(flat(layers[r - direction]))}
            current = {blk: i for i, blk in enumerate(layers[r])}
            scale = max(1, len(ref)) / max(1, len(layers[r]))

            def key(blk, ref=ref, current=current, scale=scale):
                vals = [ref[nb] for m in blocks[blk] for nb in neighbours[m] if nb in ref]
                return (sum(vals) / len(vals)) if vals else current[blk] * scale

            layers[r].sort(key=key)

    def total_crossings():
        return sum(_crossings(flat(layers[r]), flat(layers[r + 1]), links) for r in range(n_layers - 1))

    best = [list(layer) for layer in layers]
    best_c = total_crossings()
    big = sum(len(layer) for layer in layers) > 400 or len(links) > 1500
    for it in range(4 if big else 10):
        sweep(1 if it % 2 == 0 else -1)
        c = best_c if big else total_crossings()
        if c < best_c:
            best, best_c = [list(layer) for layer in layers], c
        if best_c == 0:
            break
    if not big:
        layers[:] = best

    def sz(m):
        return dsize.get(m) or size[m]

    # columns: x of each layer, leaving room for the labels of the edges that cross each gap
    widths = [max((sz(m)[0] for m in flat(layer)), default=0.0) for layer in layers]
    gaps = [LAYER_GAP] * max(0, n_layers - 1)
    for (a, b), lw in label_w.items():
        if lw <= 0 or a not in rank or b not in rank:
            continue
        lo, hi = sorted((rank[a], rank[b]))
        if lo == hi:  # a lateral arc bulges into the gaps beside its column
            for g in (lo - 1, lo):
                if 0 <= g < len(gaps):
                    gaps[g] = max(gaps[g], lw * 0.6 + 36)
            continue
        span_gaps = range(lo, hi)
        need = lw + 30 if hi - lo == 1 else (lw + 30) / 1.5
        for g in span_gaps:
            gaps[g] = max(gaps[g], need)
    xs = []
    x = 0.0
    for r in range(n_layers):
        if r:
            x += widths[r - 1] / 2 + gaps[r - 1] + widths[r] / 2
        xs.append(x)

    # rows: stack each column, then pull items towards their neighbours (isotonic regression)
    y: dict[str, float] = {}
    seps: list[list[float]] = []
    lateral_labels = defaultdict(float)
    for (a, b), lw in label_w.items():
        if a in rank and b in rank and rank[a] == rank[b]:
            lateral_labels[(a, b)] = lateral_labels[(b, a)] = lw
    for r in range(n_layers):
        col = flat(layers[r])
        s = []
        for a, b in zip(col, col[1:]):
            gap = NODE_GAP if not (a.startswith("d:") or b.startswith("d:")) else 14.0
            if (a, b) in wedges or (b, a) in wedges:
                gap = max(gap, 58.0)
            s.append((sz(a)[1] + sz(b)[1]) / 2 + gap)
        seps.append(s)
        total = sum(s)
        acc = -total / 2
        for i, m in enumerate(col):
            y[m] = acc
            if i < len(s):
                acc += s[i]
    weight = defaultdict(float)
    for (a, b), w in wedges.items():
        for seq in ([a, *dummies.get((a, b), []), b],):
            for p, q in zip(seq, seq[1:]):
                weight[(p, q)] += w
                weight[(q, p)] += w
    for it in range(12):
        rng = range(n_layers) if it % 2 == 0 else range(n_layers - 1, -1, -1)
        for r in rng:
            col = flat(layers[r])
            if not col:
                continue
            targets, weights = [], []
            for m in col:
                nbs = [(nb, weight[(m, nb)] or 1.0) for nb in neighbours[m] if rank.get(nb) != r]
                if nbs:
                    tw = sum(w for _, w in nbs)
                    targets.append(sum(y[nb] * w for nb, w in nbs) / tw)
                    weights.append(1.0)
                else:
                    targets.append(y[m])
                    weights.append(0.15)
            cum = np.concatenate([[0.0], np.cumsum(seps[r])])
            z = _isotonic(np.array(targets) - cum, np.array(weights))
            for m, value in zip(col, z + cum):
                y[m] = float(value)
    positions = {m: (xs[rank[m]], y[m]) for m in items}
    bends = {pair: [(xs[rank[d]], y[d]) for d in chain] for pair, chain in dummies.items()}
    return positions, bends


def spring(items: list[str], size: dict, wedges: dict, info: dict):
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(items)
    for (a, b), w in wedges.items():
        prev = g.get_edge_data(a, b, {}).get("weight", 0.0)
        g.add_edge(a, b, weight=prev + w)
    if len(items) == 1:
        return {items[0]: (0.0, 0.0)}, {}
    pos = nx.spring_layout(g, seed=7, iterations=300, weight="weight")
    pts = {n: np.asarray(p, float) for n, p in pos.items()}
    scale = 1.0
    names = list(items)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            dx, dy = abs(pts[a][0] - pts[b][0]), abs(pts[a][1] - pts[b][1])
            need_x = (size[a][0] + size[b][0]) / 2 + 56
            need_y = (size[a][1] + size[b][1]) / 2 + 40
            sx = need_x / dx if dx > 1e-9 else float("inf")
            sy = need_y / dy if dy > 1e-9 else float("inf")
            scale = max(scale, min(sx, sy))
    scale = min(scale, 5000.0)
    return {n: (float(p[0] * scale), float(-p[1] * scale)) for n, p in pts.items()}, {}


def circle(scene: Scene) -> Geometry:
    """Nodes on a circle in file order, edges as chords bowed towards the centre (for drawings
    by area of large models, where a hierarchy would be a tangle)."""
    nodes = sorted(scene.nodes.values(), key=lambda n: n.order)
    sizes = [max(n.w, n.h) + 12.0 for n in nodes]
    total = sum(sizes)
    radius = max(140.0, total / (2 * np.pi))
    shapes, acc = {}, 0.0
    for n, size in zip(nodes, sizes):
        theta = np.pi / 2 - 2 * np.pi * (acc + size / 2) / total
        acc += size
        shapes[n.id] = make_shape(n, float(radius * np.cos(theta)), float(radius * np.sin(theta)))
    from eigraph.viz.geometry import clip, quad

    paths = []
    for e in scene.edges:
        tail, head = shapes[e.source], shapes[e.target]
        p0, p2 = np.array([tail.cx, tail.cy]), np.array([head.cx, head.cy])
        d = p2 - p0
        normal = np.array([d[1], -d[0]]) / (np.hypot(*d) or 1.0)
        c = (p0 + p2) / 2 * 0.55 + normal * 0.08 * np.hypot(*d)
        paths.append(clip(quad(p0, c, p2), tail, head))
    geometry = Geometry(shapes, {}, paths, [None] * len(scene.edges), engine="built-in circle")
    geometry.compute_bounds(scene)
    return geometry


def layout(scene: Scene, mode: str = "layered") -> Geometry:
    """Place the scene with the built-in engine (``layered`` or ``spring``)."""
    size: dict[str, tuple[float, float]] = {}
    info: dict[str, dict] = {}
    rel: dict[str, tuple[float, float]] = {}  # item -> centre relative to its parent's box centre
    level_bends: dict[tuple, list] = {}  # (level, a, b) -> bend points relative to the level's centre
    box_of_level: dict[str | None, tuple[float, float]] = {}

    by_level = defaultdict(list)  # level -> [(a, b, edge index)]
    for i, e in enumerate(scene.edges):
        level = lca(scene, e.source, e.target)
        a, b = child_at(scene, e.source, level), child_at(scene, e.target, level)
        if a != b:
            by_level[level].append((a, b, i))

    def first_order(path):
        orders = [n.order for n in scene.nodes.values() if n.cluster and (n.cluster == path or
                                                                        n.cluster.startswith(path + "."))]
        return min(orders, default=0)

    def do_level(path: str | None):
        nodes, subs = scene.children(path)
        for c in subs:
            do_level(c.path)
        items = []
        for n in nodes:
            key = f"n:{n.id}"
            items.append(key)
            size[key] = n.box
            info[key] = {"kind": n.kind, "sign": n.sign, "order": n.order}
        for c in subs:
            key = f"c:{c.path}"
            items.append(key)
            info[key] = {"kind": "cluster", "sign": 0, "order": first_order(c.path)}
        items.sort(key=lambda k: info[k]["order"])
        wedges: dict[tuple[str, str], float] = defaultdict(float)
        comp_edges = set()
        label_w: dict[tuple[str, str], float] = defaultdict(float)
        for a, b, i in by_level.get(path, []):
            e = scene.edges[i]
            wedges[(a, b)] += 1.0 + e.width
            if e.compartment:
                comp_edges.add((a, b))
            if scene.labels and e.label_lines:
                label_w[(a, b)] = max(label_w[(a, b)], label_size(e)[0])
        if not items:
            box_of_level[path] = (0.0, 0.0)
            return
        dense = len(items) > 40 and len(wedges) > 8 * len(items)  # no hierarchy to show: columns would be a tangle
        if mode == "spring" or dense:
            pos, bends = spring(items, size, dict(wedges), info)
        else:
            pos, bends = layered(items, size, dict(wedges), info, comp_edges, dict(label_w))
        x0 = min(pos[k][0] - size[k][0] / 2 for k in items)
        x1 = max(pos[k][0] + size[k][0] / 2 for k in items)
        y0 = min(pos[k][1] - size[k][1] / 2 for k in items)
        y1 = max(pos[k][1] + size[k][1] / 2 for k in items)
        for pts in bends.values():
            for bx, by in pts:
                x0, x1, y0, y1 = min(x0, bx), max(x1, bx), min(y0, by), max(y1, by)
        if path is not None:
            title = scene.clusters[path].label
            title_h = style.AREA_PT * 1.9
            x0, x1, y0, y1 = x0 - PAD, x1 + PAD, y0 - PAD - title_h, y1 + PAD
            need = style.text_width(title, style.AREA_PT, bold=True) + 2 * PAD
            if x1 - x0 < need:
                extra = (need - (x1 - x0)) / 2
                x0, x1 = x0 - extra, x1 + extra
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        for k in items:
            rel[k] = (pos[k][0] - cx, pos[k][1] - cy)
        for (a, b), pts in bends.items():
            level_bends[(path, a, b)] = [(bx - cx, by - cy) for bx, by in pts]
        box_of_level[path] = (x1 - x0, y1 - y0)
        if path is not None:
            size[f"c:{path}"] = (x1 - x0, y1 - y0)

    do_level(None)

    # absolute positions (y down), from the root
    absolute: dict[str | None, tuple[float, float]] = {None: (0.0, 0.0)}

    def centre_of_level(path):
        if path in absolute:
            return absolute[path]
        parent = scene.clusters[path].parent
        px, py = centre_of_level(parent)
        rx, ry = rel[f"c:{path}"]
        absolute[path] = (px + rx, py + ry)
        return absolute[path]

    shapes = {}
    for n in scene.nodes.values():
        px, py = centre_of_level(n.cluster)
        rx, ry = rel[f"n:{n.id}"]
        bx, by = px + rx, py + ry + n.body_offset
        shapes[n.id] = make_shape(n, bx, -by)
    clusters = {}
    for path in scene.clusters:
        cx, cy = centre_of_level(path)
        w, h = size[f"c:{path}"]
        clusters[path] = (cx - w / 2, -(cy + h / 2), cx + w / 2, -(cy - h / 2))
    routes = {}
    for level, pairs in by_level.items():
        lx, ly = centre_of_level(level)
        for a, b, i in pairs:
            pts = level_bends.get((level, a, b))
            if pts:
                routes[i] = [(lx + bx, -(ly + by)) for bx, by in pts]
    paths = route_edges(scene, shapes, clusters, routes)
    labels = place_labels(scene, shapes, paths, clusters=clusters)
    geometry = Geometry(shapes, clusters, paths, labels, engine=f"built-in {mode}")
    geometry.compute_bounds(scene)
    return geometry

