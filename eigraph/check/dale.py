"""Dale's law: every neuron is excitatory or inhibitory in all its outgoing synapses.

Under Dale's law the stored weights of a projection from a signed population are magnitudes
(>= 0) and the sign comes from the source's cell type (Song, Yang & Wang 2016: W = [W+] D).
"""

from __future__ import annotations

from eigraph.diagnostics import Diagnostic, error
from eigraph.expr.ast import format_number

HINT_OFF = "or set 'dale = off' in the network block to allow it"


def _negative_init(init: dict | None) -> str | None:
    """Why this distribution can give a negative magnitude, or None when it cannot."""
    if not init:
        return None
    dist, args = init["dist"], init["args"]
    if dist == "normal" and not (args.get("sigma") == 0 and args.get("mu", 0) >= 0):
        return f"normal({format_number(args.get('mu', 0))}, {format_number(args.get('sigma', 0))}) draws negative values"
    if dist == "uniform" and min(args.get("a", 0), args.get("b", 0)) < 0:
        return f"uniform({format_number(args['a'])}, {format_number(args['b'])}) reaches below 0"
    if dist == "constant" and args.get("c", 0) < 0:
        return f"constant({format_number(args['c'])}) is negative"
    if dist == "halfnormal" and args.get("sigma", 0) < 0:
        return "halfnormal with a negative sigma"
    if dist == "gamma" and (args.get("k", 1) <= 0 or args.get("theta", 1) <= 0):
        return "gamma needs k > 0 and theta > 0"
    return None


def check(graph) -> list[Diagnostic]:
    found = []
    celltypes = graph.graph["celltypes"]
    for name, node in graph.nodes(data=True):
        if node["role"] == "hidden" and node["sign"] == 0:
            found.append(error(
                "D201", f"Dale's law: hidden population '{name}' has the unsigned cell type '{node['celltype']}'",
                node["span"], "give it an excitatory or inhibitory cell type (E, I, or your own), " + HINT_OFF))
        if node["sign_override"]:
            span = node["spans"].get("sign", node["span"])
            own = celltypes[node["celltype"]]["sign"]
            if node["role"] == "hidden":
                found.append(error(
                    "D206", f"Dale's law: 'sign' can only be set on input and readout populations, not on "
                            f"hidden population '{name}'", span,
                    "the sign of a hidden population comes from its cell type: choose an E or I cell type"))
            elif own != 0 and own != node["sign"]:
                found.append(error(
                    "D206", f"Dale's law: sign = {node['sign_name']} contradicts cell type '{node['celltype']}', "
                            f"which is {'excitatory' if own > 0 else 'inhibitory'}", span,
                    "remove the sign override, or use an unsigned cell type for this population"))
    for source, target, key, edge in graph.edges(keys=True, data=True):
        if edge.get("carry") == "error":
            continue  # an error feedback is a learning signal through signed weights, not a synapse
        pre, post = graph.nodes[source], graph.nodes[target]
        if pre["sign"] == 0 and post["role"] == "hidden":
            found.append(error(
                "D202", f"Dale's law: unsigned population '{source}' projects onto hidden population '{target}'",
                edge["spans"].get("source", edge["span"]),
                f"give '{source}' a sign (sign = excitatory or inhibitory on an input or readout), " + HINT_OFF))
        if pre["sign"] == 0:
            continue
        why = _negative_init(edge["init"])
        if why:
            found.append(error(
                "D203", f"Dale's law: the init of {key} can produce negative magnitudes: {why}",
                edge["spans"].get("init", edge["span"]),
                "weights from a signed population are magnitudes >= 0 and the sign comes from the cell type: use "
                "halfnormal, lognormal, gamma, or uniform(a, b) with a >= 0"))
        bounds = edge["bounds"]
        if bounds and bounds[0] < 0:
            found.append(error(
                "D204", f"Dale's law: the lower bound {format_number(bounds[0])} of {key} is negative",
                edge["spans"].get("bounds", edge["span"]),
                "magnitudes from a signed population stay >= 0: write bounds = [0, hi], " + HINT_OFF))
        conn = edge["connectivity"]
        if conn.get("kind") == "weights" and conn.get("negative"):
            mixed = conn.get("positive")
            what = "has values of both signs" if mixed else "has negative values"
            found.append(error(
                "D205", f"Dale's law: the weights file of {key} {what}",
                edge["spans"].get("connectivity", edge["span"]),
                "store magnitudes (numpy.abs(w)); the sign comes from the source's cell type, " + HINT_OFF))
    return found
