"""Connectivity and initial weights of projections, seeded and backend-independent.

Sparse forms are drawn row by row, so memory grows with the number of synapses, not with
N_post x N_pre. Each projection draws from its own stream, derived from the network seed and
the projection's name, so adding a projection does not change the weights of the others.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

DENSE_MASK_DENSITY = 0.5  # a mask denser than this is stored dense (BLAS), else as CSR
SMALL_DENSE = 16384  # sparse projections with at most this many post x pre entries are stored dense
# with a mask: at N=64 one BLAS call beats the CSR loop (tools/bench.py), and values are the same


@dataclass
class Weights:
    """Magnitudes of one projection: dense (post x pre) or CSR (``indptr``, ``indices``, ``data``)."""

    shape: tuple[int, int]
    dense: np.ndarray | None = None
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None
    data: np.ndarray | None = None
    mask: np.ndarray | None = None  # dense storage with absent synapses (mask files, dense w/o autapses)

    @property
    def is_sparse(self) -> bool:
        return self.dense is None

    @property
    def nnz(self) -> int:
        if self.is_sparse:
            return int(self.indptr[-1])
        return int(self.mask.sum()) if self.mask is not None else int(self.dense.size)

    def to_dense(self) -> np.ndarray:
        if not self.is_sparse:
            return self.dense.copy()
        out = np.zeros(self.shape, dtype=self.data.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out

    def values(self) -> np.ndarray:
        """The stored synapse values (a view for CSR, the present entries for dense)."""
        if self.is_sparse:
            return self.data
        return self.dense[self.mask] if self.mask is not None else self.dense.ravel()

    def scale(self, factor: float) -> None:
        if self.is_sparse:
            self.data *= factor
        else:
            self.dense *= factor


def projection_rng(seed: int, name: str, purpose: str = "weights") -> np.random.Generator:
    key = zlib.crc32(f"{purpose}:{name}".encode())
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=(key,))))


def draw(dist: dict, size, rng: np.random.Generator) -> np.ndarray:
    """Samples of an init distribution ``{"dist": ..., "args": {...}}`` as float64."""
    name, a = dist["dist"], dist["args"]
    if name == "constant":
        return np.full(size, a["c"], dtype=np.float64)
    if name == "uniform":
        return rng.uniform(a["a"], a["b"], size)
    if name == "normal":
        return rng.normal(a["mu"], a["sigma"], size)
    if name == "halfnormal":
        return np.abs(rng.normal(0.0, a["sigma"], size))
    if name == "lognormal":
        return rng.lognormal(a["mu"], a["sigma"], size)
    if name == "gamma":
        return rng.gamma(a["k"], a["theta"], size)
    raise ValueError(f"unknown distribution {name}")


def _choose_rows(n_post: int, n_pre: int, counts: np.ndarray, no_self: bool, rng) -> tuple[np.ndarray, np.ndarray]:
    """CSR structure with ``counts[i]`` distinct sources per row, sorted; ``no_self`` skips column i."""
    indptr = np.zeros(n_post + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=np.int32)
    pool = n_pre - 1 if no_self else n_pre
    for i in range(n_post):
        k = int(counts[i])
        if k == 0:
            continue
        if k * 4 < pool:  # few: sample with rejection of duplicates, O(k)
            chosen = np.unique(rng.integers(0, pool, size=k + k // 2 + 8))
            while chosen.size < k:
                chosen = np.unique(np.concatenate([chosen, rng.integers(0, pool, size=k)]))
            chosen = rng.permutation(chosen)[:k]
        else:
            chosen = rng.choice(pool, size=k, replace=False)
        chosen = np.sort(chosen)
        if no_self:
            chosen = chosen + (chosen >= i)
        indices[indptr[i]:indptr[i + 1]] = chosen
    return indptr, indices


def build_weights(edge: dict, n_pre: int, n_post: int, self_projection: bool, seed: int, dtype) -> Weights:
    """Connectivity and initial magnitudes of one projection (graph edge attributes)."""
    rng = projection_rng(seed, edge["name"])
    conn = edge["connectivity"]
    kind = conn["kind"]
    no_self = self_projection and not edge["autapses"]
    shape = (n_post, n_pre)
    if kind == "dense":
        values = draw(edge["init"], shape, rng)
        mask = None
        if no_self:
            mask = ~np.eye(n_post, n_pre, dtype=bool)
            values[~mask] = 0.0
        return Weights(shape, dense=values.astype(dtype), mask=mask)
    if kind in ("sparse", "fixed_in"):
        pool = n_pre - 1 if no_self else n_pre
        if kind == "sparse":
            counts = rng.binomial(pool, conn["p"], size=n_post)
        else:
            counts = np.full(n_post, conn["k"], dtype=np.int64)
        indptr, indices = _choose_rows(n_post, n_pre, counts, no_self, rng)
        data = draw(edge["init"], indices.size, rng).astype(dtype)
        return _small_as_dense(Weights(shape, indptr=indptr, indices=indices, data=data))
    if kind == "one_to_one":
        indptr = np.arange(n_post + 1, dtype=np.int64)
        indices = np.arange(n_post, dtype=np.int32)
        data = draw(edge["init"], n_post, rng).astype(dtype)
        return _small_as_dense(Weights(shape, indptr=indptr, indices=indices, data=data))
    if kind in ("mask", "weights"):
        array = load_matrix(conn["file"])
        if kind == "weights":
            values = array.astype(np.float64)
            present = values != 0
        else:
            present = array != 0
            values = np.where(present, draw(edge["init"], shape, rng), 0.0)
        if present.mean() > DENSE_MASK_DENSITY if present.size else True:
            return Weights(shape, dense=values.astype(dtype), mask=None if present.all() else present)
        rows, cols = np.nonzero(present)
        indptr = np.zeros(n_post + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_post), out=indptr[1:])
        return Weights(shape, indptr=indptr, indices=cols.astype(np.int32), data=values[rows, cols].astype(dtype))
    raise ValueError(f"unknown connectivity {kind}")


def _small_as_dense(w: Weights) -> Weights:
    """A small sparse projection as a dense matrix with a mask (same synapses, same values)."""
    if w.shape[0] * w.shape[1] > SMALL_DENSE:
        return w
    dense = w.to_dense()
    mask = np.zeros(w.shape, dtype=bool)
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    mask[rows, w.indices] = True
    return Weights(w.shape, dense=dense, mask=mask)


def load_matrix(path: str) -> np.ndarray:
    from eigraph.check.resources import FileProblem, load_array
    from eigraph.compile.lower import CompileError

    try:
        return load_array(path)  # a regular file whose header is checked before its data is read
    except FileProblem as exc:  # the file changed since it was checked
        raise CompileError(f"cannot read '{path}': {exc.message}") from None
