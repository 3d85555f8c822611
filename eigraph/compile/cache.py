"""The compile cache: generated modules stored by content hash, safe when processes race.

The key is the hash of the model's canonical form, the backend, the storage layout and the
versions of eigraph, numba and numpy (see :func:`eigraph.compile.lower.content_hash`). Numba's
own cache (``cache=True``) keeps the machine code beside each module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from eigraph.fileio import atomic_write_text


def cache_root() -> Path:
    """``$EIGRAPH_CACHE_DIR``, else ``$XDG_CACHE_HOME/eigraph``, else ``~/.cache/eigraph``."""
    if os.environ.get("EIGRAPH_CACHE_DIR"):
        return Path(os.environ["EIGRAPH_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "eigraph"


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between processes (POSIX flock); a no-op where flock is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def load_module(source: str, key: str, kind: str):
    """Write ``source`` as ``<cache>/<kind>/eigraph_<key>.py`` (once) and import it."""
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"eigraph_{key}.py"
    with file_lock(folder / f"eigraph_{key}.lock"):
        if not path.exists() or path.read_text(encoding="utf-8") != source:
            atomic_write_text(path, source)  # rewritten only when different: numba keys its cache on the mtime
    name = f"eigraph_kernel_{key}"
    if name in sys.modules:
        return sys.modules[name], path
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module, path
