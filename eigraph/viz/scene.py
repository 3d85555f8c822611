"""What to draw: the population graph turned into styled nodes, edges and area clusters.

A :class:`Scene` knows what every element looks like (shape, colour, size, label, the findings
marked on it) but not where it goes; the layout (:mod:`eigraph.viz.layout`, or Graphviz through
:mod:`eigraph.viz.dot`) places it and a renderer draws it. Every renderer reads the same scene,
so the DOT text and the matplotlib picture agree.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from eigraph.diagnostics import Diagnostic, Span
from eigraph.expr.ast import format_number
from eigraph.summary import format_tau
from eigraph.viz import style

# Above these, ``detail="auto"`` draws areas instead of populations (see docs/viz.md).
MAX_POPULATIONS = 100
MAX_PROJECTIONS = 600
# In a drawing by area, at most this many area-to-area connections are drawn (the strongest).
MAX_SUMMARY_EDGES = 250
# A drawing by area with more nodes than this puts them on a circle (no hierarchy to show).
CIRCLE_GROUPS = 40


@dataclass
class Finding:
    number: int
    severity: str  # "error" or "warning"
    code: str
    message: str
    where: str  # "file:line:col" or ""
    targets: list = field(default_factory=list)  # ("node", name) | ("edge", key) | ("cluster", path)

    @property
    def color(self) -> str:
        return style.ERROR if self.severity == "error" else style.WARNING

    @property
    def badge(self) -> str:
        return f"{'E' if self.severity == 'error' else 'W'}{self.number}"


@dataclass
class Node:
    id: str  # the population's name (an area's path in a drawing by area)
    label: str  # the name shown (short inside an area box)
    sublabel: str  # the neuron count
    kind: str  # "hidden", "input", "readout" or "group" (an area drawn as one node)
    sign: int
    size: int
    cluster: str | None  # the area path of the box it sits in
    compartments: list[str] = field(default_factory=list)
    tooltip: str = ""
    dim: bool = False
    highlight: bool = False
    findings: list[int] = field(default_factory=list)
    order: int = 0  # declaration order, for stable layouts
    excitatory_fraction: float | None = None  # groups: share of excitatory neurons
    # sizes (points), set by measure()
    w: float = 0.0
    h: float = 0.0
    tab_h: float = 0.0
    tab_w: list[float] = field(default_factory=list)
    label_outside: bool = False
    name_pt: float = style.NAME_PT
    outside_h: float = 0.0
    outside_w: float = 0.0

    @property
    def box(self) -> tuple[float, float]:
        """(width, height) this node needs in the layout: body, compartment tabs, outside label."""
        return max(self.w, sum(self.tab_w) + 4 * max(0, len(self.tab_w) - 1), self.outside_w), \
            self.h + self.tab_h + self.outside_h

    @property
    def body_offset(self) -> float:
        """How far the body's centre sits below the layout box's centre (points)."""
        _, bh = self.box
        return -bh / 2 + self.tab_h + self.h / 2


@dataclass
class Edge:
    id: str  # the projection's name (the graph's edge key)
    source: str
    target: str
    compartment: str | None
    sign: int
    plastic: bool
    synapses: float
    width: float = 1.0
    rule: str | None = None
    lines: list[str] = field(default_factory=list)  # label lines (connectivity, delay); rule is separate
    tooltip: str = ""
    dim: bool = False
    findings: list[int] = field(default_factory=list)
    count: int = 1  # projections merged into this edge (drawings by area)
    error: bool = False  # carry = error: an error feedback (a learning signal), drawn dashed

    @property
    def label_lines(self) -> list[str]:
        return self.lines + ([self.rule] if self.rule else [])

    @property
    def color(self) -> str:
        return style.SIGN_STROKE[self.sign]


@dataclass
class Cluster:
    path: str
    label: str
    parent: str | None
    findings: list[int] = field(default_factory=list)
    dim: bool = False


@dataclass
class Scene:
    name: str
    file: str
    title: str
    subtitle: str
    nodes: dict[str, Node]
    edges: list[Edge]
    clusters: dict[str, Cluster]
    findings: list[Finding] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)  # what an unlabelled projection is
    notes: list[str] = field(default_factory=list)  # told to the reader (drawing by area, ...)
    labels: bool = True
    summarised: bool = False
    synapse_range: tuple[float, float] = (1.0, 1.0)

    def children(self, path: str | None) -> tuple[list[Node], list[Cluster]]:
        nodes = [n for n in self.nodes.values() if n.cluster == path]
        clusters = [c for c in self.clusters.values() if c.parent == path]
        return nodes, clusters


# ------------------------------------------------------------------------------------ labels
def connectivity_text(conn: dict) -> str:
    kind = conn.get("kind")
    if kind == "sparse" and "p" in conn:
        return f"p = {format_number(conn['p'])}"
    if kind == "fixed_in" and "k" in conn:
        return f"k = {format_number(conn['k'])}"
    if kind == "one_to_one":
        return "one-to-one"
    if kind == "mask":
        return "mask file"
    if kind == "weights":
        return "weights file"
    if kind == "transpose" and "of" in conn:
        scale = conn.get("scale", 1.0)
        return f"tied: {format_number(scale) + ' x ' if scale != 1 else ''}({conn['of']})^T"
    return str(kind or conn.get("text", "?"))


def phases_text(graph) -> str:
    """The trial's phases in order, for the subtitle: 'phases: free 15 -> nudged 6 (clamp Output.E, ...)'."""
    parts = []
    for phase in graph.graph.get("phases") or []:
        what = [f"{key} {', '.join(phase[key])}" for key in ("nudge", "clamp") if phase.get(key)]
        if phase.get("couple"):
            what.append("couple " + ", ".join(f"{p}.{c}" for p, c in phase["couple"]))
        steps = f" {phase['steps']}" if phase.get("steps") else ""
        parts.append(f"{phase['name']}{steps}" + (f" ({'; '.join(what)})" if what else ""))
    return ("phases: " + " -> ".join(parts)) if parts else ""


def delay_text(edge: dict, dt: float | None) -> str:
    steps = edge.get("delay", 1)
    if steps == 0:
        return "no delay"
    if edge.get("delay_time") is not None:
        return f"delay {format_number(round(edge['delay_time'] * 1e3, 6))} ms"
    if dt:
        return f"delay {format_number(round(steps * dt * 1e3, 6))} ms"
    return f"delay {steps} step{'s' if steps != 1 else ''}"


# ---------------------------------------------------------------------------------- findings
def _inside(inner: Span, outer: Span) -> bool:
    if inner.file != outer.file:
        return False
    start = (outer.line, outer.column)
    end = (outer.end_line or outer.line, outer.end_column or outer.column + 1)
    return start <= (inner.line, inner.column) < end or (inner.line, inner.column) == start


def _spans_of(attrs: dict) -> list[Span]:
    out = [attrs.get("span")] + list((attrs.get("spans") or {}).values())
    return [s for s in out if isinstance(s, Span)]


def locate(diagnostic: Diagnostic, graph) -> list[tuple]:
    """The elements of the graph a finding is about: ("edge", key), ("node", name), ..."""
    span = diagnostic.span
    if span is None:
        return []
    edges = [("edge", k) for _, _, k, d in graph.edges(keys=True, data=True)
             if d.get("span") is not None and _inside(span, d["span"])]
    if edges:
        return edges
    nodes = [("node", n) for n, d in graph.nodes(data=True)
             if d.get("span") is not None and _inside(span, d["span"])]
    if nodes:
        return nodes
    nodes = [("node", n) for n, d in graph.nodes(data=True) if any(_inside(span, s) for s in _spans_of(d))]
    if nodes:
        return nodes
    for name, ct in (graph.graph.get("celltypes") or {}).items():
        ct_span = ct.get("span")
        if isinstance(ct_span, Span) and ct_span.file == span.file and ct_span.line == span.line:
            return [("node", n) for n, d in graph.nodes(data=True) if d.get("celltype") == name]
    for name, rule in (graph.graph.get("rules") or {}).items():
        rule_span = rule.get("span")
        if isinstance(rule_span, Span) and rule_span.file == span.file and rule_span.line == span.line:
            return [("edge", k) for _, _, k, d in graph.edges(keys=True, data=True)
                    if d.get("learn") and d["learn"].get("rule") == name]
    return []


# ------------------------------------------------------------------------------------- build
def _area_chain(area: str | None) -> list[str]:
    if not area:
        return []
    parts = area.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def build_scene(graph, diagnostics=(), highlight=(), labels: bool = True, detail: str = "auto",
                max_populations: int = MAX_POPULATIONS, max_projections: int = MAX_PROJECTIONS) -> Scene:
    """The scene of a population graph. ``detail``: ``auto``, ``full`` (every population) or
    ``areas`` (one node per area). ``highlight``: population or area names to bring forward."""
    n_pop, n_proj = graph.number_of_nodes(), graph.number_of_edges()
    summarise = detail == "areas" or (detail == "auto" and (n_pop > max_populations or n_proj > max_projections))
    neurons = sum(d["size"] for _, d in graph.nodes(data=True))
    synapses = sum(d["expected_synapses"] for *_, d in graph.edges(data=True))
    name = graph.graph.get("name") or "network"
    subtitle = (f"{n_pop:,} population{'s' if n_pop != 1 else ''} · {style.human(neurons)} neurons · "
                f"{n_proj:,} projection{'s' if n_proj != 1 else ''} · ~{style.human(synapses)} synapses")
    if graph.graph.get("phases"):
        subtitle += " · " + phases_text(graph)
    if summarise:
        scene = _summary_scene(graph, name, subtitle, n_pop, n_proj, max_populations)
    else:
        scene = _full_scene(graph, name, subtitle)
    scene.labels = labels
    scene.file = str(graph.graph.get("file") or "")
    _mark_findings(scene, graph, diagnostics)
    if highlight:
        _highlight(scene, graph, highlight)
    measure(scene)
    return scene


def _full_scene(graph, name: str, subtitle: str) -> Scene:
    dt = graph.graph.get("dt")
    nodes: dict[str, Node] = {}
    clusters: dict[str, Cluster] = {}
    for order, (pop, d) in enumerate(graph.nodes(data=True)):
        chain = _area_chain(d.get("area"))
        for i, path in enumerate(chain):
            if path not in clusters:
                clusters[path] = Cluster(path, path.rsplit(".", 1)[-1], chain[i - 1] if i else None)
        short = pop[len(d["area"]) + 1:] if d.get("area") and pop.startswith(d["area"] + ".") else pop
        kind = d["role"] if d["role"] in ("input", "readout") else "hidden"
        tau = format_tau(d)
        tip = (f"{pop}: {d['celltype']} ({d['sign_name']}{', ' + d['role'] if kind != 'hidden' else ''}), "
               f"{d['size']:,} neurons{', tau ' + tau if tau else ''}, {d['activation']}")
        if d.get("compartments"):
            tip += ", compartments " + ", ".join(d["compartments"])
        count = f"{d['size']:,}"
        if d.get("learn_bias"):  # a learned bias: its rule under the neuron count
            count += f", bias: {_rule_label(d['learn_bias'])}"
            tip += f", learned bias {d['learn_bias']['text']}"
        nodes[pop] = Node(pop, short, count, kind, d["sign"], d["size"], chain[-1] if chain else None,
                          list(d.get("compartments") or []), tip, order=order)
    raw = list(graph.edges(keys=True, data=True))
    syn = [max(d["expected_synapses"], 1e-9) for *_, d in raw]
    lo, hi = (min(syn), max(syn)) if syn else (1.0, 1.0)
    conn_texts = [connectivity_text(d["connectivity"]) for *_, d in raw]
    delay_texts = [delay_text(d, dt) for *_, d in raw]
    defaults = []
    common_conn = _common(conn_texts)
    common_delay = _common(delay_texts)
    if common_conn:
        defaults.append(common_conn)
    if common_delay:
        defaults.append(common_delay)
    edges = []
    for (u, v, key, d), conn, delay in zip(raw, conn_texts, delay_texts):
        lines = []
        if conn != common_conn:
            lines.append(conn)
        if delay != common_delay:
            lines.append(delay)
        if d.get("target_compartment"):
            pass  # shown by where the arrow lands (the compartment's tab)
        error = d.get("carry") == "error"
        if error:
            lines.append("error")
        learn = d.get("learn")
        tip = (f"{key}: {u} -> {v}{'.' + d['target_compartment'] if d.get('target_compartment') else ''}, "
               f"{d['connectivity'].get('text', d['connectivity'].get('kind'))}, "
               f"init {d['init']['text'] if d.get('init') else 'from file'}, {delay_text(d, dt)}, "
               f"~{style.human(d['expected_synapses'])} synapses"
               + (f", learn {learn['text']}" if learn else "")
               + (", carries the error target - r (fixed signed weights)" if error else ""))
        edges.append(Edge(key, u, v, d.get("target_compartment"), d["sign"], bool(d.get("plastic")),
                          d["expected_synapses"], style.edge_width(d["expected_synapses"], lo, hi),
                          _rule_label(learn), lines, tip, error=error))
    return Scene(name, "", name, subtitle, nodes, edges, clusters, defaults=defaults, synapse_range=(lo, hi))


def _rule_label(learn: dict | None) -> str | None:
    """The rule's name, with the phases it learns in when it does not learn in every one."""
    if not learn:
        return None
    return learn["rule"] + (f" in {', '.join(learn['phases'])}" if learn.get("phases") else "")


def _common(values: list[str]) -> str | None:
    """The value most projections share, when at least half of them (and two) do."""
    if len(values) < 2:
        return None
    value, count = Counter(values).most_common(1)[0]
    return value if count >= 2 and count * 2 >= len(values) else None


def _summary_scene(graph, name: str, subtitle: str, n_pop: int, n_proj: int, max_groups: int) -> Scene:
    def group_by_area(pop, d):
        return d["area"].split(".")[0] if d.get("area") else pop

    def group_by_celltype(pop, d):
        return pop if d["role"] in ("input", "readout") else f"{d['celltype']} cells"

    grouping, how = group_by_area, "area"
    groups = {group_by_area(p, d) for p, d in graph.nodes(data=True)}
    if len(groups) > max(max_groups, 150) or len(groups) == n_pop:
        grouping, how = group_by_celltype, "cell type"
    members: dict[str, list[str]] = defaultdict(list)
    of: dict[str, str] = {}
    for pop, d in graph.nodes(data=True):
        g = grouping(pop, d)
        members[g].append(pop)
        of[pop] = g
    nodes: dict[str, Node] = {}
    within: Counter = Counter()
    for u, v in graph.edges():
        if of[u] == of[v]:
            within[of[u]] += 1
    for order, (g, pops) in enumerate(members.items()):
        sizes = [graph.nodes[p]["size"] for p in pops]
        total = sum(sizes)
        if len(pops) == 1 and pops[0] == g:
            d = graph.nodes[g]
            kind = d["role"] if d["role"] in ("input", "readout") else "hidden"
            nodes[g] = Node(g, g, f"{d['size']:,}", kind, d["sign"], d["size"], None, [],
                            f"{g}: {d['celltype']} ({d['sign_name']}), {d['size']:,} neurons", order=order)
            continue
        exc = sum(graph.nodes[p]["size"] for p in pops if graph.nodes[p]["sign"] > 0)
        inh = sum(graph.nodes[p]["size"] for p in pops if graph.nodes[p]["sign"] < 0)
        sign = 1 if exc > inh else (-1 if inh > exc else 0)
        sub = style.human(total)
        tip = (f"{how} {g}: {len(pops)} populations, {total:,} neurons ({exc:,} excitatory, {inh:,} inhibitory), "
               f"{within[g]:,} projections within")
        nodes[g] = Node(g, g, sub, "group", sign, total, None, [], tip, order=order,
                        excitatory_fraction=exc / total if total else 0.0)
    merged: dict[tuple, dict] = {}
    for u, v, key, d in graph.edges(keys=True, data=True):
        gu, gv = of[u], of[v]
        if gu == gv:
            continue
        entry = merged.setdefault((gu, gv, d["sign"]), {"synapses": 0.0, "count": 0, "plastic": 0, "keys": []})
        entry["synapses"] += d["expected_synapses"]
        entry["count"] += 1
        entry["plastic"] += bool(d.get("plastic"))
        if len(entry["keys"]) < 6:
            entry["keys"].append(key)
    ranked = sorted(merged.items(), key=lambda item: -item[1]["synapses"])
    shown = ranked[:MAX_SUMMARY_EDGES]
    syn = [max(e["synapses"], 1e-9) for _, e in shown]
    lo, hi = (min(syn), max(syn)) if syn else (1.0, 1.0)
    edges = []
    for (gu, gv, sign), e in shown:
        lines = [f"{e['count']} projections"] if e["count"] > 1 else []
        keys = ", ".join(e["keys"]) + (", ..." if e["count"] > len(e["keys"]) else "")
        tip = (f"{gu} -> {gv}: {e['count']} {style.SIGN_WORD[sign]} projection{'s' if e['count'] > 1 else ''} "
               f"({keys}), ~{style.human(e['synapses'])} synapses, {e['plastic']} plastic")
        edges.append(Edge(f"{gu}->{gv}:{style.SIGN_WORD[sign]}", gu, gv, None, sign, e["plastic"] == e["count"],
                          e["synapses"], style.edge_width(e["synapses"], lo, hi),
                          "plastic" if e["plastic"] == e["count"] else None, lines, tip, count=e["count"]))
    notes = [f"{n_pop:,} populations and {n_proj:,} projections are too many to draw one by one: drawn by {how} "
             f"({len(nodes)} nodes), each arrow all the projections from one {how} to another"]
    if len(ranked) > len(shown):
        notes.append(f"the {len(shown)} strongest of {len(ranked):,} {how}-to-{how} connections are drawn "
                     f"(by expected synapse count)")
    notes.append("pass --detail full to draw every population")
    scene = Scene(name, "", name, subtitle, nodes, edges, {}, notes=notes, summarised=True, synapse_range=(lo, hi))
    if len(edges) > 60:  # a green halo under hundreds of arrows would only muddy their colours
        for e in edges:
            e.plastic, e.rule = False, None
    if len(nodes) > CIRCLE_GROUPS:
        notes.insert(1, f"the {len(nodes)} {how} nodes are drawn on a circle, in the order of the model file")
    scene.group_of = of  # type: ignore[attr-defined]
    return scene


def _mark_findings(scene: Scene, graph, diagnostics) -> None:
    group_of = getattr(scene, "group_of", None)
    by_key = defaultdict(list)
    for e in scene.edges:
        by_key[e.id].append(e)
    for number, d in enumerate(diagnostics, 1):
        targets = locate(d, graph)
        finding = Finding(number, d.severity, d.code, d.message, str(d.span) if d.span else "")
        for kind, name in targets:
            if group_of is not None:  # drawn by area: mark the group
                if kind == "node":
                    name = group_of.get(name, name)
                    kind = "node"
                else:
                    u, v = next(((a, b) for a, b, k in graph.edges(keys=True) if k == name), (None, None))
                    name = group_of.get(u)
                    kind = "node"
            if kind == "node" and name in scene.nodes:
                if number not in scene.nodes[name].findings:
                    scene.nodes[name].findings.append(number)
                    finding.targets.append(("node", name))
            elif kind == "edge":
                for e in by_key.get(name, []):
                    e.findings.append(number)
                    finding.targets.append(("edge", name))
        scene.findings.append(finding)


def resolve_highlight(graph, names) -> tuple[set[str], list[str]]:
    """(populations to highlight, names that match nothing)."""
    chosen, unknown = set(), []
    pops = set(graph.nodes)
    for name in names:
        if name in pops:
            chosen.add(name)
            continue
        inside = {p for p, d in graph.nodes(data=True)
                  if d.get("area") and (d["area"] == name or d["area"].startswith(name + "."))}
        if inside:
            chosen |= inside
        else:
            unknown.append(name)
    return chosen, unknown


def _highlight(scene: Scene, graph, names) -> None:
    chosen, _ = resolve_highlight(graph, names)
    group_of = getattr(scene, "group_of", None)
    if group_of is not None:
        chosen = {group_of[p] for p in chosen}
    if not chosen:
        return
    near = set(chosen)
    for e in scene.edges:
        if e.source in chosen or e.target in chosen:
            near |= {e.source, e.target}
        else:
            e.dim = True
    for node in scene.nodes.values():
        node.highlight = node.id in chosen
        node.dim = node.id not in near
    for path, cluster in scene.clusters.items():
        cluster.dim = not any(n.cluster and (n.cluster == path or n.cluster.startswith(path + "."))
                              for n in scene.nodes.values() if not n.dim)


# ----------------------------------------------------------------------------------- measure
TAB_H = 15.0


def measure(scene: Scene) -> None:
    """Give every node its size in points: body from the neuron count, room for the name."""
    for node in scene.nodes.values():
        name_w = style.text_width(node.label, style.NAME_PT, bold=True)
        count_w = style.text_width(node.sublabel, style.COUNT_PT)
        text_w = max(name_w, count_w)
        r = style.body_radius(node.size)
        if node.kind == "hidden":
            d = 2 * r
            # the name and count fit inside a circle of diameter d when the text's box fits;
            # a long name may be set a little smaller before it moves under the circle
            fits = False
            for pt in (style.NAME_PT, style.NAME_PT - 1, style.NAME_PT - 2):
                text_w = max(style.text_width(node.label, pt, bold=True), count_w)
                if math.hypot(text_w + 1, pt + style.COUNT_PT + 2) <= d:
                    fits, node.name_pt = True, pt
                    break
            node.w = node.h = d
            if not fits:
                node.label_outside = True
                node.outside_w = text_w + 4
                node.outside_h = style.NAME_PT * 1.25 + style.COUNT_PT * 1.25 + 2
        elif node.kind == "group":
            node.w = max(text_w + 24, 2 * r + 20)
            node.h = max(2 * r * 0.75, style.NAME_PT + style.COUNT_PT + 22)
        else:
            node.h = max(1.5 * r, style.NAME_PT + style.COUNT_PT + 10)
            node.w = max(text_w + (node.h * 0.45 if node.kind == "input" else 0) + 14, node.h * 1.2)
        if node.compartments:
            node.tab_w = [style.text_width(c, style.TAB_PT) + 10 for c in node.compartments]
            node.tab_h = TAB_H + 7.0  # the tab and its stem
