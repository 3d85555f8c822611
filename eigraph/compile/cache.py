"""The compile cache: generated modules stored by content hash, safe when processes race.

A module's key is the hash of its own text (which names the model's content hash, see
:func:`eigraph.compile.lower.content_hash`, and the versions that shaped it); the text is checked
before it is written and the module runs from that checked text. Numba's own cache
(``cache=True``) keeps the machine code beside each module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from eigraph.compile.codetext import GeneratedCodeError, verify_kernel_source
from eigraph.fileio import atomic_write_text, write_problem


def configured_root() -> Path:
    """``$EIGRAPH_CACHE_DIR``, else ``$XDG_CACHE_HOME/eigraph``, else ``~/.cache/eigraph``."""
    if os.environ.get("EIGRAPH_CACHE_DIR"):
        return Path(os.environ["EIGRAPH_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "eigraph"


_USABLE: dict[Path, Path] = {}  # configured root -> the folder used (itself, or the fallback)


def cache_root() -> Path:
    """The cache folder: :func:`configured_root`, or, when that cannot be written (a read-only home,
    a mistyped ``EIGRAPH_CACHE_DIR``), a folder in the system's temporary folder, with a warning on
    standard error (once per process). Raises OSError when neither can be written."""
    wanted = configured_root()
    if wanted in _USABLE:
        return _USABLE[wanted]
    why = write_problem(wanted)
    if why is None:
        _USABLE[wanted] = wanted
        return wanted
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = Path(tempfile.gettempdir()) / f"eigraph-cache-{uid}"
    why_not = write_problem(fallback)
    if why_not is not None:
        raise OSError(errno.EACCES, f"cannot write the compile cache '{wanted}' ({why}) nor '{fallback}' "
                                    f"({why_not}); set EIGRAPH_CACHE_DIR to a writable folder")
    print(f"eigraph: warning: cannot write the compile cache '{wanted}' ({why}); using '{fallback}' instead "
          f"(set EIGRAPH_CACHE_DIR to a writable folder to keep compiled kernels between runs)", file=sys.stderr)
    _USABLE[wanted] = fallback
    return fallback


def _damaged(path: Path) -> bool:
    """Whether a Numba cache file (``.nbi`` index: two pickles; ``.nbc`` data: one) is cut short or
    garbled. Reads the pickle opcodes only: nothing in the file is run."""
    import pickletools

    try:
        with open(path, "rb") as handle:
            for _ in range(2 if path.suffix == ".nbi" else 1):
                for _op in pickletools.genops(handle):
                    pass
            return bool(handle.read(1))  # more than the pickles: not a file Numba wrote
    except OSError:
        return False  # gone or unreadable: Numba compiles again by itself
    except Exception:  # noqa: BLE001 - any failure to parse is damage
        return True


def repair_numba_cache(module_path: Path) -> list[Path]:
    """Remove the Numba cache files of ``module_path`` when any is damaged (a crash while Numba
    wrote it, a full disk, a copy cut short): Numba then compiles the kernel again and rewrites
    them. Returns the damaged files (empty when all is well)."""
    folder = module_path.parent / "__pycache__"
    if not folder.is_dir():
        return []
    mine = [f for f in folder.glob(f"{module_path.stem}.*") if f.suffix in (".nbi", ".nbc")]
    damaged = [f for f in mine if _damaged(f)]
    if damaged:
        for f in mine:
            with contextlib.suppress(OSError):
                f.unlink()
        print(f"eigraph: warning: the compiled-kernel cache in '{folder}' was damaged "
              f"({', '.join(f.name for f in damaged)}); removed those files; compiling the kernel again", file=sys.stderr)
    return damaged


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
        repair_numba_cache(path)
    name = f"eigraph_kernel_{key}"
    if name in sys.modules:
        return sys.modules[name], path
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # the checked text, compiled under the file's name (numba's cache=True finds its index by it)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - our own generated, verified code
    sys.modules[name] = module
    return module, path
