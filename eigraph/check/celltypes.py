"""Cell-type consistency: what may project onto what. Compartments and targets read by rules are
checked by the resolver, where it binds each rule to its projection."""

from __future__ import annotations

from eigraph.diagnostics import Diagnostic, error


def check(graph) -> list[Diagnostic]:
    found = []
    for source, target, key, edge in graph.edges(keys=True, data=True):
        if graph.nodes[target]["role"] == "input":
            found.append(error(
                "C301", f"projection {key} targets input population '{target}'",
                edge["spans"].get("target", edge["span"]),
                "input populations are driven by the task only; project onto a hidden or readout population"))
    return found
