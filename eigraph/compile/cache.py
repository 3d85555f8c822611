"""The compile cache: generated modules stored by content hash, safe when processes race.

A module's key is the hash of its own text (which names the model's content hash, see
:func:`eigraph.compile.lower.content_hash`, and the versions that shaped it); the text is checked
before it is written and the module runs from that checked text. Numba's own cache
(``cache=True``) keeps the machine code beside each module.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from eigraph.compile.codetext import GeneratedCodeError, verify_kernel_source
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
    """Write ``source`` as ``<cache>/<kind>/eigraph_<key>.py`` (once) and import it.

    ``key`` must be the start of the SHA-256 of ``source``: a module is only ever found under
    the hash of its own text. The source is checked (:func:`verify_kernel_source`) before it is
    written, and the module is executed from ``source`` itself, never from whatever the file
    holds by then: a file changed in the cache folder (or left by an older eigraph) is rewritten,
    and cannot run.
    """
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    if not key or not digest.startswith(key):
        raise GeneratedCodeError(f"cache key {key!r} is not the hash of the module's text")
    verify_kernel_source(source, f"eigraph_{key}.py")
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"eigraph_{key}.py"
    with file_lock(folder / f"eigraph_{key}.lock"):
        try:
            same = path.read_text(encoding="utf-8") == source
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            atomic_write_text(path, source)  # rewritten only when different: numba keys its cache on the mtime
    name = f"eigraph_kernel_{key}"
    if name in sys.modules:
        return sys.modules[name], path
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # the checked text, compiled under the file's name (numba's cache=True finds its index by it)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - our own generated, verified code
    sys.modules[name] = module
    return module, path
