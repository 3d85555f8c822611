"""Structure: sizes, connectivity parameters, weight files, zero-delay cycles, reachability."""

from __future__ import annotations

import networkx as nx

from eigraph.diagnostics import Diagnostic, Span, error, warning
from eigraph.expr.ast import format_number


def check(graph) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    if graph.number_of_nodes() == 0:
        found.append(error("T416", "the model declares no populations", Span(graph.graph["file"], 1, 1),
                           "declare one: population E : E(80)"))
        return found
    for name, node in graph.nodes(data=True):
        if node["size"] <= 0:
            found.append(error("T401", f"population '{name}' has size {node['size']}; it must be at least 1",
                               node["spans"].get("size", node["span"]), "for example: E(80)"))
    for source, target, key, edge in graph.edges(keys=True, data=True):
        found += _projection(graph, source, target, key, edge)
    found += _zero_delay_cycles(graph)
    if not graph.graph.get("incomplete"):  # declarations dropped for an error would show as unreachable
        found += _reachability(graph)
    return found


def _projection(graph, source, target, key, edge) -> list[Diagnostic]:
    found = []
    conn = edge["connectivity"]
    span = edge["spans"].get("connectivity", edge["span"])
    n_pre, n_post = graph.nodes[source]["size"], graph.nodes[target]["size"]
    kind = conn.get("kind")
    if kind == "sparse" and "p" in conn and not 0 <= conn["p"] <= 1:
        found.append(error("T402", f"connection probability p = {format_number(conn['p'])} of {key} is outside [0, 1]",
                           span, "p is the probability of each synapse: 0 <= p <= 1"))
    if kind == "fixed_in" and "k" in conn:
        available = n_pre - (1 if source == target and not edge["autapses"] else 0)
        if conn["k"] < 0 or conn["k"] > available:
            found.append(error("T409", f"fixed_in(k = {conn['k']}) on {key}: each target can get 0 to {available} "
                                       f"sources from '{source}'", span, f"choose k between 0 and {available}"))
    if kind == "one_to_one" and n_pre != n_post:
        found.append(error("T403", f"one_to_one needs equal sizes, but '{source}' has {n_pre} and '{target}' {n_post}",
                           span, "use dense, sparse(p) or a mask file for populations of different sizes"))
    if kind in ("mask", "weights"):
        file = conn.get("file", "")
        if conn.get("missing"):
            found.append(error("F010", f"the file '{file}' of {key} does not exist", span,
                               "paths are relative to the model file"))
        elif conn.get("file_problem"):
            code, message = conn["file_problem"]
            found.append(error(code, f"cannot read '{file}' of {key}: {message}", span,
                               "give a regular .npy file saved with numpy.save (post x pre)"))
        elif conn.get("unreadable"):
            found.append(error("F011", f"cannot read '{file}' of {key}: {conn['unreadable']}", span,
                               "save a 2-D array with numpy.save (post x pre)"))
        elif "shape" in conn:
            if tuple(conn["shape"]) != (n_post, n_pre):
                found.append(error("T404", f"the {kind} file of {key} has shape {tuple(conn['shape'])}, but the "
                                           f"projection needs (post x pre) = ({n_post}, {n_pre})", span,
                                   "transpose or regenerate the array: rows are targets, columns sources"))
            if conn.get("nan"):
                found.append(error("T410", f"the {kind} file of {key} contains NaN or infinite values", span,
                                   "replace them with numbers (numpy.nan_to_num)"))
            if kind == "mask" and not conn.get("binary", True):
                found.append(error("T411", f"the mask file of {key} has values other than 0 and 1", span,
                                   "a mask is boolean: save (array != 0)"))
    return found


def _zero_delay_cycles(graph) -> list[Diagnostic]:
    instant = nx.DiGraph()
    for source, target, key, edge in graph.edges(keys=True, data=True):
        if edge["delay"] == 0:
            instant.add_edge(source, target, key=key, span=edge["spans"].get("delay", edge["span"]))
    found = []
    for component in nx.strongly_connected_components(instant):
        if len(component) == 1:
            (node,) = component
            if not instant.has_edge(node, node):
                continue
        cycle = nx.find_cycle(instant.subgraph(component))
        first = instant.edges[cycle[0][0], cycle[0][1]]
        path = " -> ".join([cycle[0][0]] + [v for _, v in cycle])
        found.append(error("T405", f"zero-delay cycle: {path}", first["span"],
                           "within one step, zero-delay projections are evaluated in order, so they cannot form a "
                           "loop: give one of them delay = 1 steps"))
    return found


def _reachability(graph) -> list[Diagnostic]:
    found = []
    inputs = [n for n, d in graph.nodes(data=True) if d["role"] == "input"]
    for name, node in graph.nodes(data=True):
        if node["role"] == "readout" and graph.in_degree(name) == 0:
            found.append(warning("T407", f"nothing projects to readout population '{name}'", node["span"],
                                 f"add a projection, for example: E -> {name} : dense"))
    if not inputs:
        return found
    reached = set(inputs)
    for source in inputs:
        reached |= nx.descendants(graph, source)
    for name, node in graph.nodes(data=True):
        if name in reached or (node["role"] == "readout" and graph.in_degree(name) == 0):
            continue
        found.append(warning("T406", f"population '{name}' is unreachable from every input population",
                             node["span"], "no chain of projections leads to it from "
                             + ", ".join(sorted(inputs)) + "; its activity is driven only by bias and noise"))
    return found
