"""``eigraph viz``, ``eigraph validate --viz`` and ``Model.draw`` (docs/viz.md).

Every example model renders to every format, with the built-in layout and (when Graphviz is
installed) with dot; the SVG names every population and has one edge per projection; the DOT
text reads back into the same graph; the HTML page opens in headless Chromium with a clean
console and a screenshot that is not blank (skipped without Chromium; .ci/run installs it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest

import eigraph
from eigraph.cli import main
from eigraph.viz import VizError, make_scene, place, render
from eigraph.viz.dot import find_dot

matplotlib = pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
BROKEN = ROOT / "tests" / "broken"
EXAMPLES = sorted(p.name for p in [*MODELS.glob("*.ei"), *MODELS.glob("*.yaml")])
FORMATS = ("svg", "png", "pdf", "dot", "html")
ENGINES = ["built-in", pytest.param("dot", marks=pytest.mark.skipif(find_dot() is None,
                                                                     reason="Graphviz dot is not installed"))]


@pytest.fixture(scope="module")
def models():
    return {name: eigraph.load(MODELS / name) for name in EXAMPLES}


@pytest.fixture
def builtin(monkeypatch):
    monkeypatch.setenv("EIGRAPH_DOT", "none")


def _engine(monkeypatch, engine):
    if engine == "built-in":
        monkeypatch.setenv("EIGRAPH_DOT", "none")
    else:
        monkeypatch.delenv("EIGRAPH_DOT", raising=False)


# ------------------------------------------------------------------ every model, every format
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_example_renders_to_every_format(models, tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("EIGRAPH_DOT", "none")
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF", "dot": b"digraph", "html": b"<!DOCTYPE html>"}
    for name, model in models.items():
        out = tmp_path / f"{Path(name).stem}.{fmt}"
        notes = render(model, out)
        assert out.read_bytes().startswith(magic[fmt]), name
        assert notes == [], (name, notes)


@pytest.mark.parametrize("engine", ENGINES)
def test_svg_names_every_population_and_draws_one_edge_per_projection(models, tmp_path, monkeypatch, engine):
    _engine(monkeypatch, engine)
    for name, model in models.items():
        out = tmp_path / f"{Path(name).stem}.svg"
        render(model, out)
        svg = out.read_text()
        graph = model.graph
        for pop in graph.nodes:
            assert f'data-name="{pop}"' in svg, (name, pop)
        drawn = re.findall(r'<g id="edge-\d+" class="projection" data-name="([^"]*)"', svg)
        keys = [k.replace(">", "&gt;") for _, _, k in graph.edges(keys=True)]
        assert sorted(drawn) == sorted(keys), name
        # each drawn edge is a real line: a path with at least two points
        for i in range(len(keys)):
            block = svg.split(f'<g id="edge-{i}" ', 1)[1].split("</g>", 1)[0]
            assert re.search(r'<path d="M [-\d.]+ [-\d.]+\s+L', block), (name, i)
        # the drawing's text is real text (searchable, editable), not glyph outlines
        assert "<text" in svg


@pytest.mark.parametrize("engine", ENGINES)
def test_layout_engine_is_used_as_documented(models, monkeypatch, engine):
    _engine(monkeypatch, engine)
    scene = make_scene(models["decision.ei"])
    geometry = place(scene, "layered")
    assert geometry.engine == ("built-in layered" if engine == "built-in" else "graphviz dot")
    assert place(make_scene(models["decision.ei"]), "spring").engine == "built-in spring"


@pytest.mark.parametrize("engine", ENGINES)
def test_nodes_do_not_overlap_and_edges_avoid_other_nodes(models, monkeypatch, engine):
    import numpy as np

    _engine(monkeypatch, engine)
    for name, model in models.items():
        scene = make_scene(model)
        geometry = place(scene, "layered")
        shapes = geometry.shapes
        names = list(shapes)
        for i, a in enumerate(names):
            ax0, ay0, ax1, ay1 = shapes[a].bbox()
            for b in names[i + 1:]:
                bx0, by0, bx1, by1 = shapes[b].bbox()
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (name, a, b)
        for e, path in zip(scene.edges, geometry.paths):
            assert path is not None and len(path) >= 2, (name, e.id)
            for other, shape in shapes.items():
                if other in (e.source, e.target):
                    continue
                hits = int(np.count_nonzero(shape.body_inside(path)))
                assert hits == 0, f"{name}: {e.id} runs under {other}"


def test_labels_do_not_overlap_each_other_or_nodes(models, builtin):
    from eigraph.viz.geometry import label_size

    for name, model in models.items():
        scene = make_scene(model)
        geometry = place(scene)
        boxes = []
        for e, at in zip(scene.edges, geometry.labels):
            if at is None:
                continue
            w, h = label_size(e)
            boxes.append((e.id, (at[0] - w / 2, at[1] - h / 2, at[0] + w / 2, at[1] + h / 2)))
        nodes = [(n, s.bbox()) for n, s in geometry.shapes.items()]
        for i, (a, ba) in enumerate(boxes):
            for b, bb in boxes[i + 1:] + nodes:
                overlap_w = min(ba[2], bb[2]) - max(ba[0], bb[0])
                overlap_h = min(ba[3], bb[3]) - max(ba[1], bb[1])
                assert overlap_w <= 1 or overlap_h <= 1, f"{name}: label of {a} overlaps {b}"


# ------------------------------------------------------------------------------------- DOT
def test_dot_reads_back_into_the_same_graph(models, tmp_path):
    pytest.importorskip("pydot")
    for name, model in models.items():
        out = tmp_path / f"{Path(name).stem}.dot"
        render(model, out)
        back = nx.nx_pydot.read_dot(out)
        assert isinstance(back, nx.MultiDiGraph)
        graph = model.graph

        def unq(value):
            return str(value).strip('"')

        assert {unq(n) for n in back.nodes} == set(graph.nodes), name
        assert sorted((unq(u), unq(v), unq(k)) for u, v, k in back.edges(keys=True)) == \
            sorted(graph.edges(keys=True)), name
        for pop, d in graph.nodes(data=True):
            attrs = back.nodes[pop]
            assert int(unq(attrs["neurons"])) == d["size"]
            assert int(unq(attrs["sign"])) == d["sign"]
            assert unq(attrs["celltype"]) == d["celltype"]
        for u, v, k, d in back.edges(keys=True, data=True):
            original = graph.edges[unq(u), unq(v), unq(k)]
            assert int(unq(d["delay"])) == original["delay"]
            assert unq(d["plastic"]) == ("true" if original["plastic"] else "false")


@pytest.mark.skipif(find_dot() is None, reason="Graphviz dot is not installed")
def test_graphviz_renders_the_dot_text(models, tmp_path):
    for name, model in models.items():
        out = tmp_path / f"{Path(name).stem}.dot"
        render(model, out)
        run = subprocess.run([find_dot(), "-Tsvg", str(out)], capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr.decode()
        assert b"Warning" not in run.stderr, run.stderr.decode()


def test_dot_text_needs_no_drawing_program(models, tmp_path, monkeypatch):
    monkeypatch.setenv("EIGRAPH_DOT", "none")
    out = tmp_path / "m.dot"
    render(models["eiann_digits.ei"], out)
    text = out.read_text()
    assert 'subgraph "cluster_' in text and 'label="H1"' in text
    assert 'arrowhead="tee"' in text and 'arrowhead="normal"' in text
    assert 'headport="n"' in text and 'compartment="apical"' in text


# ------------------------------------------------------------------------------------ HTML
def test_html_page_has_the_drawing_the_tables_and_the_dale_summary(models, tmp_path, builtin):
    out = tmp_path / "decision.html"
    render(models["decision.ei"], out)
    page = out.read_text()
    assert "<svg" in page and "<script" not in page
    assert "Dale's law" in page and "Dale's law is <b>on</b>" in page and "No Dale's-law findings" in page
    assert "<h2>Populations</h2>" in page and "<h2>Projections</h2>" in page
    for pop in models["decision.ei"].graph.nodes:
        assert f"<b>{pop}</b>" in page
    # self-contained: nothing loaded from elsewhere
    assert not re.search(r'(src|href)="(?!data:|#)', page) and "url(http" not in page and "@import" not in page


def test_html_page_lists_dale_findings(tmp_path, builtin, capsys):
    out = tmp_path / "broken.html"
    assert main(["viz", str(BROKEN / "dale_normal_init.ei"), "-o", str(out)]) == 1
    page = out.read_text()
    assert "D203" in page and "1 Dale's-law finding" in page


chromium_program = None
try:
    from tests.chromium import find_chromium, open_page  # run from the repository root
except ImportError:  # pragma: no cover - run from tests/
    sys.path.insert(0, str(Path(__file__).parent))
    from chromium import find_chromium, open_page  # type: ignore
chromium_program = find_chromium()
needs_chromium = pytest.mark.skipif(chromium_program is None,
                                    reason="Chromium is not installed (.ci/run installs it)")


def _not_blank(png: bytes) -> tuple[float, int, int]:
    import io

    import numpy as np
    from matplotlib import image

    pixels = image.imread(io.BytesIO(png))[..., :3]
    inked = float(np.mean(np.any(pixels < 0.9, axis=-1)))
    red = int(np.count_nonzero((pixels[..., 0] > 0.6) & (pixels[..., 2] < 0.35) & (pixels[..., 1] < 0.35)))
    blue = int(np.count_nonzero((pixels[..., 2] > 0.5) & (pixels[..., 0] < 0.3)))
    return inked, red, blue


@needs_chromium
def test_chromium_check_catches_a_broken_page(tmp_path):
    """The console check itself works: a page with errors is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                   '<img src="missing.png"><script>console.error("marker"); nope();</script></body></html>')
    problems, _ = open_page(bad, chromium_program)
    text = "\n".join(problems)
    assert "marker" in text and "nope" in text and "missing.png" in text


@needs_chromium
@pytest.mark.parametrize("name", ["decision.ei", "eiann_digits.ei", "ei_network.yaml"])
def test_html_opens_in_chromium_without_console_errors(models, tmp_path, monkeypatch, name):
    monkeypatch.setenv("EIGRAPH_DOT", "none")
    out = tmp_path / f"{Path(name).stem}.html"
    render(models[name], out)
    problems, png = open_page(out, chromium_program)
    assert problems == []
    (tmp_path / "shot.png").write_bytes(png)
    inked, red, blue = _not_blank(png)
    assert inked > 0.03, f"screenshot is nearly blank ({inked:.1%} inked)"
    assert red > 50 and blue > 50, "the drawing's excitatory and inhibitory colours are not on screen"


# ------------------------------------------------------------------ a model with 1,000 populations
def test_the_frontend_benchmark_model_renders_in_under_a_minute(tmp_path, builtin):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from bench_frontend import generate
    finally:
        sys.path.pop(0)
    path = tmp_path / "big.ei"
    path.write_text(generate(1000, 10000))
    model = eigraph.load(path)
    started = time.perf_counter()
    out = tmp_path / "big.svg"
    notes = render(model, out)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, elapsed
    assert any("drawn by area" in n for n in notes), notes
    svg = out.read_text()
    assert 'data-name="A0"' in svg and 'data-name="A99"' in svg and 'data-name="stim"' in svg
    # the DOT text still lists every population
    dot = tmp_path / "big.dot"
    render(model, dot)
    edges = re.findall(r'^  "[^"]+" -> "[^"]+" \[', dot.read_text(), flags=re.M)
    assert len(edges) == model.graph.number_of_edges()


# ----------------------------------------------------------------------------- the command
def test_viz_command_writes_each_format(tmp_path, capsys, builtin):
    for fmt in FORMATS:
        out = tmp_path / f"d.{fmt}"
        assert main(["viz", str(MODELS / "decision.ei"), "-o", str(out)]) == 0
        assert out.exists() and out.stat().st_size > 0
        assert f"wrote {out}" in capsys.readouterr().out


def test_viz_default_output_is_model_svg_here(tmp_path, capsys, builtin, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["viz", str(MODELS / "oja_pca.ei")]) == 0
    assert (tmp_path / "oja_pca.svg").exists()


def test_viz_replaces_an_existing_drawing(tmp_path, capsys, builtin):
    out = tmp_path / "d.svg"
    out.write_text("old")
    assert main(["viz", str(MODELS / "decision.ei"), "-o", str(out)]) == 0
    assert out.read_text().startswith("<?xml")


def test_viz_options(tmp_path, capsys, builtin):
    model = str(MODELS / "multiarea.ei")
    out = tmp_path / "a.svg"
    assert main(["viz", model, "-o", str(out), "--no-labels", "--layout", "spring", "--highlight", "A2.E"]) == 0
    svg = out.read_text()
    assert ">p = 0.1<" not in svg and ">vogels<" not in svg
    assert main(["viz", model, "-o", str(out), "--highlight", "A3", "--detail", "areas"]) == 0
    assert 'data-name="A3"' in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["-o", "{tmp}/out.jpg"], "cannot tell the drawing format"),
    (["-o", "{tmp}/out"], "cannot tell the drawing format"),
    (["-o", "{tmp}/no/such/folder/out.svg"], "does not exist"),
    (["-o", "{tmp}"], "cannot tell the drawing format"),
    (["-o", "{tmp}/folder.svg"], "is a folder"),
    (["-o", "{tmp}/out.svg", "--highlight", "Ee"], "did you mean 'E'?"),
])
def test_viz_bad_arguments_exit_2_with_a_message(tmp_path, capsys, builtin, args, message):
    (tmp_path / "folder.svg").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["viz", str(MODELS / "decision.ei"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_viz_missing_model_exits_2(tmp_path, capsys):
    assert main(["viz", str(tmp_path / "nope.ei"), "-o", str(tmp_path / "x.svg")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_viz_of_a_model_with_errors_draws_and_marks_them(tmp_path, capsys, builtin):
    out = tmp_path / "broken.svg"
    assert main(["viz", str(BROKEN / "dale_normal_init.ei"), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "D203" in captured.err and "marked in the drawing" in captured.out
    svg = out.read_text()
    assert 'id="finding-1"' in svg and "D203" in svg


def test_viz_of_a_model_with_syntax_errors_says_why_it_cannot(tmp_path, capsys, builtin):
    out = tmp_path / "s.svg"
    assert main(["viz", str(BROKEN / "syntax_bad_token.ei"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot draw" in err and "syntax errors" in err
    assert not out.exists()


def test_viz_never_crashes_on_the_broken_models(tmp_path, capsys, builtin):
    for path in sorted(BROKEN.glob("*.*")):
        if path.suffix not in (".ei", ".yaml"):
            continue
        code = main(["viz", str(path), "-o", str(tmp_path / "out.svg")])
        captured = capsys.readouterr()
        assert code in (0, 1), (path.name, captured.err)
        assert "internal error" not in captured.err and "Traceback" not in captured.err, path.name


def test_viz_in_a_real_process_prints_no_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "eigraph.cli", "viz", str(MODELS / "decision.ei"), "-o",
                          str(tmp_path / "x.gif")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr and ".gif" in run.stderr


# ------------------------------------------------------------------------ validate --viz
def test_validate_viz_marks_findings(tmp_path, capsys, builtin):
    out = tmp_path / "v.svg"
    assert main(["validate", str(BROKEN / "structure_unreachable.ei"), "--viz", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 finding marked" in captured.out
    svg = out.read_text()
    assert 'id="finding-1"' in svg and "T406" in svg  # the warning, marked on H


def test_validate_viz_of_several_models_draws_one_file_each(tmp_path, capsys, builtin):
    out = tmp_path / "v.png"
    files = [str(BROKEN / "dale_normal_init.ei"), str(BROKEN / "rules_no_dw.ei"), str(MODELS / "decision.ei")]
    assert main(["validate", *files, "--viz", str(out)]) == 1
    for stem in ("dale_normal_init", "rules_no_dw", "decision"):
        assert (tmp_path / f"v-{stem}.png").exists()


def test_validate_viz_with_a_bad_target_is_a_usage_error(tmp_path, capsys):
    assert main(["validate", str(MODELS / "decision.ei"), "--viz", str(tmp_path / "v.txt")]) == 2
    err = capsys.readouterr().err
    assert "--viz" in err and ".svg" in err


def test_validate_viz_of_a_syntax_error_says_why(tmp_path, capsys, builtin):
    out = tmp_path / "v.svg"
    assert main(["validate", str(BROKEN / "syntax_bad_token.ei"), "--viz", str(out)]) == 1
    assert "cannot draw" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------ Python API
def test_model_draw_returns_a_figure(models, builtin):
    from matplotlib.figure import Figure

    fig = models["decision.ei"].draw()
    assert isinstance(fig, Figure)
    w, h = fig.get_size_inches()
    assert 3 < w < 30 and 2 < h < 30


def test_model_draw_into_given_axes(models, builtin):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(1, 2, 1)
    assert models["multiarea.ei"].draw(ax=ax, labels=False, highlight=["A1"]) is fig
    assert len(ax.patches) > 8


def test_model_draw_bad_option_raises_viz_error(models):
    with pytest.raises(VizError, match="layered or spring"):
        models["decision.ei"].draw(layout="circle")
