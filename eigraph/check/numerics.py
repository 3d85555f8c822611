"""Numerics: the time step, Euler stability, delays and noise."""

from __future__ import annotations

from eigraph.diagnostics import Diagnostic, Span, error, warning
from eigraph.expr.ast import format_number


def _ms(seconds: float) -> str:
    return format_number(round(seconds * 1e3, 9)) + " ms"


def check(graph) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    dt = graph.graph["dt"]
    need_dt = []
    for name, node in graph.nodes(data=True):
        if node["role"] == "input":
            continue
        if node["tau_steps"] is None:
            need_dt.append((name, node))
        elif dt and node["tau"] is not None and node["tau_steps"] < 1 - 1e-12:
            found.append(error(
                "U502", f"dt / tau = {format_number(round(1 / node['tau_steps'], 6))} > 1 for population '{name}' "
                        f"(dt = {_ms(dt)}, tau = {_ms(node['tau'])}): the Euler update is unstable",
                node["spans"].get("tau", node["span"]),
                f"make tau at least dt ({_ms(dt)}), or make dt smaller; 'tau = 1 steps' is the discrete update"))
        if node["noise"] < 0:
            found.append(error("U504", f"noise of population '{name}' is negative ({format_number(node['noise'])})",
                               node["spans"].get("noise", node["span"]), "noise is a standard deviation: use >= 0"))
    for source, target, key, edge in graph.edges(keys=True, data=True):
        span = edge["spans"].get("delay", edge["span"])
        exact = edge["connectivity"].get("delay_steps_exact")
        if edge["delay_time"] is not None and dt is None:
            need_dt.append((key, None))
        if exact is None:
            continue
        if exact < 0:
            found.append(error("U506", f"the delay of {key} is negative", span, "delays are >= 0"))
        elif abs(exact - round(exact)) > 1e-9:
            found.append(warning(
                "W503", f"the delay of {key} is {format_number(round(exact, 6))} steps; it is rounded to "
                        f"{round(exact)}", span, f"write a multiple of dt ({_ms(dt)})" if dt else "use whole steps"))
    if need_dt and dt is None and "dt" not in graph.graph["spans"]:  # a dt written wrong is reported already
        name, node = need_dt[0]
        span = graph.graph["span"] or (node["spans"].get("tau", node["span"]) if node else Span(graph.graph["file"], 1, 1))
        what = f"population '{name}' has a time constant in ms or s" if node else f"projection {name} has a delay in time units"
        found.append(error("U510", f"the network needs dt: {what}",
                           span, "set it in the network block: network NAME { dt = 1 ms }"))
    return found
