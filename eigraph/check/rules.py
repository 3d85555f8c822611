"""Rules as they are used: what their traces will cost, and what they need from the network.

A trace that reads both pre and post (or ``w``) keeps one value per synapse and per batch
element: batch x N_post x N_pre numbers. Above ``TRACE_WARNING_BYTES`` that is worth a warning
before anything runs.
"""

from __future__ import annotations

from functools import lru_cache

from eigraph.diagnostics import Diagnostic, error, warning

TRACE_WARNING_BYTES = 64 * 1024 * 1024


@lru_cache(maxsize=256)
def _analysis(text: str):
    from eigraph.compile.rules import analyse
    from eigraph.frontend.dsl import parse_document

    doc, problems = parse_document(text, "<rule>")
    if doc is None or problems or not doc.rules:
        return None
    rule = doc.rules[0]
    if not any(s.kind == "let" and s.target == "dw" for s in rule.body):
        return None  # a rule without dw is reported where it is declared; there is nothing to analyse
    return analyse(rule.body, {p.name for p in rule.params})


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def check(graph) -> list[Diagnostic]:
    found = []
    run = graph.graph["run"] or {}
    batch = run.get("batch") or 1
    itemsize = 4 if graph.graph["precision"] == "float32" else 8
    for _source, _target, key, edge in graph.edges(keys=True, data=True):
        learn = edge["learn"]
        if not learn:
            continue
        spec = graph.graph["rules"].get(learn["rule"])
        if spec is None or not spec["traces"]:
            continue
        span = edge["spans"].get("learn", edge["span"])
        if graph.graph["dt"] is None:
            found.append(error("U510", f"rule '{learn['rule']}' on {key} integrates traces "
                                       f"({', '.join(spec['traces'])}), which needs the network's dt", span,
                               "set it in the network block: network NAME { dt = 1 ms }"))
        analysis = _analysis(spec["text"])
        if analysis is None:
            continue
        for trace in analysis.synapse_traces:
            per_batch = analysis.batched[trace]
            size = edge["expected_synapses"] * (batch if per_batch else 1) * itemsize
            if size > TRACE_WARNING_BYTES:
                how = f"{batch} batch elements x " if per_batch else ""
                other = " (eprop keeps its trace per presynaptic neuron)" if learn["rule"] == "rflo" else ""
                found.append(warning(
                    "R610", f"trace '{trace}' of rule '{learn['rule']}' on {key} keeps one value per synapse"
                            f"{' and batch element' if per_batch else ''}: {how}{edge['expected_synapses']:,.0f} "
                            f"synapses x {itemsize} bytes = {_size(size)}", span,
                    "mark it ': shared' to keep one value per synapse for the whole batch, use a smaller batch, "
                    f"or write the rule with pre and post traces only{other}"))
    for name, node in graph.nodes(data=True):  # a learned bias: the same need for dt
        learn = node.get("learn_bias")
        spec = graph.graph["rules"].get(learn["rule"]) if learn else None
        if spec is not None and spec["traces"] and graph.graph["dt"] is None:
            found.append(error("U510", f"rule '{learn['rule']}' on bias->{name} integrates traces "
                                       f"({', '.join(spec['traces'])}), which needs the network's dt",
                               node["spans"].get("learn_bias", node["span"]),
                               "set it in the network block: network NAME { dt = 1 ms }"))
    return found
