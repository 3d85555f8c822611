"""Thread pools of the BLAS libraries, kept out of the way of eigraph's own threads.

OpenBLAS threads keep spinning for a long while after a product. Next to a Numba ``prange``
loop on the same cores they are 20x slower than no threads at all (tools/bench.py, N=1024,
sparse, 2 cores: 1.6 s instead of 85 ms a trial), and next to the small products of a rate
network they only spin. threadpoolctl (a dependency) limits them for the length of a block.
"""

from __future__ import annotations

import contextlib

_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (Numba's np.dot calls this BLAS: load it first)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # the libraries loaded now, found once (~ms)
    return _controller


@contextlib.contextmanager
def blas_threads(count: int):
    """Limit the BLAS libraries to ``count`` threads inside the block."""
    try:
        controller = _get_controller()
    except ImportError:  # an install without threadpoolctl: run with the libraries' defaults
        yield
        return
    with controller.limit(limits=count, user_api="blas"):
        yield
