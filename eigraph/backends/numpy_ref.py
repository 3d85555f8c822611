"""The NumPy reference: the definition of what a Program computes, written for clarity.

It interprets the Program's operations one by one, every step. The other backends are tested
against it. See :mod:`eigraph.compile.program` for the time convention.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from eigraph.compile.program import Program


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


class NumpyBackend:
    name = "numpy"

    def __init__(self, program: Program):
        self.program = program

    def source(self) -> str | None:
        return None

    def run(self, sim, steps: int, inputs: dict, noise: dict, records: dict) -> tuple[int, str] | None:
        """Advance ``sim`` by ``steps``; returns (step, population) of the first non-finite state, or None."""
        program = self.program
        for t in range(steps):
            n = sim.n
            now, nxt = n % 2, (n + 1) % 2
            summed: dict[tuple[str, str | None], np.ndarray] = {}
            for op in program.ops:
                if op.kind == "input":
                    p = program.populations[op.name]
                    sim.r[p.name][(n + 1) % p.history] = inputs[p.name][t]
                elif op.kind == "deliver":
                    q = program.projections[op.name]
                    source = program.populations[q.source]
                    rates = sim.r[q.source][(n + 1 - q.delay) % source.history]
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
                    x = sim.x[p.name][now]
                    bias = p.bias[:, None] if isinstance(p.bias, np.ndarray) else p.bias
                    new = x + p.alpha * (-x + soma + bias)
                    if p.noise:
                        new = new + np.sqrt(2 * p.alpha) * p.noise * noise[p.name][t]
                    sim.x[p.name][nxt] = new
                    rate = activation(p.activation, new)
                    if not (np.isfinite(new).all() and np.isfinite(rate).all()):
                        return n, p.name
                    sim.r[p.name][(n + 1) % p.history] = rate
                elif op.kind == "record":
                    for key, array in records.items():
                        array[t] = sim.read(key, after=n + 1)
            sim.n += 1
        return None
