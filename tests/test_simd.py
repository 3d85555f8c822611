"""The hand-written sparse-row loop (eigraph/backends/simd.py) against NumPy, alone and inside
generated kernels: every supported batch, index type, sign, accumulate-or-overwrite, empty rows,
strided ring-buffer slots, the parallel kernel, and the plain loop where it does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from numba import njit
from numba.core.errors import TypingError

from eigraph.backends import numba_gen, simd

BATCHES = [8, 16, 24, 64, 72, 136]


def random_csr(rows: int, cols: int, density: float, seed: int) -> scipy.sparse.csr_matrix:
    m = scipy.sparse.random(rows, cols, density=density, format="csr", dtype=np.float32, random_state=seed)
    m.data[:] = np.random.default_rng(seed).uniform(0.1, 1.0, m.nnz)
    m.sort_indices()
    return m


def rows_kernel(batch: int):
    """The rows of a whole batch, in the pieces the generated kernels use."""
    pieces = simd.pieces(batch)
    full = getattr(simd, f"csr_row_{pieces[0][1]}")  # the first width (64, or the whole batch)
    last = getattr(simd, f"csr_row_{pieces[-1][1]}")  # the remainder's width (or the same)
    firsts = np.array([first for first, _ in pieces], dtype=np.int64)

    @njit
    def kernel(out, src, indptr, indices, data, factor, add):
        for i in range(out.shape[0]):
            for p in range(firsts.shape[0] - 1):
                full(out[i], src, indices, data, indptr[i], indptr[i + 1], factor, add, firsts[p])
            last(out[i], src, indices, data, indptr[i], indptr[i + 1], factor, add, firsts[-1])

    return kernel


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64, np.uint32])
def test_csr_row_matches_numpy(batch, index_dtype):
    m = random_csr(37, 53, 0.2, seed=batch)
    m.indptr[6:8] = m.indptr[5]  # rows 5 and 6 empty (their synapses now belong to row 7)
    m = scipy.sparse.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape)
    assert m.indptr[6] == m.indptr[5] == m.indptr[7] and m.indptr[8] > m.indptr[7]
    rng = np.random.default_rng(1)
    ring = rng.normal(size=(3, 53, batch)).astype(np.float32)
    src = ring[1]  # a slot of a ring buffer: a view, rows contiguous
    kernel = rows_kernel(batch)
    indptr, indices = m.indptr.astype(np.int64), m.indices.astype(index_dtype)
    out = rng.normal(size=(37, batch)).astype(np.float32)
    kernel(out, src, indptr, indices, m.data, np.float32(-0.5), 0)
    expected = -0.5 * (m @ src)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert np.all(out[5:7] == 0)  # empty rows are written (with 0), not left as they were
    before = out.copy()
    kernel(out, src, indptr, indices, m.data, np.float32(2.0), 1)
    np.testing.assert_allclose(out, before + 2.0 * (m @ src), rtol=1e-5, atol=1e-5)


def test_supported_batches_and_precision():
    assert [b for b in range(1, 80) if simd.supported(b, np.float32)] == list(range(8, 80, 8))
    assert not simd.supported(8, np.float64)
    assert simd.pieces(64) == [(0, 64)]
    assert simd.pieces(136) == [(0, 64), (64, 64), (128, 8)]


MODEL = """\
network simd {{ dt = 1 ms; seed = 21; precision = {precision} }}
celltype Pyr : excitatory {{ tau = 10 ms; activation = relu; compartments = [apical]; apical_gain = 0.5 }}
celltype Int : inhibitory {{ tau = 5 ms; activation = tanh }}
population inp : input(12)
population E   : Pyr(160)
population I   : Int(120)
inp -> E        : sparse(p = 0.3), init = uniform(0, 0.4)
E -> E          : sparse(p = 0.2), init = halfnormal(0.1)
I -> E          : fixed_in(k = 15), init = uniform(0, 0.2)
I -> E.apical   : sparse(p = 0.25), init = uniform(0, 0.3)
E -> I          : sparse(p = 0.15), init = uniform(0, 0.1), gain = 1.5
I -> I          : dense, init = uniform(0, 0.05)
"""


def compare(ei, precision: str, batch: int, steps: int = 25):
    model = ei.load(f"simd_{precision}.ei", MODEL.format(precision=precision))
    reference = model.compile(backend="numpy", batch=batch)
    sim = model.compile(backend="numba", batch=batch)
    assert all(sim.program.projections[n].weights.is_sparse for n in ("E->E", "I->E", "I->E.apical", "E->I"))
    inputs = ei.inputs(reference, steps, seed=batch)
    record = ["E.r", "E.apical", "I.r"]
    expected = reference.run(inputs, record=record)
    got = sim.run(inputs, record=record)
    tol = dict(rtol=1e-4, atol=1e-5) if precision == "float32" else dict(rtol=1e-9, atol=1e-12)
    for key in record:
        for t in range(steps):
            np.testing.assert_allclose(got[key][t], expected[key][t], err_msg=f"{key} at step {t}", **tol)
    return sim


# 8: one piece of the narrowest width; 80: a full piece of 64 and a remainder of 16 (all widths
# are checked one by one in test_csr_row_matches_numpy); each batch is a kernel compile of its own
@pytest.mark.parametrize("batch", [8, 80])
def test_kernels_with_the_simd_rows_match_the_reference(ei, batch):
    sim = compare(ei, "float32", batch)
    for first, width in simd.pieces(batch):
        assert f"F_w1, 0, {first})" in sim.backend.source() and f"csr_row_{width}(" in sim.backend.source()
    assert simd.SOURCE_HASH in sim.backend.source()  # a change to simd.py changes the kernel cache key


def test_non_contiguous_arrays_are_refused():
    m = random_csr(6, 10, 0.5, seed=2)
    kernel = rows_kernel(8)
    src = np.ones((10, 16), dtype=np.float32)[:, ::2]  # rows not contiguous
    out = np.zeros((6, 8), dtype=np.float32)
    with pytest.raises(TypingError):
        kernel(out, src, m.indptr.astype(np.int64), m.indices, m.data, np.float32(1), 0)


@pytest.mark.parametrize(("precision", "batch"), [("float32", 12), ("float64", 8)])
def test_plain_rows_where_simd_does_not_apply(ei, precision, batch):
    sim = compare(ei, precision, batch)
    assert "csr_row_" not in sim.backend.source()


def test_parallel_kernel_with_simd_rows(ei, monkeypatch):
    monkeypatch.setattr(numba_gen, "PARALLEL_MIN_ELEMENTS", 160 * 8)
    sim = compare(ei, "float32", 8)
    assert sim.backend.parallel and "prange" in sim.backend.source() and "csr_row_8(" in sim.backend.source()
