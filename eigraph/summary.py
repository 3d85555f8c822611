"""A plain-text summary of a model's graph, for people (``eigraph graph --format summary``)."""

from __future__ import annotations

from eigraph.expr.ast import format_number


def _ms(seconds) -> str:
    return "-" if seconds is None else format_number(round(seconds * 1e3, 6)) + " ms"


def format_tau(node: dict) -> str | None:
    """A population's time constant as people read it: "100 ms", "1 steps" for a discrete
    population (or one whose tau is in steps without dt), None for an input."""
    if node["role"] == "input":
        return None
    if node.get("tau") is not None and not node.get("discrete"):
        return f"{format_number(round(node['tau'] * 1e3, 6))} ms"
    if node.get("tau_steps") is not None:
        return f"{format_number(node['tau_steps'])} steps"
    return None


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def summarize(model) -> str:
    graph = model.graph
    net = model.network
    synapses = sum(e["expected_synapses"] for *_, e in graph.edges(data=True))
    neurons = sum(d["size"] for _, d in graph.nodes(data=True))
    lines = [
        f"network {net.name} ({model.path})",
        f"  dt = {_ms(net.dt)}, seed = {net.seed}, precision = {net.precision}, "
        f"Dale's law {'on' if net.dale else 'off'}"
        + (f", spectral radius {format_number(net.spectral_radius)}" if net.spectral_radius else ""),
        f"  {graph.number_of_nodes()} populations, {neurons:,} neurons, {graph.number_of_edges()} projections, "
        f"~{round(synapses):,} synapses",
        "",
        "populations:",
    ]
    rows = [["name", "cell type", "sign", "role", "size", "tau", "activation", "noise"]]
    for name, d in graph.nodes(data=True):
        tau = format_tau(d) or "-"
        rows.append([name, d["celltype"], d["sign_name"], d["role"], str(d["size"]), tau, d["activation"],
                     format_number(d["noise"])])
    lines += _table(rows)
    if graph.number_of_edges():
        lines += ["", "projections:"]
        rows = [["name", "connectivity", "fan-in", "init", "delay", "learn"]]
        for _, _, key, e in graph.edges(keys=True, data=True):
            init = e["init"]["text"] if e["init"] else "from file"
            learn = e["learn"]["text"] if e["learn"] else "-"
            if e["learn"] and e["learn"].get("phases"):
                learn += " in " + ", ".join(e["learn"]["phases"])
            if e.get("carry") == "error":
                learn = "carries the error (fixed weights)"
            rows.append([key, e["connectivity"].get("text", e["connectivity"]["kind"]), format_number(round(e["fan_in"], 2)),
                         init, f"{e['delay']} steps", learn])
        lines += _table(rows)
    learned = [(name, d) for name, d in graph.nodes(data=True) if d.get("learn_bias")]
    if learned:
        lines += ["", "learned biases (the weights of an always-on unit, pre = 1):"]
        rows = [["name", "learn", "bounds"]]
        for name, d in learned:
            learn = d["learn_bias"]["text"] + (" in " + ", ".join(d["learn_bias"]["phases"])
                                               if d["learn_bias"].get("phases") else "")
            bounds = f"[{', '.join(format_number(b) for b in d['bias_bounds'])}]" if d.get("bias_bounds") else "-"
            rows.append([f"bias->{name}", learn, bounds])
        lines += _table(rows)
    plastic_rules = sorted({e["learn"]["rule"] for *_, e in graph.edges(data=True) if e["learn"]}
                           | {d["learn_bias"]["rule"] for _, d in learned})
    if plastic_rules:
        lines += ["", "rules in use:"]
        for rule in plastic_rules:
            spec = graph.graph["rules"][rule]
            lines.append(f"  {rule}: " + "; ".join(spec["equations"]))
    if graph.graph.get("phases"):
        from eigraph.viz.scene import phases_text

        lines += ["", phases_text(graph).replace("phases: ", "phases (in order): ", 1)]
    if model.run is not None:
        run = model.run
        lines += ["", "run:"]
        if run.task:
            lines.append(f"  task {run.task['text']}, inputs {', '.join(run.inputs) or '-'}, "
                         f"targets {', '.join(run.targets) or '-'}")
        extras = [f"{k} {getattr(run, k)}" for k in ("trials", "batch", "steps", "seed") if getattr(run, k) is not None]
        if run.record:
            extras.append("record " + ", ".join(run.record))
        if extras:
            lines.append("  " + ", ".join(extras))
    return "\n".join(lines)
