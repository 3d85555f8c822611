"""Sizes and resource limits, checked before anything is allocated (docs/runtime.md, "Limits").

- :func:`estimate` adds up the bytes a model needs: weights (dense ``N*M``, sparse ``p*N*M``,
  ``fixed_in`` ``k*N``, ``one_to_one`` ``N``, with their index arrays; with ``spectral_radius``
  the dense recurrent matrix it is computed on), the state (neurons x
  batch x buffers), the delay ring buffers (delay steps x neurons x batch), learning buffers and
  traces, and the records of a trial (steps x batch x neurons) where the steps are known.
- :func:`check` (a family of ``eigraph validate``): absurd ``dt`` and delays (U530-U533), a delay
  longer than the run's trial (W531), and a model whose estimate is above :data:`WARN_BYTES` or
  the memory available (W530).
- :func:`refuse` (called by the compiler and the trainer before they draw or allocate anything)
  raises :class:`~eigraph.compile.lower.CompileError` with the estimate and the memory available.
- :func:`npy_header` / :func:`load_array`: mask, weights and data files are read only when they
  are regular files (F012) whose ``.npy`` header is sane (F013: numeric dtype, the expected
  shape, a file as large as the header says), never with pickles.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile

from eigraph.diagnostics import Diagnostic, error, warning

WARN_BYTES = 8 * 1024**3  # validate warns (W530) above this, or above the memory available
MIN_DT = 1e-9  # seconds: a smaller dt is refused (U531)
MAX_DELAY_STEPS = 10_000_000  # a longer delay is refused (U533)
DEFAULT_BATCH = 16  # the trainer's default, for the estimate of a run block without batch


def human(n: float) -> str:
    """Bytes in human units: '512 bytes', '3.2 MiB', '298 GiB'."""
    if not math.isfinite(n):
        return "more than can be counted"
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"):
        n /= 1024
        if n < 1024 or unit == "YiB":
            return f"{n:.3g} {unit}" if n < 100 else f"{n:.0f} {unit}"
    return f"{n:.0f} YiB"  # pragma: no cover


def available_memory() -> int | None:
    """Bytes of memory available now: MemAvailable of /proc/meminfo, else free pages (os.sysconf)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _synapses(edge: dict, n_pre: int, n_post: int) -> float:
    conn = edge["connectivity"]
    kind = conn.get("kind")
    if kind == "sparse":
        return max(0.0, min(1.0, float(conn.get("p", 1.0)))) * n_pre * n_post
    if kind == "fixed_in":
        return max(0, int(conn.get("k", 0))) * n_post
    if kind == "one_to_one":
        return min(n_pre, n_post)
    if kind in ("mask", "weights") and "shape" in conn:
        return float(conn.get("rows_nonzero_mean", n_pre)) * n_post
    return float(n_pre) * n_post


def estimate(graph, batch: int = 1, steps: int | None = None, record=None) -> dict[str, float]:
    """Bytes by part (``weights``, ``state``, ``delays``, ``learning``, ``records``), an upper
    estimate of what compiling and running one trial of ``steps`` steps allocates."""
    import numpy as np

    itemsize = np.dtype(graph.graph.get("precision") or "float32").itemsize
    batch = _count(batch)
    sizes = {name: int(node["size"]) for name, node in graph.nodes(data=True)}
    longest = dict.fromkeys(sizes, 1)
    parts = dict.fromkeys(("weights", "state", "delays", "learning", "records"), 0.0)
    for source, target, edge in graph.edges(data=True):
        delay = edge.get("delay") or 0
        if isinstance(delay, int) and 0 <= delay <= MAX_DELAY_STEPS:
            longest[source] = max(longest[source], delay + 1)
        n_pre, n_post = sizes[source], sizes[target]
        synapses = _synapses(edge, n_pre, n_post)
        dense = edge["connectivity"].get("kind") in ("dense", None) or synapses > 0.25 * n_pre * n_post
        # dense: the matrix (and, while it is drawn, a float64 copy); sparse: values, indices, row pointers
        weights = n_pre * n_post * (itemsize + 8) if dense else synapses * (itemsize + 4 + 8) + (n_post + 1) * 8
        parts["weights"] += weights
        if edge.get("learn"):
            rule = graph.graph["rules"].get(edge["learn"].get("rule"), {})
            traces = len(rule.get("traces", ()))
            parts["learning"] += weights + traces * (n_pre + n_post) * batch * itemsize
    if graph.graph.get("spectral_radius"):  # the recurrent matrix is made dense (float64) to rescale it
        hidden = sum(n for name, n in sizes.items() if graph.nodes[name]["role"] == "hidden")
        parts["weights"] += float(hidden) ** 2 * 8
    for name, node in graph.nodes(data=True):
        n = sizes[name]
        buffers = 2 + len(node.get("compartments") or ())  # x (two steps), compartment inputs
        parts["state"] += 2 * n * batch * itemsize * buffers  # the state and its copy at rest
        parts["delays"] += 2 * max(2, longest[name]) * n * batch * itemsize
    if steps:
        names = [r.split(".")[0] for r in record] if record else list(sizes)
        recorded = sum(sizes.get(name, 0) for name in names)
        inputs = sum(n for name, n in sizes.items() if graph.nodes[name]["role"] in ("input", "readout"))
        parts["records"] = _count(steps) * batch * (recorded * itemsize + inputs * 8 * 2)
    return parts


def _total(parts: dict) -> float:
    return float(sum(parts.values()))


def _largest(graph, parts: dict) -> str:
    part = max(parts, key=parts.get)
    return {"weights": "the weights", "state": "the state", "delays": "the delay buffers",
            "learning": "the learning buffers", "records": "the records of a trial"}[part]


def _count(value) -> float:
    """A batch or a number of steps as a float for the estimate: at least 1, and never an overflow
    (a run block may say ``batch: 1e308``; the checks of the run block report such values)."""
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):
        return 1e300
    return min(max(number, 1.0), 1e300) if math.isfinite(number) else 1e300


def _run_sizes(graph) -> tuple[int, int | None, list]:
    run = graph.graph.get("run") or {}
    batch = run.get("batch") or DEFAULT_BATCH
    count = _count(batch)
    return (int(count) if count < 1e18 else batch), run.get("steps"), list(run.get("record") or [])


def refuse(graph, batch: int = 1, steps: int | None = None, record=None, what: str = "this model") -> None:
    """Raise CompileError when the estimate is above the memory available (nothing allocated yet)."""
    from eigraph.compile.lower import CompileError

    parts = estimate(graph, batch, steps, record)
    total = _total(parts)
    available = available_memory()
    if available is not None and total > available:
        shape = f"batch {batch}" + (f", {steps} steps a trial" if steps else "")
        raise CompileError(
            f"{what} needs about {human(total)} of memory ({shape}; most of it {_largest(graph, parts)}), but only "
            f"{human(available)} is available: make populations smaller, use sparse(p) or fixed_in(k) connectivity, "
            "shorter delays or trials, or a smaller batch (docs/runtime.md, Limits)")


def check(graph) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    dt, spans = graph.graph["dt"], graph.graph["spans"]
    dt_ok = True
    if dt is not None:
        span = spans.get("dt", graph.graph["span"])
        if not math.isfinite(dt):
            found.append(error("U530", f"dt = {dt} s is not a finite time", span, "for example: dt = 1 ms"))
            dt_ok = False
        elif dt < MIN_DT:
            found.append(error("U531", f"dt = {dt:g} s is smaller than the smallest dt eigraph runs ({MIN_DT:g} s): "
                                       "time constants and trials would be more steps than can be run",
                               span, "for example: dt = 1 ms (dt >= 1 ns)"))
            dt_ok = False
    _, run_steps, _ = _run_sizes(graph)
    for _source, _target, key, edge in graph.edges(keys=True, data=True):
        exact = edge["connectivity"].get("delay_steps_exact")
        if exact is None or not dt_ok:
            continue
        span = edge["spans"].get("delay", edge["span"])
        if not math.isfinite(exact):
            found.append(error("U532", f"the delay of {key} is not a finite number of steps", span,
                               "write a delay of a few steps or ms, for example delay = 2 ms"))
        elif exact > MAX_DELAY_STEPS:
            found.append(error("U533", f"the delay of {key} is {exact:.3g} steps; at most {MAX_DELAY_STEPS:,} steps "
                                       "are allowed (every step of a delay is kept in memory)", span,
                               "write a shorter delay, or a larger dt"))
        elif run_steps and exact >= run_steps:
            found.append(warning("W531", f"the delay of {key} is {round(exact)} steps, as long as or longer than the "
                                         f"run's trial ({run_steps} steps): nothing sent through it arrives within "
                                         "a trial", span, "shorten the delay, or lengthen the trial (steps)"))
    if any(d.is_error for d in found) or graph.graph.get("incomplete"):
        return found
    batch, steps, record = _run_sizes(graph)
    for b in sorted({1, batch}):
        parts = estimate(graph, b, steps, record)
        total = _total(parts)
        available = available_memory()
        limit = min(WARN_BYTES, available) if available is not None else WARN_BYTES
        if total > limit:
            where = f"about {human(available)} is available here" if available is not None else ""
            found.append(warning(
                "W530", f"the model needs about {human(total)} of memory at batch {b} (most of it "
                        f"{_largest(graph, parts)}); {where or 'more than ' + human(WARN_BYTES)}",
                graph.graph["span"], "make populations smaller, use sparse(p) or fixed_in(k), shorter delays, or a "
                                     "smaller batch; compile and run refuse a model that does not fit in memory"))
            break
    return found


# files --------------------------------------------------------------------------------------

class FileProblem(Exception):
    """A file that is not read: ``code`` is F012 (not a regular file) or F013 (a bad header)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file(path) -> int:
    """The size of ``path``; FileProblem F012 when it is not a regular file (it is not opened)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileProblem("F011", f"cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem("F012", f"it is {_kind(info.st_mode)}, not a regular file")
    return info.st_size


def _header(handle, size: int, where: str = "", numeric: bool = True) -> tuple[tuple[int, ...], object]:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except Exception as exc:  # noqa: BLE001 - any unreadable header is the same problem for the user
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickle" in text.lower() or "object" in text.lower():
            text = "it holds Python objects, not numbers"
        raise FileProblem("F013", f"{where}not a readable .npy array ({text[:150]})") from None
    if dtype.hasobject or (numeric and dtype.kind not in "biuf"):
        raise FileProblem("F013", f"{where}values of type {dtype} are not numbers")
    count = math.prod(int(n) for n in shape)
    need = count * dtype.itemsize
    left = size - handle.tell()
    if need > left:
        raise FileProblem("F013", f"{where}its header says {' x '.join(map(str, shape)) or 'one value'} values of "
                                  f"{dtype} ({human(need)}), but the file holds only {human(max(left, 0))} of data")
    return tuple(int(n) for n in shape), dtype


def npy_header(path, expected: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], object]:
    """(shape, dtype) of a ``.npy`` file or of the one array of an ``.npz``, from the header only."""
    size = regular_file(path)
    with open(path, "rb") as handle:
        start = handle.read(4)
        handle.seek(0)
        if start.startswith(b"PK"):
            try:
                with zipfile.ZipFile(handle) as archive:
                    members = [m for m in archive.infolist() if m.filename.endswith(".npy")]
                    if len(members) != 1:
                        raise FileProblem("F011", "an .npz with more than one array; save one array with numpy.save")
                    with archive.open(members[0]) as inner:
                        shape, dtype = _header(inner, members[0].file_size)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise FileProblem("F013", f"not a readable .npz archive ({str(exc)[:150]})") from None
        else:
            shape, dtype = _header(handle, size)
    if expected is not None and shape != tuple(expected):
        raise FileProblem("F013", f"it holds an array of shape {shape}, but {tuple(expected)} is needed")
    return shape, dtype


def npz_headers(path) -> dict[str, tuple[tuple[int, ...], object]]:
    """{name: (shape, dtype)} of every array of an ``.npz``, from the headers only (F013 on a bad one)."""
    regular_file(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.filename.endswith(".npy"):
                    with archive.open(member) as inner:
                        out[member.filename[:-4]] = _header(inner, member.file_size, f"array '{member.filename[:-4]}': ",
                                                            numeric=False)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FileProblem("F013", f"not a readable .npz archive ({str(exc)[:150]})") from None
    return out


def numpy_reason(exc: BaseException) -> str:
    """numpy's message for an unreadable file, without its advice to allow pickles."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "pickle" in text.lower():
        return "it holds Python objects, not numbers"
    return text[:200]


def load_array(path, expected: tuple[int, ...] | None = None):
    """The one array of a ``.npy`` (or one-array ``.npz``) file, its header checked first."""
    import numpy as np

    npy_header(path, expected)
    try:
        array = np.load(path, allow_pickle=False)
        if isinstance(array, np.lib.npyio.NpzFile):
            with array:
                (key,) = array.files
                array = array[key]
    except (OSError, ValueError, EOFError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickle" in text.lower():
            text = "it holds Python objects, not numbers"
        raise FileProblem("F011", f"cannot read it: {text[:200]}") from None
    return np.asarray(array)
