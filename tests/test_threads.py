"""eigraph/runtime/threads.py: the process-wide BLAS limit when blocks overlap."""

from __future__ import annotations

import pytest

from eigraph.runtime import threads

pytest.importorskip("threadpoolctl")


def blas_counts() -> list[int]:
    return [lib.num_threads for lib in threads._libraries()]


def test_overlapping_blocks_restore_the_original_limits():
    before = blas_counts()
    a, b = threads.blas_threads(1), threads.blas_threads(1)
    a.__enter__()
    b.__enter__()  # a second simulator, in another thread, enters while the first is inside
    assert all(n == 1 for n in blas_counts())
    a.__exit__(None, None, None)  # the first leaves: the second still runs with one thread
    assert all(n == 1 for n in blas_counts())
    b.__exit__(None, None, None)
    assert blas_counts() == before


def test_a_single_block_restores_on_error():
    before = blas_counts()
    with pytest.raises(RuntimeError), threads.blas_threads(1):
        raise RuntimeError("inside")
    assert blas_counts() == before
