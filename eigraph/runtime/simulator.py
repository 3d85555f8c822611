"""The Simulator: state, inputs, noise, records, weights and checkpoints around a backend.

Arrays are stored neuron-major with the batch last, ``(N, B)``, so a dense projection is one
BLAS product ``W @ r`` and a sparse row's update is contiguous over the batch. What the user
sees is time x batch x neurons.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from eigraph.compile.connectivity import Weights, projection_rng
from eigraph.compile.program import Program
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
        w = plan.weights
        array = np.asarray(value, dtype=np.float64)
        if array.shape != w.shape:
            raise InputError(f"weights of {name} must have shape (post x pre) = {w.shape}, got {array.shape}")
        if not np.isfinite(array).all():
            raise InputError(f"weights of {name} contain NaN or infinite values")
        if plan.sign != 0 and (array < 0).any():
            raise InputError(f"weights of {name} are magnitudes under Dale's law (the sign comes from "
                             f"'{plan.source}'), but some are negative")
        if w.is_sparse:
            present = np.zeros(w.shape, dtype=bool)
            rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
            present[rows, w.indices] = True
            if (array[~present] != 0).any():
                raise InputError(f"{name} is sparse: the new weights must be 0 where it has no synapse")
            w.data[:] = array[rows, w.indices]
        else:
            if w.mask is not None and (array[~w.mask] != 0).any():
                raise InputError(f"{name} has no synapse at some places (autapses or a mask): the new weights "
                                 "must be 0 there")
            w.dense[...] = array

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
        self.weights = WeightsView(self)
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
        self.x: dict[str, np.ndarray] = {}
        self.r: dict[str, np.ndarray] = {}
        self.compartment: dict[str, np.ndarray] = {}
        for p in program.populations.values():
            self.r[p.name] = np.zeros((p.history, p.size, batch), dtype=dtype)
            if p.role != "input":
                self.x[p.name] = np.full((2, p.size, batch), p.x0, dtype=dtype)
                rest = activation(p.activation, self.x[p.name][0]).astype(dtype)
                self.r[p.name][...] = rest  # every earlier step was at rest
            for c in p.compartments:
                self.compartment[f"{p.name}.{c}"] = np.zeros((p.size, batch), dtype=dtype)
        self.noise_rng = projection_rng(self.seed, program.name, "noise")
        if weights:
            for name, initial in self._initial_weights.items():
                _assign_weights(program.projections[name].weights, initial)

    @property
    def t(self) -> float | None:
        """Simulated time in seconds (None when the model has no dt)."""
        return self.n * self.program.dt if self.program.dt else None

    def read(self, name: str, after: int | None = None) -> np.ndarray:
        """The current value of ``POP.r``, ``POP.x`` or ``POP.COMPARTMENT`` as (N, B) (a view)."""
        n = self.n if after is None else after
        population, _, what = name.rpartition(".")
        p = self.program.populations.get(population)
        if p is None:
            raise KeyError(f"no population '{population}' (in '{name}')")
        if what == "r":
            return self.r[population][n % p.history]
        if what == "x" and p.role != "input":
            return self.x[population][n % 2]
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

    def run(self, inputs=None, steps: int | None = None, record=None) -> dict[str, np.ndarray]:
        """Run ``steps`` steps (or as many as the inputs have), continuing from the current state.

        ``inputs``: an array (time x batch x neurons) for a model with one input population, or a
        dict by input population name; missing inputs are 0. ``record``: names such as ``"E.r"``,
        ``"E.x"``, ``"H1.E.apical"``; by default every population's rate. Returns the recorded
        arrays by name, time x batch x neurons. A run whose state becomes NaN or infinite stops
        with :class:`SimulationError`; the state is then the one before the failing step.
        """
        arrays, steps = self._inputs(inputs, steps)
        program = self.program
        if record is None:
            record = [f"{p}.r" for p in program.populations]
        elif isinstance(record, str):
            record = [record]
        for name in record:
            self.read(name)  # raises a clear KeyError for unknown names
        dtype = program.dtype
        out = {name: np.empty((steps, self.read(name).shape[0], self.batch), dtype=dtype) for name in record}
        noisy = [p for p in program.populations.values() if p.noise and p.role != "input"]
        per_step = sum(p.size for p in noisy) * self.batch * np.dtype(dtype).itemsize
        chunk = max(1, min(steps, NOISE_CHUNK_BYTES // per_step)) if per_step else max(steps, 1)
        done = 0
        while done < steps:
            length = min(chunk, steps - done)
            inputs_chunk = {}
            for p in program.populations.values():
                if p.role == "input":
                    if p.name in arrays:
                        block = arrays[p.name][done:done + length]
                        inputs_chunk[p.name] = np.ascontiguousarray(block.transpose(0, 2, 1), dtype=dtype)
                    else:
                        inputs_chunk[p.name] = np.zeros((length, p.size, self.batch), dtype=dtype)
            noise = {p.name: self.noise_rng.standard_normal((length, p.size, self.batch), dtype=dtype)
                     for p in noisy}
            records = {name: array[done:done + length] for name, array in out.items()}
            start = self.n
            failure = self.backend.run(self, length, inputs_chunk, noise, records)
            if failure is not None:
                step, population = failure
                finished = done + step - start  # steps of this call that completed
                kept = {name: np.ascontiguousarray(array[:finished].transpose(0, 2, 1)) for name, array in out.items()}
                self.n = step
                raise SimulationError(
                    f"the state of population '{population}' became NaN or infinite at step {step} "
                    f"(t = {step * program.dt * 1e3:g} ms)" if program.dt else
                    f"the state of population '{population}' became NaN or infinite at step {step}",
                    step=step, population=population, records=kept)
            assert self.n == start + length
            done += length
        return {name: np.ascontiguousarray(array.transpose(0, 2, 1)) for name, array in out.items()}

    # checkpoints -------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the whole state (weights, states, step, noise stream) to ``path`` (.npz), atomically."""
        import io

        from eigraph.fileio import atomic_write_bytes

        arrays: dict[str, np.ndarray] = {}
        for name, q in self.program.projections.items():
            w = q.weights
            if w.is_sparse:
                arrays[f"w/{name}/indptr"], arrays[f"w/{name}/indices"], arrays[f"w/{name}/data"] = (
                    w.indptr, w.indices, w.data)
            else:
                arrays[f"w/{name}/dense"] = w.dense
        for name, value in self.x.items():
            arrays[f"x/{name}"] = value
        for name, value in self.r.items():
            arrays[f"r/{name}"] = value
        for name, value in self.compartment.items():
            arrays[f"c/{name}"] = value
        meta = {"format": FORMAT_VERSION, "hash": self.program.content_hash, "n": self.n, "batch": self.batch,
                "seed": self.seed, "noise_state": self.noise_rng.bit_generator.state}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    def load(self, path) -> None:
        """Restore a state written by :meth:`save` for the same model and batch size."""
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
            for name in self.x:
                self.x[name][...] = data[f"x/{name}"]
            for name in self.r:
                self.r[name][...] = data[f"r/{name}"]
            for name in self.compartment:
                self.compartment[name][...] = data[f"c/{name}"]
        self.n = meta["n"]
        self.noise_rng.bit_generator.state = meta["noise_state"]


def _copy_weights(w: Weights) -> Weights:
    return Weights(w.shape, *(None if a is None else a.copy() for a in (w.dense, w.indptr, w.indices, w.data, w.mask)))


def _assign_weights(target: Weights, source: Weights) -> None:
    if target.is_sparse:
        target.data[:] = source.data
    else:
        target.dense[...] = source.dense


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
