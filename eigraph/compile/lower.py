"""Lowering: the checked population graph -> a :class:`~eigraph.compile.program.Program`.

Draws the initial weights (seeded, per projection), applies the network's spectral radius, and
orders the step's operations from what each reads and writes.
"""

from __future__ import annotations

import hashlib
import json

import networkx as nx
import numpy as np

from eigraph.compile.connectivity import Weights, build_weights, draw, projection_rng
from eigraph.compile.program import BiasPlan, Op, PhasePlan, PopulationPlan, Program, ProjectionPlan, RulePlan
from eigraph.compile.rules import analyse, number_draws
from eigraph.expr import ast as ex
from eigraph.expr.evaluate import EvalError, Value, evaluate
from eigraph.model.graph import signature


class CompileError(Exception):
    pass


def lower(graph: nx.MultiDiGraph, batch: int = 1) -> Program:
    """``batch``: the batch the program will run with, for the memory check made before any weight is drawn
    (:func:`eigraph.check.resources.refuse`: a CompileError with the estimate when it does not fit)."""
    from eigraph.check.resources import refuse

    refuse(graph, batch, what=f"'{graph.graph['name']}'")
    seed = graph.graph["seed"]
    dtype = np.dtype(graph.graph["precision"])
    longest = {name: 1 for name in graph.nodes}
    for source, _target, data in graph.edges(data=True):
        longest[source] = max(longest[source], data["delay"] + 1)
    populations = {}
    for index, (name, node) in enumerate(graph.nodes(data=True)):
        bias = node["bias"]
        if isinstance(bias, dict):
            bias = draw(bias, node["size"], projection_rng(seed, name, "bias")).astype(dtype)
        populations[name] = PopulationPlan(
            name=name, index=index, size=node["size"], role=node["role"], sign=node["sign"], alpha=node["alpha"],
            activation=node["activation"], bias=bias, noise=node["noise"], x0=node["x0"],
            compartments=tuple(node["compartments"]), compartment_gains=dict(node["compartment_gains"]),
            history=max(2, longest[name]), span=node["span"])
    projections = {}
    edges = {key: edge for _s, _t, key, edge in graph.edges(keys=True, data=True)}
    for index, (source, target, key, edge) in enumerate(graph.edges(keys=True, data=True)):
        tie = None
        if edge["connectivity"]["kind"] == "transpose":
            tie = (edge["connectivity"]["of"], float(edge["connectivity"].get("scale", 1.0)))
            of = edges.get(tie[0])
            if of is None or of["connectivity"]["kind"] != "dense":
                raise CompileError(f"{key} is tied to '{tie[0]}', which is not a dense projection of the model")
            weights = Weights((populations[target].size, populations[source].size))  # filled below
        else:
            weights = build_weights(edge, populations[source].size, populations[target].size, source == target,
                                    seed, dtype)
        projections[key] = ProjectionPlan(
            name=key, index=index, source=source, target=target, compartment=edge["target_compartment"],
            delay=edge["delay"], sign=edge["sign"], gain=edge["gain"], weights=weights, span=edge["span"],
            learn=edge["learn"], bounds=tuple(edge["bounds"]) if edge["bounds"] else None,
            normalize=edge["normalize"], connectivity=edge["connectivity"].get("text", edge["connectivity"]["kind"]),
            carry=edge.get("carry", "rate"))
        projections[key].tie = tie
        if edge["learn"]:
            projections[key].rule = bind_rule(graph, edge)
    phase_index = {phase["name"]: k for k, phase in enumerate(graph.graph.get("phases") or [])}
    phases = [PhasePlan(phase["name"], k, phase["steps"], tuple(phase["nudge"]), float(phase["beta"]),
                        tuple(phase["clamp"]), tuple(tuple(c) for c in phase["couple"]), float(phase["couple_gain"]),
                        tuple(phase["couple_clip"]) if phase["couple_clip"] else None,
                        phase_index[phase["couple_from"]] if phase["couple_from"] else None)
              for k, phase in enumerate(graph.graph.get("phases") or [])]
    for key, edge in edges.items():
        if edge["learn"] and edge["learn"].get("phases"):
            projections[key].learn_phases = tuple(sorted(phase_index[p] for p in edge["learn"]["phases"]))
    program = Program(graph.graph["name"], graph.graph["file"], dtype, graph.graph["dt"], seed, populations,
                      projections, dale=graph.graph["dale"], phases=phases)
    program.biases = bias_plans(graph, program, phase_index)
    program.phase_values = phase_values(program)
    normalize_initial(program)
    fill_ties(program)
    if graph.graph["spectral_radius"]:
        rescale_recurrent(program, graph.graph["spectral_radius"])
        fill_ties(program)  # a tie holds whichever of the two was rescaled
    program.ops = order_ops(program)
    program.content_hash = content_hash(graph, program)
    return program


def bias_plans(graph, program: Program, phase_index: dict[str, int]) -> dict[str, BiasPlan]:
    """A learned bias per population with ``learn_bias``: its bias becomes a per-neuron array (the
    number or the drawn values are its initial value), the rule bound as on a projection."""
    out = {}
    for name, node in graph.nodes(data=True):
        learn = node.get("learn_bias")
        if not learn:
            continue
        p = program.populations[name]
        p.bias = np.ascontiguousarray(np.broadcast_to(np.asarray(p.bias, dtype=program.dtype), (p.size,)).copy())
        weights = Weights((p.size, 1), dense=p.bias.reshape(p.size, 1))  # a view: one array for both
        phases = learn.get("phases")
        out[name] = BiasPlan(
            name=f"bias->{name}", index=len(program.projections) + len(out), target=name, weights=weights,
            rule=bind_rule(graph, {"learn": learn, "name": f"bias->{name}"}), learn=learn,
            bounds=tuple(node["bias_bounds"]) if node.get("bias_bounds") else None,
            learn_phases=tuple(sorted(phase_index[k] for k in phases)) if phases else None,
            span=node["spans"].get("learn_bias", node["span"]))
    return out


def normalize_initial(program: Program) -> None:
    """``normalize = S`` holds from the start, as after every update (EIANN constrains its weights
    at initialisation too): each row's L1 sum set to S, rows summing to 0 left alone. Runs before
    ties are filled, so a projection tied to a normalized one starts from the normalized weights."""
    from eigraph.backends.numpy_ref import _normalize  # the same arithmetic as after an update

    for q in program.projections.values():
        # weights(file) start as the file says (normalize then holds from the first update)
        if q.normalize and q.tie is None and not q.connectivity.startswith("weights"):
            w = q.weights
            _normalize(w, w.data if w.is_sparse else w.dense, q.normalize)


def fill_ties(program: Program) -> None:
    """Tied projections: W = scale * W_of^T (their mask the transposed mask)."""
    for q in program.projections.values():
        if q.tie is not None:
            of = program.projections[q.tie[0]].weights
            values = (q.tie[1] * of.dense.T).astype(program.dtype)
            if q.weights.dense is None or q.weights.dense.shape != values.shape:
                q.weights.dense = np.ascontiguousarray(values)
            else:
                q.weights.dense[...] = values
            q.weights.mask = None if of.mask is None else np.ascontiguousarray(of.mask.T)


def phase_values(program: Program) -> list[tuple[str, str, int]]:
    """What must be kept at the end of each phase: the ``X@PHASE`` values rules read and the
    compartments a phase couples relative to an earlier one. (population, what, phase index)."""
    out: list[tuple[str, str, int]] = []
    for q in program.learners:
        for statement in q.rule.statements:
            for node in ex.walk(statement.value):
                if isinstance(node, ex.Name) and node.phase is not None:
                    if q.source is None and node.base == "pre":
                        continue  # a learned bias: pre@PHASE is the always-on unit's 1
                    key = program.phase_value_key(q, node.dotted)
                    if key is None:
                        raise CompileError(f"rule {q.rule.name} on {q.name} reads {node.dotted}, but the model has "
                                           f"no phase '{node.phase}'")
                    out.append(key)
    for phase in program.phases:
        if phase.couple_from is not None:
            out += [(population, c, phase.couple_from) for population, c in phase.couple]
    return list(dict.fromkeys(out))


def bind_rule(graph, edge: dict) -> RulePlan:
    """The rule of a projection with its argument values; compartment parameters substituted."""
    from eigraph.frontend.dsl import parse_document

    learn = edge["learn"]
    spec = graph.graph["rules"][learn["rule"]]
    doc, problems = parse_document(spec["text"], f"<rule {learn['rule']}>")
    if doc is None or problems or not doc.rules:  # the text was printed by us from a checked rule
        raise CompileError(f"rule {learn['rule']} could not be re-read: {problems}")
    statements = doc.rules[0].body
    args = dict(learn["args"])
    names = {k: v for k, v in args.items() if isinstance(v, str)}
    if names:
        statements = [_substitute(s, names) for s in statements]
    statements = number_draws(statements)  # each bernoulli / uniform its own stream of draws
    params = {k: float(v) for k, v in args.items() if not isinstance(v, str)}
    env = {k: Value(v) for k, v in params.items()}
    trace_init = {}
    for s in statements:
        if s.kind == "init":
            try:
                trace_init[s.target] = evaluate(s.value, env).magnitude
            except EvalError as exc:
                raise CompileError(f"initial value of {s.target} in rule {learn['rule']}: {exc.message}") from None
    traces = [s.target for s in statements if s.kind == "ode"]
    if traces and graph.graph["dt"] is None:
        raise CompileError(f"rule {learn['rule']} on {edge['name']} integrates traces ({', '.join(traces)}), which "
                           "needs the network's dt: set dt in the network block")
    analysis = analyse(statements, set(params))
    return RulePlan(learn["rule"], spec["timing"], params, statements, analysis, trace_init, spec["text"])


def _substitute(statement, names: dict[str, str]):
    """post.PARAM -> post.VALUE for compartment-name parameters."""
    import dataclasses

    def rewrite(expr):
        if isinstance(expr, ex.Name) and (expr.phase in names or (len(expr.parts) == 2 and expr.parts[0] == "post"
                                                                    and expr.parts[1] in names)):
            parts = expr.parts
            if len(parts) == 2 and parts[0] == "post" and parts[1] in names:
                parts = ("post", names[parts[1]])
            return ex.Name(parts, phase=names.get(expr.phase, expr.phase), span=expr.span)
        if isinstance(expr, ex.BinOp):
            return ex.BinOp(expr.op, rewrite(expr.left), rewrite(expr.right), span=expr.span)
        if isinstance(expr, ex.Neg):
            return ex.Neg(rewrite(expr.operand), span=expr.span)
        if isinstance(expr, ex.Call):
            return ex.Call(expr.func, tuple(rewrite(a) for a in expr.args), expr.kwargs, span=expr.span)
        return expr

    return dataclasses.replace(statement, value=rewrite(statement.value))


def recurrent_projections(program: Program) -> list[ProjectionPlan]:
    """Projections among hidden populations: the recurrent matrix of the network."""
    hidden = {n for n, p in program.populations.items() if p.role == "hidden"}
    return [q for q in program.projections.values() if q.source in hidden and q.target in hidden
            and q.carry != "error"]


def effective_recurrent_matrix(program: Program) -> tuple[np.ndarray, list[str]]:
    """sign * gain * W over all hidden populations (delays and compartments ignored), dense."""
    hidden = [n for n, p in program.populations.items() if p.role == "hidden"]
    offset, total = {}, 0
    for name in hidden:
        offset[name] = total
        total += program.populations[name].size
    matrix = np.zeros((total, total))
    for q in recurrent_projections(program):
        rows = slice(offset[q.target], offset[q.target] + program.populations[q.target].size)
        cols = slice(offset[q.source], offset[q.source] + program.populations[q.source].size)
        matrix[rows, cols] += q.factor * q.weights.to_dense()
    return matrix, hidden


def spectral_radius(program: Program) -> float:
    matrix, _ = effective_recurrent_matrix(program)
    if matrix.size == 0:
        return 0.0
    if matrix.shape[0] <= 3000:
        return float(np.max(np.abs(np.linalg.eigvals(matrix))))
    from scipy.sparse.linalg import eigs

    return float(np.abs(eigs(matrix, k=1, which="LM", return_eigenvectors=False, maxiter=5000)[0]))


def rescale_recurrent(program: Program, target: float) -> None:
    current = spectral_radius(program)
    if current == 0.0:
        raise CompileError(f"spectral_radius = {target} is set, but the recurrent matrix of '{program.name}' is zero "
                           "or has no recurrent projections among hidden populations")
    for q in recurrent_projections(program):
        q.weights.scale(target / current)


def order_ops(program: Program) -> list[Op]:
    """Derive the step order from reads and writes: writers come before readers of a value."""
    ops: list[Op] = []
    for p in program.populations.values():
        if p.role == "input":
            ops.append(Op("input", p.name, (), (f"r:{p.name}",), order=len(ops)))
    for q in program.projections.values():
        reads = (f"r:{q.source}",) if q.delay == 0 else ()
        ops.append(Op("deliver", q.name, reads, (f"in:{q.target}",), order=len(ops)))
    for p in program.populations.values():
        if p.role != "input":
            ops.append(Op("integrate", p.name, (f"in:{p.name}",), (f"r:{p.name}", f"x:{p.name}"), order=len(ops)))
    ops.append(Op("record", "*", tuple(f"r:{p}" for p in program.populations), (), order=len(ops)))
    for q in program.learners:  # rules see this step's rates; no rule sees another's half-done update
        ops.append(Op("learn", q.name, tuple(f"r:{p}" for p in program.populations), ("dw",), order=len(ops)))
    for q in program.learners:
        ops.append(Op("update", q.name, ("dw",), (f"w:{q.name}",), order=len(ops)))
    writers: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for value in op.writes:
            writers.setdefault(value, []).append(i)
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(ops)))
    for i, op in enumerate(ops):
        for value in op.reads:
            for w in writers.get(value, ()):
                if w != i:
                    dag.add_edge(w, i)
    try:
        order = list(nx.lexicographical_topological_sort(dag, key=lambda i: ops[i].order))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(dag)
        names = " -> ".join(ops[a].name for a, _ in cycle)
        raise CompileError(f"zero-delay cycle among {names}: give one projection delay = 1 steps") from None
    return [ops[i] for i in order]


def content_hash(graph, program: Program) -> str:
    from eigraph import __version__

    try:
        import numba

        numba_version = numba.__version__
    except ImportError:  # pragma: no cover - numba is a dependency
        numba_version = "none"
    layout = {q.name: ("csr" if q.weights.is_sparse else "dense", q.weights.mask is not None)
              for q in program.projections.values()}
    payload = json.dumps([signature(graph), str(program.dtype), layout, __version__, numba_version, np.__version__],
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]
