"""The Simulator: state, inputs, noise, records, weights and checkpoints around a backend.

Arrays are stored neuron-major with the batch last, ``(N, B)``, so a dense projection is one
BLAS product ``W @ r`` and a sparse row's update is contiguous over the batch. What the user
sees is time x batch x neurons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np

from eigraph.check.resources import available_memory, human
from eigraph.compile.connectivity import Weights, projection_rng
from eigraph.compile.program import Program
from eigraph.expr import ast as ex
from eigraph.runtime.errors import InputError, SimulationError

NOISE_CHUNK_BYTES = 64 * 1024 * 1024  # noise is drawn for this many bytes of steps at a time
FORMAT_VERSION = 1


class WeightsView(Mapping):
    """``sim.weights["E->I"]``: the weights of a projection as a dense post x pre array (a copy).

    Under Dale's law these are magnitudes (>= 0); the sign comes from the source's cell type.
    Assigning ``sim.weights["E->I"] = W`` checks the shape, finite values, signs, and, for
    sparse projections, that W is zero where the projection has no synapse.
    """

    def __init__(self, sim: Simulator):
        self._sim = sim

    def __getitem__(self, name: str) -> np.ndarray:
        return self._plan(name).weights.to_dense()

    def __setitem__(self, name: str, value) -> None:
        plan = self._plan(name)
        if plan.tie is not None:
            raise InputError(f"{name} is tied to '{plan.tie[0]}' (its weights are {plan.tie[1]:g} x the transpose of "
                             f"those): set the weights of '{plan.tie[0]}' instead")
        w = plan.weights
        array = np.asarray(value, dtype=np.float64)
        if array.shape != w.shape:
            raise InputError(f"weights of {name} must have shape (post x pre) = {w.shape}, got {array.shape}")
        if not np.isfinite(array).all():
            raise InputError(f"weights of {name} contain NaN or infinite values")
        if plan.sign != 0 and self._sim.program.dale and (array < 0).any():
            raise InputError(f"weights of {name} are magnitudes under Dale's law (the sign comes from "
                             f"'{plan.source}'), but some are negative")
        if w.is_sparse:
            present = np.zeros(w.shape, dtype=bool)
            rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
            present[rows, w.indices] = True
            if (array[~present] != 0).any():
                raise InputError(f"{name} ({plan.connectivity}) is sparse: the new weights must be 0 where it has "
                                 "no synapse")
            w.data[:] = array[rows, w.indices]
        else:
            if w.mask is not None and (array[~w.mask] != 0).any():
                what = "is sparse" if plan.connectivity.split("(")[0] in ("sparse", "fixed_in", "one_to_one", "mask") \
                    else "has no autapses"
                raise InputError(f"{name} ({plan.connectivity}) {what}: the new weights must be 0 where it has "
                                 "no synapse")
            w.dense[...] = array
        refresh_ties(self._sim.program, name)

    def stored(self, name: str) -> Weights:
        """The live storage (dense or CSR) of a projection's weights; writing to it changes the model."""
        return self._plan(name).weights

    def _plan(self, name: str):
        try:
            return self._sim.program.projections[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, list(self._sim.program.projections), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise KeyError(f"no projection named '{name}'{hint} (projections: "
                           f"{', '.join(self._sim.program.projections)})") from None

    def __iter__(self):
        return iter(self._sim.program.projections)

    def __len__(self) -> int:
        return len(self._sim.program.projections)


class BiasesView(Mapping):
    """``sim.biases["H1.E"]``: a population's bias, one value per neuron (a copy), for every
    population that is not an input. A learned bias (``learn_bias``) changes as the rule updates it.
    Assigning ``sim.biases["H1.E"] = b`` (one number or one per neuron, finite) sets a learned or
    per-neuron (drawn) bias; a bias that is one number for the whole population is a constant of
    the compiled kernel and cannot be set."""

    def __init__(self, sim: Simulator):
        self._sim = sim

    def _population(self, name: str):
        program = self._sim.program
        p = program.populations.get(name)
        if p is None or p.role == "input":
            import difflib

            close = difflib.get_close_matches(name, list(self), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise KeyError(f"no population with a bias named '{name}'{hint} (populations: {', '.join(self)})")
        return p

    def __getitem__(self, name: str) -> np.ndarray:
        p = self._population(name)
        if isinstance(p.bias, np.ndarray):
            return p.bias.copy()
        return np.full(p.size, p.bias, dtype=self._sim.program.dtype)

    def __setitem__(self, name: str, value) -> None:
        p = self._population(name)
        if not isinstance(p.bias, np.ndarray):
            raise InputError(f"the bias of '{name}' is one number compiled into the kernel: give the population "
                             "learn_bias = ... or a per-neuron bias (bias = uniform(...)) to set it from Python")
        array = np.asarray(value, dtype=np.float64)
        if array.shape not in ((), (p.size,)):
            raise InputError(f"the bias of '{name}' must be one number or one per neuron ({p.size},), "
                             f"got {array.shape}")
        if not np.isfinite(array).all():
            raise InputError(f"the bias of '{name}' contains NaN or infinite values")
        p.bias[...] = array

    def __iter__(self):
        return iter([n for n, p in self._sim.program.populations.items() if p.role != "input"])

    def __len__(self) -> int:
        return len(list(iter(self)))


class Simulator:
    """Runs a compiled model. Create it with ``model.compile(backend=..., batch=...)``."""

    def __init__(self, program: Program, backend: str = "numba", batch: int = 1, seed: int | None = None):
        if int(batch) != batch or batch < 1:
            raise InputError(f"batch must be a whole number >= 1, got {batch}")
        self.program = program
        self.batch = int(batch)
        self.seed = program.seed if seed is None else int(seed)
        self.backend_name = backend
        self.backend = make_backend(program, backend, self.batch)
        self._initial_weights = {name: _copy_weights(q.weights) for name, q in program.projections.items()}
        self._initial_biases = {name: b.weights.dense.copy() for name, b in program.biases.items()}
        self.weights = WeightsView(self)
        self.biases = BiasesView(self)
        self.reset()
        warm_up = getattr(self.backend, "warm_up", None)
        if warm_up is not None:
            warm_up(self)

    # state -------------------------------------------------------------------------------------
    def reset(self, weights: bool = False) -> None:
        """Back to the initial state at step 0 (the noise stream restarts too). ``weights=True``
        also restores the initial weights."""
        program, dtype, batch = self.program, self.program.dtype, self.batch
        from eigraph.backends.numpy_ref import activation

        self.n = 0
        rest = self.__dict__.get("_rest")
        if rest is None:  # the state at rest, made once: a reset copies it (cheap next to a short trial)
            rest = self._rest = {"x": {}, "r": {}, "c": {}}
            for p in program.populations.values():
                rest["r"][p.name] = np.zeros((p.history, p.size, batch), dtype=dtype)
                if p.role != "input":
                    rest["x"][p.name] = np.full((2, p.size, batch), p.x0, dtype=dtype)
                    rate = activation(p.activation, rest["x"][p.name][0]).astype(dtype)
                    rest["r"][p.name][...] = rate  # every earlier step was at rest
                for c in p.compartments:
                    rest["c"][f"{p.name}.{c}"] = np.zeros((p.size, batch), dtype=dtype)
        self.x: dict[str, np.ndarray] = {k: v.copy() for k, v in rest["x"].items()}
        self.r: dict[str, np.ndarray] = {k: v.copy() for k, v in rest["r"].items()}
        self.compartment: dict[str, np.ndarray] = {k: v.copy() for k, v in rest["c"].items()}
        # carry = error: each error source's ring buffer of target - r (0 where no target), as r's
        self.error: dict[str, np.ndarray] = {
            name: np.zeros((program.populations[name].history, program.populations[name].size, batch), dtype=dtype)
            for name in program.error_sources}
        self.phase = 0  # the phase the next run() runs in (docs/runtime.md, phases)
        self.phase_values: dict[tuple[str, str, int], np.ndarray] = {
            key: np.zeros((program.populations[key[0]].size, batch), dtype=dtype) for key in program.phase_values}
        self.traces: dict[str, np.ndarray] = {}
        for q in program.learners:  # a learned bias: traces as of a projection from one always-on unit
            pre = 1 if q.source is None else program.populations[q.source].size
            post = program.populations[q.target].size
            nnz = q.weights.nnz if q.weights.is_sparse else None
            for trace in q.rule.analysis.trace_shape:
                shape = q.rule.trace_shape(trace, post, pre, nnz, batch)
                self.traces[f"{q.name}:{trace}"] = np.full(shape, q.rule.trace_init.get(trace, 0.0), dtype=dtype)
        own, seed, start = self.__dict__.get("_noise_start", (None, None, None))
        if own is not None and self.__dict__.get("noise_rng") is own and seed == self.seed:
            own.bit_generator.state = start  # our stream from its start, without re-deriving the seed
        else:  # first reset, a new seed, or a generator put in by the caller (left untouched)
            self.noise_rng = projection_rng(self.seed, program.name, "noise")
            self._noise_start = (self.noise_rng, self.seed, self.noise_rng.bit_generator.state)
        self._reset_draws()
        if weights:
            for name, initial in self._initial_weights.items():
                _assign_weights(program.projections[name].weights, initial)
            for name in program.projections:
                refresh_ties(program, name)
            for name, initial in self._initial_biases.items():
                program.biases[name].weights.dense[...] = initial

    def _reset_draws(self) -> None:
        """The rules' random draws (``bernoulli``, ``uniform``) back to the start of their streams:
        one per projection (or learned bias, ``bias->POP``) whose rule draws, seeded from the seed and its name."""
        from eigraph.compile.rules import draw_count

        starts = self.__dict__.get("_draw_start")
        if starts is not None and starts[0] == self.seed:
            for name, state in starts[1].items():
                self.draw_rngs[name].bit_generator.state = state
            return
        self.draw_rngs = {q.name: projection_rng(self.seed, q.name, "draws") for q in self.program.learners
                          if draw_count(q.rule.statements)}
        self._draw_start = (self.seed, {name: rng.bit_generator.state for name, rng in self.draw_rngs.items()})

    def _draws(self, length: int, learn: bool) -> dict[str, np.ndarray]:
        """Uniform [0, 1) draws for ``length`` steps of each rule that draws and learns in this run:
        (steps, streams, N_post, B), step by step from the projection's own stream, so the numbers
        a step gets do not depend on how a run is cut into calls. A run that does not learn draws none."""
        from eigraph.compile.rules import draw_count

        out = {}
        if not learn:
            return out
        for name, rng in self.draw_rngs.items():
            q = self.program.learner(name)
            if not self.program.learns_in(q, self.phase):
                continue
            shape = (length, draw_count(q.rule.statements), self.program.populations[q.target].size, self.batch)
            out[f"rule:{name}"] = rng.random(shape, dtype=self.program.dtype)
        return out

    def _draw_bytes(self, learn: bool) -> int:
        """Bytes of rule draws per step (for the chunking of a run)."""
        from eigraph.compile.rules import draw_count

        if not learn:
            return 0
        program = self.program
        return sum(draw_count(program.learner(name).rule.statements) * program.populations[
            program.learner(name).target].size for name in self.draw_rngs
            if program.learns_in(program.learner(name), self.phase)) * self.batch * np.dtype(program.dtype).itemsize

    def reset_state(self, traces: bool = False) -> None:
        """Start a new trial: states, rates and compartment inputs back to rest and the step
        counter to 0, keeping the weights and the noise stream (which goes on where it was).
        ``traces=True`` also sets the rules' traces back to their initial values."""
        from eigraph.backends.numpy_ref import activation

        program = self.program
        self.n = 0
        self.phase = 0
        for array in self.phase_values.values():  # a new trial: no phase has ended yet
            array[...] = 0
        for p in program.populations.values():
            if p.role == "input":
                self.r[p.name][...] = 0
            else:
                self.x[p.name][...] = p.x0
                self.r[p.name][...] = activation(p.activation, self.x[p.name][0]).astype(program.dtype)
            for c in p.compartments:
                self.compartment[f"{p.name}.{c}"][...] = 0
        for array in self.error.values():
            array[...] = 0
        if traces:
            for q in program.learners:
                for trace in q.rule.analysis.trace_shape:
                    self.traces[f"{q.name}:{trace}"][...] = q.rule.trace_init.get(trace, 0.0)

    @property
    def t(self) -> float | None:
        """Simulated time in seconds (None when the model has no dt)."""
        return self.n * self.program.dt if self.program.dt else None

    def read(self, name: str, after: int | None = None) -> np.ndarray:
        """The current value of ``POP.r``, ``POP.x`` or ``POP.COMPARTMENT`` as (N, B) (a view);
        ``POP.fprime``, the derivative of the activation at the current state (a new array), and
        ``POP.err``, the error target - r that ``carry = error`` projections deliver (a view)."""
        n = self.n if after is None else after
        population, _, what = name.rpartition(".")
        p = self.program.populations.get(population)
        if p is None:
            raise KeyError(f"no population '{population}' (in '{name}')")
        if what == "r":
            return self.r[population][n % p.history]
        if what == "x" and p.role != "input":
            return self.x[population][n % 2]
        if what == "fprime" and p.role != "input" and p.activation != "softmax":
            from eigraph.backends.numpy_ref import derivative

            return derivative(p.activation, self.x[population][n % 2])
        if what == "err" and population in self.error:
            return self.error[population][n % p.history]
        if name in self.compartment:
            return self.compartment[name]
        raise KeyError(f"cannot read '{name}': use POP.r, POP.x (not for inputs) or POP.COMPARTMENT")

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Current rates, states and compartment inputs as batch x neurons copies."""
        out = {}
        for p in self.program.populations.values():
            out[f"{p.name}.r"] = self.read(f"{p.name}.r").T.copy()
            if p.role != "input":
                out[f"{p.name}.x"] = self.read(f"{p.name}.x").T.copy()
        for key, value in self.compartment.items():
            out[key] = value.T.copy()
        return out

    # running -----------------------------------------------------------------------------------
    def _inputs(self, inputs, steps: int | None) -> tuple[dict[str, np.ndarray], int]:
        program = self.program
        names = [p.name for p in program.populations.values() if p.role == "input"]
        if inputs is None:
            given = {}
        elif isinstance(inputs, Mapping):
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise InputError(f"'{unknown[0]}' is not an input population (inputs: {', '.join(names) or 'none'})")
            given = dict(inputs)
        else:
            if len(names) != 1:
                raise InputError(f"the model has {len(names)} input populations ({', '.join(names) or 'none'}): "
                                 "pass a dict {name: array}")
            given = {names[0]: inputs}
        arrays, lengths = {}, set()
        for name, value in given.items():
            array = np.asarray(value)
            size = program.populations[name].size
            if array.ndim == 2 and self.batch == 1:
                array = array[:, None, :]
            if array.ndim != 3 or array.shape[1:] != (self.batch, size):
                raise InputError(f"inputs for '{name}' must have shape (time, batch, neurons) = "
                                 f"(T, {self.batch}, {size}), got {array.shape}")
            if not np.isfinite(array).all():
                raise InputError(f"inputs for '{name}' contain NaN or infinite values")
            arrays[name] = array
            lengths.add(array.shape[0])
        if len(lengths) > 1:
            raise InputError(f"inputs have different numbers of steps: {sorted(lengths)}")
        if lengths:
            length = lengths.pop()
            if steps is not None and steps != length:
                raise InputError(f"steps = {steps} but the inputs have {length} steps")
            steps = length
        if steps is None:
            raise InputError("give inputs, or the number of steps to run without inputs")
        if int(steps) != steps or steps < 0:
            raise InputError(f"steps must be a whole number >= 0, got {steps}")
        return arrays, int(steps)

    def run(self, inputs=None, steps: int | None = None, record=None, targets=None, reward=None,
            learn: bool = True, every: int | None = None, callback=None, phase=None, reward_baseline=None,
            trial_end: bool = True) -> dict[str, np.ndarray]:
        """Run ``steps`` steps (or as many as the inputs have), continuing from the current state.

        ``inputs``: an array (time x batch x neurons) for a model with one input population, or a
        dict by input population name; missing inputs are 0. ``targets``: the same for the
        populations whose rules read ``target``. ``reward``: per step and batch element (T x B),
        per batch element (B,), or one number; ``reward_baseline`` the same, for rules that read it
        (the reward prediction error is ``reward - reward_baseline``). ``learn=False`` runs without
        plasticity; ``learn`` may also be one boolean per step (``steps``,): the rules' traces then
        integrate on every step, the weights of rules on step change only on the steps marked, and
        the error of a population (``carry = error``) is 0 on the other steps, as where no target
        is given (how ``eigraph run`` trains where the task's target counts). ``trial_end=False``: the call does not end the trial, so rules ``on trial`` only
        integrate their traces (a later call with ``trial_end=True`` applies their update).
        ``record``: names such as ``"E.r"``, ``"E.x"``, ``"H1.E.apical"`` (time x batch x neurons)
        and ``"E->E.w"`` (weights, post x pre, taken every ``every`` steps and at the end); by
        default every population's rate. ``callback(sim)`` is called every ``every`` steps and may
        read or write ``sim.weights``. One call is one trial for ``on trial`` rules.

        ``phase``: in a model with phases, the phase these steps run in (its name or index; by
        default the free phase, the first). A phase nudges or clamps its populations toward
        ``targets``, couples its compartments, and runs the rules that learn in it; at the end of
        the call the values rules read as ``X@PHASE`` are kept (the next call in that phase
        replaces them). A new trial is :meth:`reset_state`; the phases then run in their order.

        A run whose state or weights become NaN or infinite stops with :class:`SimulationError`;
        the state is then the one before the failing step.
        """
        arrays, steps = self._inputs(inputs, steps)
        program = self.program
        self.phase = self._phase(phase)
        target_arrays = self._targets(targets, steps)
        current = program.phases[self.phase] if program.phases else None
        if current is not None:
            missing = [name for name in current.nudge + current.clamp if name not in target_arrays]
            if missing:
                how = "nudges" if missing[0] in current.nudge else "clamps"
                raise InputError(f"phase '{current.name}' {how} '{missing[0]}' toward its target, but no targets "
                                 f"were given for it: pass run(..., targets={{'{missing[0]}': ...}}, "
                                 f"phase='{current.name}')")
        reward_array = self._reward(reward, steps)
        gate = self._gate(learn, steps)
        learn = bool(learn) if gate is None else True
        baseline_array = self._reward(reward_baseline, steps, "reward_baseline")
        if record is None:
            record = [f"{p}.r" for p in program.populations]
        elif isinstance(record, str):
            record = [record]
        weight_records = [name[:-2] for name in record if name.endswith(".w") and name[:-2] in program.projections]
        record = [name for name in record if name[:-2] not in weight_records or not name.endswith(".w")]
        for name in record:
            self.read(name)  # raises a clear KeyError for unknown names
            if name.endswith((".fprime", ".err")) and self.backend.name != "numpy":
                raise InputError(f"{name} cannot be recorded over a run on the {self.backend.name} backend (its kernel "
                                 f"records rates, states and compartments only): read it after a run with "
                                 f"sim.read({name!r}), or record it with backend='numpy'")
        if every is not None and (int(every) != every or every < 1):
            raise InputError(f"every must be a whole number of steps >= 1, got {every}")
        dtype = program.dtype
        shapes = {name: (steps, self.read(name).shape[0], self.batch) for name in record}
        need = sum(math.prod(shape) for shape in shapes.values()) * np.dtype(dtype).itemsize
        free = available_memory()
        if free is not None and need > free:
            raise InputError(f"recording {', '.join(record)} over {steps} steps needs about {human(need)}, but only "
                             f"{human(free)} of memory is available: run fewer steps at a time, or record less")
        out = {name: np.empty(shape, dtype=dtype) for name, shape in shapes.items()}
        weights_out: dict[str, list[np.ndarray]] = {name: [] for name in weight_records}
        noisy = [p for p in program.populations.values() if p.noise and p.role != "input"]
        per_step = sum(p.size for p in noisy) * self.batch * np.dtype(dtype).itemsize + self._draw_bytes(learn)
        chunk = max(1, min(steps, NOISE_CHUNK_BYTES // per_step)) if per_step else max(steps, 1)
        if every:
            chunk = min(chunk, int(every))
        done = 0
        while done < steps:
            length = min(chunk, steps - done)
            if every:
                length = min(length, int(every) - (done % int(every)))
            inputs_chunk = {}
            for p in program.populations.values():
                if p.role == "input":
                    if p.name in arrays:
                        block = arrays[p.name][done:done + length]
                        inputs_chunk[p.name] = np.ascontiguousarray(block.transpose(0, 2, 1), dtype=dtype)
                    else:
                        inputs_chunk[p.name] = np.zeros((length, p.size, self.batch), dtype=dtype)
            noise = self._noise(noisy, length)
            noise.update(self._draws(length, learn))  # "rule:PROJECTION": the rules' draws
            records = {name: array[done:done + length] for name, array in out.items()}
            targets_chunk = {name: np.ascontiguousarray(array[done:done + length].transpose(0, 2, 1), dtype=dtype)
                             for name, array in target_arrays.items()}
            reward_chunk = None if reward_array is None else np.ascontiguousarray(reward_array[done:done + length])
            baseline_chunk = None if baseline_array is None else \
                np.ascontiguousarray(baseline_array[done:done + length])
            start = self.n
            final = done + length == steps and bool(trial_end)
            saved = self._snapshot() if learn and program.learners else None
            gate_chunk = None if gate is None else gate[done:done + length]
            failure = self.backend.run(self, length, inputs_chunk, noise, records, targets_chunk, reward_chunk,
                                       learn, final, baseline=baseline_chunk, gate=gate_chunk)
            if failure is not None:
                step, what = failure
                if saved is not None:
                    # weights and traces are updated in place: go back to the start of this call and
                    # replay the steps that succeeded, so the state is the one before the failing step
                    self._restore(saved)
                    replay = step - start
                    if replay:
                        cut = {name: array[:replay] for name, array in inputs_chunk.items()}
                        self.backend.run(self, replay, cut, {k: v[:replay] for k, v in noise.items()},
                                         {k: v[:replay] for k, v in records.items()},
                                         {k: v[:replay] for k, v in targets_chunk.items()},
                                         None if reward_chunk is None else reward_chunk[:replay], learn, False,
                                         baseline=None if baseline_chunk is None else baseline_chunk[:replay],
                                         gate=None if gate_chunk is None else gate_chunk[:replay])
                finished = done + step - start  # steps of this call that completed
                kept = {name: np.ascontiguousarray(array[:finished].transpose(0, 2, 1)) for name, array in out.items()}
                self.n = step
                when = f"at step {step}" + (f" (t = {step * program.dt * 1e3:g} ms)" if program.dt else "")
                if isinstance(what, tuple):
                    projection = what[1]
                    rule = program.learner(projection).rule.name
                    what = "weights" if projection in program.projections else "learned bias"
                    raise SimulationError(f"rule '{rule}' drove the {what} of {projection} to NaN or infinity "
                                          f"{when}; lower its learning rate, or add bounds", step=step,
                                          population=None, records=kept)
                raise SimulationError(f"the state of population '{what}' became NaN or infinite {when}",
                                      step=step, population=what, records=kept)
            assert self.n == start + length
            done += length
            if every and (done % int(every) == 0 or done == steps):
                for name in weight_records:
                    weights_out[name].append(self.weights[name])
                if callback is not None and done % int(every) == 0:
                    callback(self)
        for name in weight_records:
            if not weights_out[name] or not every:
                weights_out[name] = [self.weights[name]] if not weights_out[name] else weights_out[name]
        self.keep_phase_values()
        result = {name: np.ascontiguousarray(array.transpose(0, 2, 1)) for name, array in out.items()}
        result.update({f"{name}.w": np.stack(values) for name, values in weights_out.items()})
        return result

    def _phase(self, phase) -> int:
        phases = self.program.phases
        if phase is None:
            return 0
        names = [p.name for p in phases]
        if not phases:
            raise InputError(f"phase = {phase!r}, but '{self.program.name}' declares no phases")
        if isinstance(phase, str):
            if phase not in names:
                import difflib

                close = difflib.get_close_matches(phase, names, n=1)
                raise InputError(f"no phase named '{phase}'" + (f"; did you mean '{close[0]}'?" if close else "")
                                 + f" (phases: {', '.join(names)})")
            return names.index(phase)
        if isinstance(phase, (int, np.integer)) and not isinstance(phase, bool) and 0 <= phase < len(phases):
            return int(phase)
        raise InputError(f"phase must be a phase name ({', '.join(names)}) or an index 0-{len(phases) - 1}, "
                         f"got {phase!r}")

    def keep_phase_values(self) -> None:
        """Keep the values of this phase that rules read as ``X@PHASE`` (done at the end of every run call)."""
        for (population, what, phase), array in self.phase_values.items():
            if phase == self.phase:
                array[...] = self.read(f"{population}.{what}")  # r, x or a compartment

    def _snapshot(self) -> dict:
        return {
            "n": self.n,
            "w": {name: (q.weights.data if q.weights.is_sparse else q.weights.dense).copy()
                  for name, q in self.program.projections.items() if q.rule is not None or q.tie is not None},
            "b": {name: b.weights.dense.copy() for name, b in self.program.biases.items()},
            "traces": {k: v.copy() for k, v in self.traces.items()},
            "x": {k: v.copy() for k, v in self.x.items()},
            "r": {k: v.copy() for k, v in self.r.items()},
            "c": {k: v.copy() for k, v in self.compartment.items()},
            "e": {k: v.copy() for k, v in self.error.items()},
        }

    def _restore(self, saved: dict) -> None:
        self.n = saved["n"]
        for name, values in saved["w"].items():
            w = self.program.projections[name].weights
            (w.data if w.is_sparse else w.dense)[...] = values
        for name, values in saved["b"].items():
            self.program.biases[name].weights.dense[...] = values
        for group, target in (("traces", self.traces), ("x", self.x), ("r", self.r), ("c", self.compartment),
                              ("e", self.error)):
            for key, values in saved[group].items():
                target[key][...] = values

    def _noise(self, noisy, length: int) -> dict[str, np.ndarray]:
        """Standard normal noise for ``length`` steps, drawn step by step for all noisy populations
        together, so the numbers a step gets do not depend on how a run is cut into calls."""
        if not noisy:
            return {}
        total = sum(p.size for p in noisy)
        block = self.noise_rng.standard_normal((length, total, self.batch), dtype=self.program.dtype)
        out, offset = {}, 0
        for p in noisy:
            out[p.name] = np.ascontiguousarray(block[:, offset:offset + p.size])
            offset += p.size
        return out

    def _targets(self, targets, steps: int) -> dict[str, np.ndarray]:
        program = self.program
        readers = [q.target for q in program.learners
                   if any(isinstance(n, ex.Name) and n.dotted == "target"
                          for s in q.rule.statements for n in ex.walk(s.value))]
        readers += [name for phase in program.phases for name in phase.nudge + phase.clamp]
        readers += program.error_sources  # carry = error: their error needs their target
        if targets is None:
            return {}
        if not isinstance(targets, Mapping):
            candidates = sorted(set(readers))
            if len(candidates) != 1:
                raise InputError("pass targets as a dict {population: array}: "
                                 f"{len(candidates)} populations have rules that read 'target'")
            targets = {candidates[0]: targets}
        out = {}
        for name, value in targets.items():
            if name not in program.populations or program.populations[name].role == "input":
                raise InputError(f"targets for '{name}': not a hidden or readout population")
            size = program.populations[name].size
            array = np.asarray(value)
            if array.shape != (steps, self.batch, size):
                raise InputError(f"targets for '{name}' must have shape (time, batch, neurons) = "
                                 f"({steps}, {self.batch}, {size}), got {array.shape}")
            if not np.isfinite(array).all():
                raise InputError(f"targets for '{name}' contain NaN or infinite values")
            out[name] = array
        return out

    @staticmethod
    def _gate(learn, steps: int) -> np.ndarray | None:
        """``learn`` as one flag per step (uint8), or None for True / False."""
        if isinstance(learn, (bool, np.bool_)) or learn is None or np.ndim(learn) == 0:
            return None
        array = np.asarray(learn)
        if array.shape != (steps,) or array.dtype.kind not in "bui" or not np.isin(array, (0, 1)).all():
            raise InputError(f"learn must be True, False or one boolean per step ({steps},); got an array of shape "
                             f"{array.shape} and type {array.dtype}")
        return np.ascontiguousarray(array, dtype=np.uint8)

    def _reward(self, reward, steps: int, what: str = "reward"):
        if reward is None:
            return None
        array = np.asarray(reward, dtype=self.program.dtype)
        if array.ndim == 0:
            array = np.full((steps, self.batch), array, dtype=self.program.dtype)
        elif array.shape == (self.batch,):
            array = np.broadcast_to(array, (steps, self.batch))
        if array.shape != (steps, self.batch):
            raise InputError(f"{what} must be one number, one per batch element ({self.batch},), or per step "
                             f"({steps}, {self.batch}); got {np.asarray(reward).shape}")
        if not np.isfinite(array).all():
            raise InputError(f"{what} contains NaN or infinite values")
        return array

    # checkpoints -------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the whole state (weights, states, step, noise stream, the rules' draw streams) to
        ``path`` (.npz), atomically."""
        import io

        from eigraph.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **self.state_arrays())
        atomic_write_bytes(path, buffer.getvalue())

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`save` writes (weights, states, traces and a ``meta`` record): a file
        holding these and other arrays besides can be read back with :meth:`load`."""
        arrays: dict[str, np.ndarray] = {}
        for name, q in self.program.projections.items():
            w = q.weights
            if w.is_sparse:
                arrays[f"w/{name}/indptr"], arrays[f"w/{name}/indices"], arrays[f"w/{name}/data"] = (
                    w.indptr, w.indices, w.data)
            else:
                arrays[f"w/{name}/dense"] = w.dense
        for name, b in self.program.biases.items():
            arrays[f"b/{name}"] = b.weights.dense[:, 0]
        for name, value in self.x.items():
            arrays[f"x/{name}"] = value
        for name, value in self.r.items():
            arrays[f"r/{name}"] = value
        for name, value in self.compartment.items():
            arrays[f"c/{name}"] = value
        for name, value in self.error.items():
            arrays[f"e/{name}"] = value
        for name, value in self.traces.items():
            arrays[f"t/{name}"] = value
        for k, key in enumerate(self.program.phase_values):
            arrays[f"pv/{k}"] = self.phase_values[key]
        meta = {"format": FORMAT_VERSION, "hash": self.program.content_hash, "n": self.n, "batch": self.batch,
                "seed": self.seed, "noise_state": self.noise_rng.bit_generator.state, "phase": self.phase,
                "draw_states": {name: rng.bit_generator.state for name, rng in self.draw_rngs.items()}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        return arrays

    def load(self, path) -> None:
        """Restore a state written by :meth:`save` for the same model and batch size."""
        from eigraph.check.resources import FileProblem, regular_file

        try:
            regular_file(path)  # a FIFO or a device is not opened
        except FileProblem as exc:
            raise InputError(f"cannot read the state '{path}': {exc.message}") from None
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data:
                raise InputError(f"'{path}' is not an eigraph simulator state")
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("hash") != self.program.content_hash:
                raise InputError(f"'{path}' was saved from a different model (or eigraph version)")
            if meta["batch"] != self.batch:
                raise InputError(f"'{path}' has batch {meta['batch']}, this simulator {self.batch}")
            for name, q in self.program.projections.items():
                w = q.weights
                if w.is_sparse:
                    if not np.array_equal(data[f"w/{name}/indices"], w.indices):
                        raise InputError(f"'{path}': the synapses of {name} differ from this model's")
                    w.data[:] = data[f"w/{name}/data"]
                else:
                    w.dense[...] = data[f"w/{name}/dense"]
            for name, b in self.program.biases.items():
                b.weights.dense[:, 0] = data[f"b/{name}"]
            for name in self.x:
                self.x[name][...] = data[f"x/{name}"]
            for name in self.r:
                self.r[name][...] = data[f"r/{name}"]
            for name in self.compartment:
                self.compartment[name][...] = data[f"c/{name}"]
            for name in self.error:
                if f"e/{name}" in data:
                    self.error[name][...] = data[f"e/{name}"]
            for name in self.traces:
                self.traces[name][...] = data[f"t/{name}"]
            for k, key in enumerate(self.program.phase_values):
                if f"pv/{k}" in data:
                    self.phase_values[key][...] = data[f"pv/{k}"]
        self.phase = int(meta.get("phase", 0))
        self.n = meta["n"]
        self.noise_rng.bit_generator.state = meta["noise_state"]
        for name, state in meta.get("draw_states", {}).items():
            if name in self.draw_rngs:
                self.draw_rngs[name].bit_generator.state = state


def _copy_weights(w: Weights) -> Weights:
    return Weights(w.shape, *(None if a is None else a.copy() for a in (w.dense, w.indptr, w.indices, w.data, w.mask)))


def _assign_weights(target: Weights, source: Weights) -> None:
    if target.is_sparse:
        target.data[:] = source.data
    else:
        target.dense[...] = source.dense


def refresh_ties(program: Program, name: str) -> None:
    """The projections tied to ``name`` take scale x its weights' transpose again."""
    for tied in program.ties_of(name):
        of = program.projections[name].weights
        tied.weights.dense[...] = tied.tie[1] * of.dense.T


def make_backend(program: Program, name: str, batch: int):
    if name == "numpy":
        from eigraph.backends.numpy_ref import NumpyBackend

        return NumpyBackend(program)
    if name == "numba":
        from eigraph.backends.numba_gen import NumbaBackend

        return NumbaBackend(program, batch)
    if name in ("cupy", "gpu"):
        raise InputError("the CuPy backend is not built yet: use backend='numba' or 'numpy'")
    raise InputError(f"unknown backend '{name}': choose numpy or numba")
