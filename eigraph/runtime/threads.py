"""Thread pools of the BLAS libraries, kept out of the way of eigraph's own threads.

OpenBLAS threads keep spinning for a long while after a product. Next to a Numba ``prange``
loop on the same cores they made a step 30x slower (tools/bench.py, N=1024, sparse, 2 cores:
1.6 s instead of 53 ms a trial), and next to the small products of a rate network they only
spin. threadpoolctl (a dependency) limits them for the length of a block.

The limit is process-wide, so overlapping blocks (simulators run from several Python threads;
kernels release the GIL) share it: the first block to enter sets it, the last one to leave
restores what the libraries had before.
"""

from __future__ import annotations

import contextlib
import threading

_controller = None
_lock = threading.Lock()
_active: dict[int, list] = {}  # count -> [blocks inside, [(library, its thread count before)]]


def _libraries() -> list:
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (Numba's np.dot calls this BLAS: load it first)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # the libraries loaded now, found once (~ms)
    return [c for c in _controller.lib_controllers if c.user_api == "blas"]


@contextlib.contextmanager
def blas_threads(count: int):
    """Limit the BLAS libraries to ``count`` threads inside the block (~4 us to enter and leave)."""
    try:
        libraries = _libraries()
    except ImportError:  # an install without threadpoolctl: run with the libraries' defaults
        yield
        return
    with _lock:
        entry = _active.get(count)
        if entry is None:
            saved = [(lib, lib.num_threads) for lib in libraries]
            for lib, _ in saved:
                lib.set_num_threads(count)
            entry = _active[count] = [0, saved]
        entry[0] += 1
    try:
        yield
    finally:
        with _lock:
            entry[0] -= 1
            if entry[0] == 0:
                del _active[count]
                for lib, before in entry[1]:
                    lib.set_num_threads(before)
