"""The NumPy reference: the definition of what a Program computes, written for clarity.

It interprets the Program's operations one by one, every step. The other backends are tested
against it. See :mod:`eigraph.compile.program` for the time convention.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from eigraph.compile.program import Program, ProjectionPlan
from eigraph.compile.rules import SELECT, draw_site, select_top, selected_count
from eigraph.expr.numpy_eval import evaluate_array
from eigraph.runtime.errors import InputError


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """The activation functions of the language; softmax is over the neurons of each batch element."""
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "softplus":
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    if name == "linear":
        return x.copy()
    if name == "clip01":
        return np.clip(x, 0, 1)
    if name == "softmax":
        e = np.exp(x - x.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)
    raise ValueError(f"unknown activation {name}")


def derivative(name: str, x: np.ndarray) -> np.ndarray:
    """f'(x), the derivative of an activation at the state x (a rule's ``post.fprime``). relu: 1 for
    x > 0, 0 for x <= 0 (0 at the kink); clip01: 1 for 0 < x < 1, else 0. softmax has none per neuron
    (validate refuses post.fprime there: C304)."""
    if name == "relu":
        return (x > 0).astype(x.dtype)
    if name == "tanh":
        return 1 - np.tanh(x) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-x))
        return s * (1 - s)
    if name == "softplus":
        return 1 / (1 + np.exp(-x))
    if name == "linear":
        return np.ones_like(x)
    if name == "clip01":
        return ((x > 0) & (x < 1)).astype(x.dtype)
    raise ValueError(f"activation {name} has no derivative per neuron")


class NumpyBackend:
    name = "numpy"

    def __init__(self, program: Program):
        self.program = program

    def source(self) -> str | None:
        return None

    def run(self, sim, steps: int, inputs: dict, noise: dict, records: dict, targets: dict | None = None,
            reward: np.ndarray | None = None, learn: bool = True, trial_end: bool = True, baseline=None,
            gate: np.ndarray | None = None):
        """Advance ``sim`` by ``steps``. Returns None, or (step, what) for the first non-finite value:
        ``what`` is a population name, or ``("rule", projection name)`` for weights. ``gate``: one
        flag per step, the steps where rules on step change weights and errors count (None: all)."""
        with np.errstate(all="ignore"):  # overflow is reported as a SimulationError, not a warning
            return self._run(sim, steps, inputs, noise, records, targets, reward, learn, trial_end, baseline, gate)

    def _run(self, sim, steps, inputs, noise, records, targets, reward, learn, trial_end, baseline=None, gate=None):
        program = self.program
        phase = program.phases[sim.phase] if program.phases else None
        targets = targets or {}
        for t in range(steps):
            n = sim.n
            now, nxt = n % 2, (n + 1) % 2
            summed: dict[tuple[str, str | None], np.ndarray] = {}
            pending: dict[str, np.ndarray] = {}
            for op in program.ops:
                if op.kind == "input":
                    p = program.populations[op.name]
                    sim.r[p.name][(n + 1) % p.history] = inputs[p.name][t]
                elif op.kind == "deliver":
                    q = program.projections[op.name]
                    source = program.populations[q.source]
                    buffer = sim.error if q.carry == "error" else sim.r  # carry = error: target - r
                    rates = buffer[q.source][(n + 1 - q.delay) % source.history]
                    w = q.weights
                    if w.is_sparse:
                        delivered = scipy.sparse.csr_array((w.data, w.indices, w.indptr), shape=w.shape) @ rates
                    else:
                        delivered = w.dense @ rates
                    key = (q.target, q.compartment)
                    summed[key] = summed.get(key, 0) + q.factor * delivered
                elif op.kind == "integrate":
                    p = program.populations[op.name]
                    zeros = np.zeros((p.size, sim.batch), dtype=program.dtype)
                    soma = summed.get((p.name, None), zeros)
                    for c in p.compartments:
                        sim.compartment[f"{p.name}.{c}"][...] = summed.get((p.name, c), zeros)
                        if c in p.compartment_gains:
                            soma = soma + p.compartment_gains[c] * sim.compartment[f"{p.name}.{c}"]
                    if phase is not None:
                        for c in phase.couples(p.name):
                            coupled = sim.compartment[f"{p.name}.{c}"]
                            if phase.couple_from is not None:
                                coupled = coupled - sim.phase_values[(p.name, c, phase.couple_from)]
                            if phase.couple_clip is not None:
                                coupled = np.clip(coupled, *phase.couple_clip)
                            soma = soma + phase.couple_gain * coupled
                        if p.name in phase.nudge:  # toward the target: beta * (target - r) joins the input
                            rate_now = sim.r[p.name][n % p.history]
                            soma = soma + phase.beta * (targets[p.name][t] - rate_now)
                    x = sim.x[p.name][now]
                    bias = p.bias[:, None] if isinstance(p.bias, np.ndarray) else p.bias
                    new = x + p.alpha * (-x + soma + bias)
                    if p.noise:
                        new = new + np.sqrt(2 * p.alpha) * p.noise * noise[p.name][t]
                    if phase is not None and p.name in phase.clamp:  # the state and the rate are the target
                        new = np.array(targets[p.name][t], dtype=program.dtype)
                        sim.x[p.name][nxt] = new
                        rate = new.copy()
                    else:
                        sim.x[p.name][nxt] = new
                        rate = activation(p.activation, new)
                    if not (np.isfinite(new).all() and np.isfinite(rate).all()):
                        return n, p.name
                    sim.r[p.name][(n + 1) % p.history] = rate
                    if p.name in sim.error:  # its error, for carry = error: 0 on steps without a target
                        sim.error[p.name][(n + 1) % p.history] = \
                            targets[p.name][t] - rate if p.name in targets and (gate is None or gate[t]) else 0
                elif op.kind == "record":
                    for key, array in records.items():
                        array[t] = sim.read(key, after=n + 1)
                elif op.kind == "learn" and learn and program.learns_in(program.learner(op.name), sim.phase):
                    q = program.learner(op.name)
                    apply = (q.rule.timing == "step" and (gate is None or bool(gate[t]))) or \
                        (q.rule.timing == "trial" and trial_end and t == steps - 1)
                    dw = self.learn(sim, q, n, t, targets or {}, reward, apply, noise.get(f"rule:{q.name}"),
                                    baseline)
                    if not all(np.isfinite(sim.traces[f"{q.name}:{z}"]).all() for z in q.rule.analysis.trace_shape):
                        return n, ("rule", q.name)
                    if dw is not None:
                        pending[q.name] = dw
                elif op.kind == "update" and op.name in pending:
                    q = program.learner(op.name)
                    apply_update(program, q, pending[op.name])
                    if not np.isfinite(q.weights.values()).all():
                        return n, ("rule", q.name)
            sim.n += 1
        return None

    def learn(self, sim, q: ProjectionPlan, n: int, t: int, targets: dict, reward, apply: bool, draws=None,
              baseline=None):
        """One step of a rule: traces integrated (Euler, the model's dt), then dw (batch-averaged)
        when ``apply``. Evaluated in a (post x pre x batch) frame, the plainest reading of the rule.
        ``draws``: the run's uniform draws of this projection's rule, (steps, streams, N_post, B)."""
        program, rule = self.program, q.rule
        post_pop = program.populations[q.target]
        if q.source is None:  # a learned bias: the synapses of an always-on unit (pre = 1)
            pre = np.ones((1, sim.batch), dtype=program.dtype)
        else:
            pre = sim.r[q.source][(n + 1 - q.delay) % program.populations[q.source].history]
        post = sim.r[q.target][(n + 1) % post_pop.history]
        w = q.weights
        weights = w.to_dense() if w.is_sparse else w.dense
        n_post, n_pre, batch = post.shape[0], pre.shape[0], sim.batch
        rows = np.repeat(np.arange(n_post), np.diff(w.indptr)) if w.is_sparse else None
        dt = program.dt or 1.0
        temps: dict[str, np.ndarray] = {}

        def trace_frame(name):
            value = sim.traces[f"{q.name}:{name}"]
            kind, batched = rule.analysis.trace_shape[name], rule.analysis.batched[name]
            if kind == "syn" and w.is_sparse:
                full = np.zeros((n_post, n_pre) + value.shape[1:], dtype=value.dtype)
                full[rows, w.indices] = value
                value = full
            if not batched and kind != "const":
                value = value[..., None]
            if kind == "pre":
                return value[None]
            if kind == "post":
                return value[:, None]
            if kind == "syn":
                return value
            return value[None, None, :] if batched else value[0]

        def lookup(name):
            if "@" in name:  # the value at the end of an earlier phase of this trial
                if name.startswith("pre@") and q.source is None:
                    return pre[None]  # the always-on unit of a learned bias
                value = sim.phase_values[program.phase_value_key(q, name)]
                return value[None] if name.startswith("pre@") else value[:, None]
            if name == "pre":
                return pre[None]
            if name == "post":
                return post[:, None]
            if name == "post.x":
                return sim.x[q.target][(n + 1) % 2][:, None]
            if name == "post.fprime":
                return derivative(post_pop.activation, sim.x[q.target][(n + 1) % 2])[:, None]
            if name.startswith("post."):
                return sim.compartment[f"{q.target}.{name[5:]}"][:, None]
            if name == "w":
                return weights[:, :, None]
            if name == "target":
                if q.target not in targets:
                    raise InputError(f"rule {rule.name} on {q.name} reads 'target', but no targets were given "
                                     f"for '{q.target}': pass run(..., targets=...)")
                return targets[q.target][t][:, None]
            if name == "reward":
                if reward is None:
                    raise InputError(f"rule {rule.name} on {q.name} reads 'reward', but no reward was given: "
                                     "pass run(..., reward=...)")
                return reward[t][None, None, :]
            if name == "reward_baseline":
                if baseline is None:
                    raise InputError(f"rule {rule.name} on {q.name} reads 'reward_baseline', but none was given: "
                                     "pass run(..., reward_baseline=...)")
                return baseline[t][None, None, :]
            if name == "dt":
                return dt
            if name == "sign":
                return float(q.sign if q.sign != 0 else 1)
            if name == "t":
                return (n + 1) * dt
            if name in rule.params:
                return rule.params[name]
            if name in temps:
                return temps[name]
            return trace_frame(name)

        def mean(name):
            return (pre if name == "pre" else post).mean(axis=0)[None, None, :]

        def per_post(value):  # a value of each post neuron and batch element, (N_post, B)
            return np.broadcast_to(np.asarray(value, dtype=program.dtype), (n_post, 1, batch))[:, 0, :]

        def population(call, evaluate):
            """top_fraction(x, f), bernoulli(p), uniform(): one value per post neuron and batch element."""
            if call.func == SELECT:
                count = selected_count(call.args[1], rule.params, n_post)
                chosen = select_top(per_post(evaluate(call.args[0])), count)
                return chosen.astype(program.dtype)[:, None, :]
            u = draws[t, draw_site(call)]  # uniform in [0, 1), drawn by the simulator (seeded)
            if call.func == "uniform":
                return u[:, None, :]
            p = np.clip(per_post(evaluate(call.args[0])), 0, 1)
            return (u < p).astype(program.dtype)[:, None, :]

        frame = (n_post, n_pre, batch)
        dw = None
        for statement in rule.statements:
            if statement.kind == "init":
                continue
            value = evaluate_array(statement.value, lookup, mean, population)
            if statement.kind == "ode":
                key = f"{q.name}:{statement.target}"
                full = np.broadcast_to(np.asarray(value, dtype=program.dtype), frame)
                kind = rule.analysis.trace_shape[statement.target]
                reduced = _to_trace_shape(full, kind, rows, w)
                if not rule.analysis.batched[statement.target]:
                    reduced = reduced.mean(axis=-1)
                sim.traces[key][...] = sim.traces[key] + dt * np.reshape(reduced, sim.traces[key].shape)
            elif statement.target == "dw":
                if apply:
                    full = np.broadcast_to(np.asarray(value, dtype=program.dtype), frame).mean(axis=-1)
                    dw = full[rows, w.indices] if w.is_sparse else full
            else:
                temps[statement.target] = np.array(value, copy=True)  # not a view of a trace a later line changes
        return dw


def _to_trace_shape(full: np.ndarray, kind: str, rows, w) -> np.ndarray:
    """A value in the (post x pre x batch) frame, reduced to a trace's own shape."""
    if kind == "pre":
        return full[0]
    if kind == "post":
        return full[:, 0]
    if kind == "const":
        return full[0, 0]
    return full[rows, w.indices] if w.is_sparse else full


def apply_update(program: Program, q: ProjectionPlan, dw: np.ndarray) -> None:
    """W += dw on the synapses that exist, then the constraints in order: the Dale clip of
    magnitudes at 0, bounds, then normalize (each row's L1 sum)."""
    w = q.weights
    values = w.data if w.is_sparse else w.dense
    values += dw.astype(values.dtype)
    if program.dale and q.sign != 0:
        np.maximum(values, 0, out=values)
    if q.bounds:
        np.clip(values, q.bounds[0], q.bounds[1], out=values)
    if not w.is_sparse and w.mask is not None:
        values[~w.mask] = 0
    if q.normalize:
        _normalize(w, values, q.normalize)
    from eigraph.runtime.simulator import refresh_ties

    refresh_ties(program, q.name)


def _normalize(w, values, total) -> None:
    """Each row's L1 sum set to ``total`` (rows that sum to 0 are left alone)."""
    if w.is_sparse:
        rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        sums = np.bincount(rows, weights=np.abs(values), minlength=w.shape[0])
        scale = np.where(sums > 0, total / np.where(sums > 0, sums, 1), 1.0)
        values *= scale[rows].astype(values.dtype)
    else:
        sums = np.abs(values).sum(axis=1)
        scale = np.where(sums > 0, total / np.where(sums > 0, sums, 1), 1.0)
        values *= scale[:, None].astype(values.dtype)
