"""Drawing the population graph: ``eigraph viz``, ``eigraph validate --viz`` and ``Model.draw``.

The pipeline (docs/viz.md): the graph becomes a :class:`~eigraph.viz.scene.Scene` (styled
nodes, edges, areas and findings); a layout places it (Graphviz ``dot`` for the layered layout
when installed, else the built-in engine); matplotlib draws it (SVG, PNG, PDF), or the scene is
written as DOT text (no drawing program needed), or as a self-contained HTML page.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from eigraph.viz.scene import CIRCLE_GROUPS, MAX_PROJECTIONS, Scene, build_scene, resolve_highlight

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot", ".html": "html",
           ".htm": "html"}
LAYOUTS = ("layered", "spring")
DETAILS = ("auto", "full", "areas")
MAX_PIXELS = 8000  # the longer side of a PNG at most
DOT_MAX_EDGES = 2500  # above this, dot would run past its time limit: the built-in layout goes first


class VizError(Exception):
    """A drawing that cannot be made; the message says why and what to do."""


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise VizError(f"cannot tell the drawing format from '{path}' ({shown}): name it .svg, .png, .pdf, .dot "
                       f"or .html")
    return FORMATS[suffix]


def check_target(path: str | os.PathLike) -> str:
    """The output format of ``path``; raises VizError when it cannot be written there."""
    fmt = output_format(path)
    path = Path(path)
    if path.is_dir():
        raise VizError(f"'{path}' is a folder: give a file name, such as '{path / 'model'}.{fmt}'")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise VizError(f"cannot write '{path}': the folder '{parent}' does not exist")
    if not parent.is_dir():
        raise VizError(f"cannot write '{path}': '{parent}' is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VizError(f"cannot write '{path}': no permission to write in '{parent}'")
    if path.exists() and not os.access(path, os.W_OK):
        raise VizError(f"cannot write '{path}': the file is read-only")
    if fmt in ("svg", "png", "pdf", "html"):
        _need_matplotlib(fmt)
    return fmt


def _need_matplotlib(what: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise VizError(f"drawing {what.upper()} needs matplotlib: pip install 'eigraph[plot]' "
                       f"(or write a .dot file, which needs nothing)") from None


def _graph_of(model):
    graph = getattr(model, "graph", model)
    if graph is None or not hasattr(graph, "nodes"):
        raise VizError("nothing to draw: the model has no population graph")
    return graph


def make_scene(model, diagnostics=(), labels: bool = True, highlight=(), detail: str = "auto") -> Scene:
    """The scene of a model (or of its graph), with ``diagnostics`` marked on it."""
    if detail not in DETAILS:
        raise VizError(f"unknown detail '{detail}': use one of {', '.join(DETAILS)}")
    graph = _graph_of(model)
    _, unknown = resolve_highlight(graph, highlight or ())
    if unknown:
        from eigraph.diagnostics import suggest

        areas = {d.get("area") for _, d in graph.nodes(data=True) if d.get("area")}
        hint = suggest(unknown[0], list(graph.nodes) + list(areas))
        raise VizError(f"--highlight: no population or area '{unknown[0]}' in the model" + (f"; {hint}" if hint else ""))
    scene = build_scene(graph, diagnostics, highlight=highlight or (), labels=labels, detail=detail)
    if labels and not scene.summarised and len(scene.edges) > MAX_PROJECTIONS:
        scene.labels = False
        scene.notes.append(f"edge labels left out: {len(scene.edges):,} projections are too many to label")
    if scene.summarised and len(scene.nodes) > CIRCLE_GROUPS:
        scene.labels = False
    return scene


def place(scene: Scene, layout: str = "layered"):
    """A Geometry for the scene: Graphviz ``dot`` for ``layered`` when it is installed, else
    the built-in engine. Notes for the user are appended to ``scene.notes``."""
    from eigraph.viz.dot import DotFailed, find_dot, layout_with_dot
    from eigraph.viz.layout import layout as builtin

    if layout not in LAYOUTS:
        raise VizError(f"unknown layout '{layout}': use layered or spring")
    if scene.summarised and len(scene.nodes) > CIRCLE_GROUPS:
        from eigraph.viz.layout import circle

        return circle(scene)
    if layout == "layered":
        program = find_dot()
        if program and len(scene.edges) > DOT_MAX_EDGES:
            scene.notes.append(f"{len(scene.edges):,} edges are more than Graphviz dot lays out in reasonable time; "
                               f"used the built-in layout")
        elif program:
            try:
                return layout_with_dot(scene, program)
            except DotFailed as exc:
                if not exc.quiet:
                    scene.notes.append(f"{exc}; used the built-in layout instead")
    return builtin(scene, layout)


def draw(model, ax=None, layout: str = "layered", labels: bool = True, highlight=(), detail: str = "auto",
         diagnostics=None, legend: bool = True, title: bool = True):
    """Draw a model (or its graph) with matplotlib and return the Figure.

    ``diagnostics``: findings to mark (default: the model's errors). With ``ax``, draws into
    that axes; without, makes a figure sized so that one unit is one point."""
    _need_matplotlib("a figure")
    from eigraph.viz.picture import render as draw_scene

    if diagnostics is None:
        diagnostics = [d for d in getattr(model, "diagnostics", []) if d.is_error]
    scene = make_scene(model, diagnostics, labels=labels, highlight=highlight, detail=detail)
    geometry = place(scene, layout)
    return draw_scene(scene, geometry, ax=ax, legend=legend, title=title)


def _figure_bytes(fig, fmt: str, scene: Scene, dpi: float) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    rc = {"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "eigraph"}
    with matplotlib.rc_context(rc):
        if fmt == "png":
            w, h = fig.get_size_inches()
            dpi = min(dpi, MAX_PIXELS / max(w, h, 1e-9))
            fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
        elif fmt == "pdf":
            fig.savefig(buffer, format="pdf", facecolor="white",
                        metadata={"Creator": "eigraph", "CreationDate": None, "ModDate": None})
        else:
            fig.savefig(buffer, format="svg", facecolor="white", metadata={"Date": None, "Creator": "eigraph"})
    data = buffer.getvalue()
    if fmt == "svg":
        from eigraph.viz.picture import annotate_svg

        data = annotate_svg(data.decode("utf-8"), scene).encode("utf-8")
    return data


def render(model, path, diagnostics=None, layout: str = "layered", labels: bool = True, highlight=(),
           detail: str = "auto", dpi: float = 200, validation=None) -> list[str]:
    """Write the drawing of ``model`` to ``path`` (format from the extension), atomically.
    Returns notes for the user (a drawing by area, a layout fallback). ``validation``: all the
    findings of ``eigraph validate``, for the HTML page's Dale's-law summary."""
    notes, _ = _render(model, path, diagnostics, layout, labels, highlight, detail, dpi, validation)
    return notes


def _render(model, path, diagnostics, layout, labels, highlight, detail, dpi, validation):
    from eigraph.fileio import atomic_write_bytes, atomic_write_text

    fmt = check_target(path)
    if diagnostics is None:
        diagnostics = [d for d in getattr(model, "diagnostics", []) if d.is_error]
    started = time.perf_counter()
    if fmt == "dot":
        from eigraph.viz.dot import to_dot

        # the DOT text lists every population unless asked for areas: it is data as much as a picture
        scene = make_scene(model, diagnostics, labels=labels, highlight=highlight,
                           detail="areas" if detail == "areas" else "full")
        text = to_dot(scene, _graph_of(model))
        _write(path, lambda: atomic_write_text(path, text))
        return list(scene.notes), scene
    from eigraph.viz.picture import render as draw_scene

    scene = make_scene(model, diagnostics, labels=labels, highlight=highlight, detail=detail)
    geometry = place(scene, layout)
    fig = draw_scene(scene, geometry, title=fmt != "html")  # the page has the title
    if fmt == "html":
        from eigraph.viz.page import page

        svg = _figure_bytes(fig, "svg", scene, dpi).decode("utf-8")
        text = page(model, scene, svg, validation if validation is not None else diagnostics)
        _write(path, lambda: atomic_write_text(path, text))
    else:
        data = _figure_bytes(fig, fmt, scene, dpi)
        _write(path, lambda: atomic_write_bytes(path, data))
    notes = list(scene.notes)
    elapsed = time.perf_counter() - started
    if elapsed > 20:
        notes.append(f"drawing took {elapsed:.0f} s ({geometry.engine} layout)")
    return notes, scene


def _write(path, writer) -> None:
    try:
        writer()
    except OSError as exc:
        raise VizError(f"cannot write '{path}': {exc.strerror or exc}") from None


def targets_for(files: list[Path], target: str) -> list[tuple[Path, Path]]:
    """(model file, output path) pairs for ``validate --viz``: one model draws to ``target``;
    several draw one file each, named TARGET-MODEL.EXT beside ``target``."""
    target_path = Path(target)
    if len(files) <= 1:
        return [(f, target_path) for f in files]
    out, used = [], set()
    for f in files:
        name = f"{target_path.stem}-{Path(f).stem}"
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}-{n}", n + 1
        used.add(candidate)
        out.append((f, target_path.with_name(candidate + target_path.suffix)))
    return out


def draw_with_findings(files: list[Path], diagnostics: list, target: str) -> list[str]:
    """``eigraph validate --viz TARGET``: draw each model with every finding (errors and
    warnings) marked on its node or edge. Returns the messages to print; raises VizError."""
    from eigraph.model.load import check_path

    check_target(target)
    messages = []
    for file, out in targets_for(files, target):
        here = [d for d in diagnostics if d.span is None or _same_file(d.span.file, file)]
        model, _, _ = check_path(file)
        if model is None or model.graph is None:
            messages.append(f"cannot draw '{file}': it has syntax errors, so there is no graph to draw "
                            f"(fix the errors listed above first)")
            continue
        # the findings validate reported for this file (so --strict's severities hold)
        findings = here
        notes, scene = _render(model, out, findings, "layered", True, (), "auto", 200, findings)
        marked = sum(1 for f in scene.findings if f.targets)
        listed = len(scene.findings) - marked
        told = [f"{marked} finding{'s' if marked != 1 else ''} marked"] if marked else []
        if listed:
            told.append(f"{listed} listed under the drawing (no element to mark)")
        messages.append(f"drew {file} to {out}" + (" with " + " and ".join(told) if told else ""))
        messages += [f"  note: {n}" for n in notes]
    return messages


def _same_file(a: str, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


__all__ = ["FORMATS", "LAYOUTS", "DETAILS", "VizError", "draw", "render", "draw_with_findings", "make_scene",
           "place", "check_target", "output_format"]
