"""The population graph: a ``networkx.MultiDiGraph`` with one node per population and one edge
per projection (keyed by the projection's name). docs/graph.md lists every attribute.

The graph is the single model that the checks, the drawing and the compiler read.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import networkx as nx

from eigraph.diagnostics import Span
from eigraph.frontend.emit import statement_text
from eigraph.model.spec import SIGN_NAMES, Model


def build_graph(model: Model) -> nx.MultiDiGraph:
    net = model.network
    graph = nx.MultiDiGraph()
    graph.graph.update(
        name=net.name,
        file=model.path,
        dt=net.dt,
        seed=net.seed,
        precision=net.precision,
        dale=net.dale,
        spectral_radius=net.spectral_radius,
        span=net.span,
        spans=dict(net.spans),
        incomplete=any(d.is_error for d in model.diagnostics),
        celltypes={
            name: {"sign": ct.sign, "role": ct.role, "compartments": list(ct.compartments),
                   "compartment_gains": dict(ct.compartment_gains), "builtin": ct.builtin, "span": ct.span}
            for name, ct in model.celltypes.items()
        },
        rules={
            name: {"params": dict(rule.params), "timing": rule.timing, "traces": rule.traces,
                   "equations": [statement_text(s) for s in rule.statements], "builtin": rule.builtin,
                   "text": rule.text, "span": rule.span}
            for name, rule in model.rules.items()
        },
        run=_run_dict(model),
        phases=[asdict(phase) for phase in model.phases],
    )
    for p in model.populations.values():
        graph.add_node(
            p.name, celltype=p.celltype, sign=p.sign, sign_name=SIGN_NAMES[p.sign], role=p.role, size=p.size,
            tau=p.tau, tau_steps=p.tau_steps, alpha=p.alpha, discrete=p.discrete, activation=p.activation,
            bias=p.bias, noise=p.noise, x0=p.x0, area=p.area, compartments=list(p.compartments),
            compartment_gains=dict(p.compartment_gains), sign_override=p.sign_override, span=p.span,
            spans=dict(p.spans), learn_bias=p.learn_bias,
            bias_bounds=list(p.bias_bounds) if p.bias_bounds else None)
    for q in model.projections.values():
        source_sign = model.populations[q.source].sign
        graph.add_edge(
            q.source, q.target, key=q.name, name=q.name, target_compartment=q.target_compartment,
            connectivity=dict(q.connectivity), init=q.init, delay=q.delay, delay_time=q.delay_time,
            learn=q.learn, plastic=q.learn is not None, bounds=list(q.bounds) if q.bounds else None,
            normalize=q.normalize, gain=q.gain, autapses=q.autapses, fan_in=q.fan_in, fan_out=q.fan_out,
            sign=0 if q.carry == "error" else source_sign, carry=q.carry, expected_synapses=q.fan_in * model.populations[q.target].size,
            span=q.span, spans=dict(q.spans))
    return graph


def _run_dict(model: Model) -> dict | None:
    if model.run is None:
        return None
    run = asdict(model.run)
    run.pop("spans")
    return run


# export ------------------------------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, Span):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def to_json_data(graph: nx.MultiDiGraph) -> dict:
    """node-link data (``networkx.node_link_graph`` reads it back), every value JSON-safe."""
    data = nx.node_link_data(graph, edges="edges")
    return _jsonable(data)


def to_json(graph: nx.MultiDiGraph) -> str:
    return json.dumps(to_json_data(graph), indent=2)


def to_graphml(graph: nx.MultiDiGraph) -> str:
    """GraphML text. Scalars stay typed; dicts, lists and spans are JSON strings; None is left out."""
    flat = nx.MultiDiGraph()

    def flatten(attrs: dict) -> dict:
        out = {}
        for key, value in attrs.items():
            if value is None:
                continue
            if isinstance(value, (bool, int, float, str)) and not isinstance(value, float) or (
                    isinstance(value, float) and value == value):
                out[key] = value
            else:
                out[key] = json.dumps(_jsonable(value))
        return out

    graph_attrs = flatten(graph.graph)
    flat.graph.update(graph_attrs)
    for node, attrs in graph.nodes(data=True):
        flat.add_node(node, **flatten(attrs))
    for u, v, key, attrs in graph.edges(keys=True, data=True):
        flat.add_edge(u, v, key=key, **flatten(attrs))
    # GraphML wants one type per attribute name: make mixed ones strings
    for collection in (dict(flat.nodes(data=True)).values(), [d for *_, d in flat.edges(keys=True, data=True)]):
        types: dict[str, set] = {}
        for attrs in collection:
            for key, value in attrs.items():
                types.setdefault(key, set()).add(type(value))
        for attrs in collection:
            for key, value in list(attrs.items()):
                if len(types[key]) > 1:
                    attrs[key] = json.dumps(value) if not isinstance(value, str) else value
    return "\n".join(nx.generate_graphml(flat, named_key_ids=True))


_VOLATILE = {"span", "spans", "file", "text", "default"}


def signature(graph: nx.MultiDiGraph) -> str:
    """A canonical text of the graph without source positions: equal for the same model in any form."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in sorted(value.items()) if k not in _VOLATILE}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, float):
            return float(f"{value:.12g}")
        if isinstance(value, str) and value.startswith("/"):
            return value.rsplit("/", 1)[-1]  # files resolved relative to different folders
        return value

    data = {
        "graph": clean(dict(graph.graph)),
        "nodes": {n: clean(a) for n, a in sorted(graph.nodes(data=True))},
        "edges": sorted(json.dumps([u, v, k, clean(a)], sort_keys=True)
                        for u, v, k, a in graph.edges(keys=True, data=True)),
    }
    return json.dumps(data, sort_keys=True, default=str)
