"""The ``eigraph`` command line: exit codes, output formats, unreadable inputs, convert and graph.

Exit codes (eigraph/cli.py): 0 success (warnings allowed unless --strict), 1 the model has
errors, 2 the command itself is wrong (unknown option, a path that does not exist, no models).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

# LANGUAGE.md section 1, verbatim: the spec's complete example must validate cleanly.
from conftest import SPEC_EXAMPLE as DECISION

from eigraph.cli import main

BROKEN = """\
network m { dt = 1 ms }
population inp : input(2)
population E   : E(4)
population out : readout(1)
inp -> E   : dense
E   -> out : dense, init = normal(0, 0.1)
population H : E(3)
H -> E : dense
"""  # D203 at 6:28 (error) and T406 at 7:12 (warning)

WARNS = """\
network m { dt = 1 ms }
population inp : input(2)
population E   : E(4)
population H   : E(3)
inp -> E : dense
H   -> E : dense
"""  # T406 at 4:12 only

GITHUB = re.compile(r"^::(error|warning) file=[^,:]+,line=(\d+),col=(\d+)(,[^:]*)?::(.+)$")

PROJECTIONS = {("stim", "E", "stim->E"), ("E", "E", "E->E"), ("E", "I", "E->I"), ("I", "E", "I->E"),
               ("E", "choice", "E->choice")}


@pytest.fixture
def decision(tmp_path) -> Path:
    path = tmp_path / "decision.ei"
    path.write_text(DECISION, encoding="utf-8")
    return path


@pytest.fixture
def broken(tmp_path) -> Path:
    path = tmp_path / "broken.ei"
    path.write_text(BROKEN, encoding="utf-8")
    return path


@pytest.fixture
def warns(tmp_path) -> Path:
    path = tmp_path / "warns.ei"
    path.write_text(WARNS, encoding="utf-8")
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """main() in-process; argparse's usage errors arrive as SystemExit."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    env.pop("EIGRAPH_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "eigraph.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


# -- exit codes ----------------------------------------------------------------------------------
def test_spec_example_is_clean(capsys, decision):
    code, out, err = run_cli(capsys, "validate", decision)
    assert code == 0, out + err
    assert out.strip().splitlines()[-1] == "ok: 1 file(s) checked, 0 error(s), 0 warning(s)"


def test_spec_example_is_clean_in_every_format(capsys, decision):
    code, out, _ = run_cli(capsys, "validate", "--format", "json", decision)
    assert code == 0
    payload = json.loads(out)
    assert payload["errors"] == payload["warnings"] == 0 and payload["diagnostics"] == []
    code, out, _ = run_cli(capsys, "validate", "--format", "github", decision)
    assert code == 0
    assert not [line for line in out.splitlines() if line.startswith("::")]


def test_summary_of_a_clean_model(capsys, decision):
    code, out, _ = run_cli(capsys, "validate", "--summary", decision)
    assert code == 0
    for word in ("stim", "choice", "vogels", "E->I"):
        assert word in out


def test_errors_exit_1(capsys, broken):
    code, out, _ = run_cli(capsys, "validate", broken)
    assert code == 1
    assert f"{broken}:6:28: error[D203]" in out
    assert f"{broken}:7:12: warning[T406]" in out
    assert out.strip().splitlines()[-1] == "failed: 1 file(s) checked, 1 error(s), 1 warning(s)"


def test_warnings_exit_0_and_1_with_strict(capsys, warns):
    code, out, _ = run_cli(capsys, "validate", warns)
    assert code == 0 and "warning[T406]" in out
    code, out, _ = run_cli(capsys, "validate", "--strict", warns)
    assert code == 1 and "error[T406]" in out


def test_clean_and_broken_together_exit_1(capsys, decision, broken):
    code, out, _ = run_cli(capsys, "validate", decision, broken)
    assert code == 1
    assert "2 file(s) checked" in out


def test_a_folder_checks_every_model_in_it(capsys, tmp_path, decision, warns):
    (tmp_path / "notes.txt").write_text("not a model")
    hidden = tmp_path / ".hidden"
    hidden.mkdir()
    (hidden / "skip.ei").write_text("this would not parse {")
    code, out, _ = run_cli(capsys, "validate", "--format", "json", tmp_path)
    assert code == 0
    payload = json.loads(out)
    assert sorted(Path(f).name for f in payload["files"]) == ["decision.ei", "warns.ei"]
    assert [d["code"] for d in payload["diagnostics"]] == ["T406"]


@pytest.mark.parametrize("args", [
    ["validate", "--format", "xml", "{model}"],
    ["validate", "--frobnicate", "{model}"],
    ["validate"],
    ["frobnicate", "{model}"],
    [],
    ["graph", "--format", "dot", "{model}"],
    ["convert", "--to", "json", "{model}"],
], ids=["unknown-format", "unknown-option", "no-path", "unknown-command", "no-command", "graph-format", "convert-to"])
def test_usage_errors_exit_2(capsys, decision, args):
    code, out, err = run_cli(capsys, *[a.format(model=decision) for a in args])
    assert code == 2
    assert "usage:" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["validate", "graph", "convert"])
def test_missing_path_exits_2(capsys, tmp_path, command):
    missing = tmp_path / "nope.ei"
    code, out, err = run_cli(capsys, command, missing)
    assert code == 2
    assert "nope.ei" in err and ("no such file" in err)
    assert "Traceback" not in out + err


def test_folder_without_models_exits_2(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no models here")
    code, out, err = run_cli(capsys, "validate", empty)
    assert code == 2
    assert "no model files" in err


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("eigraph ")


# -- output formats ------------------------------------------------------------------------------
def test_json_output(capsys, broken):
    code, out, _ = run_cli(capsys, "validate", "--format", "json", broken)
    assert code == 1
    payload = json.loads(out)
    assert payload["files"] == [str(broken)]
    assert (payload["errors"], payload["warnings"]) == (1, 1)
    for d in payload["diagnostics"]:
        assert {"code", "severity", "message", "hint", "span"} <= set(d)
        assert re.fullmatch(r"[A-Z]\d{3}", d["code"])
        assert d["severity"] in ("error", "warning")
        assert d["message"] and d["hint"]
        assert d["span"]["file"] == str(broken)
        for key in ("line", "column", "end_line", "end_column"):
            assert isinstance(d["span"][key], int) and d["span"][key] >= 1
    found = {(d["code"], d["severity"], d["span"]["line"], d["span"]["column"]) for d in payload["diagnostics"]}
    assert found == {("D203", "error", 6, 28), ("T406", "warning", 7, 12)}


def test_json_output_for_a_file_without_a_span(capsys, tmp_path):
    odd = tmp_path / "model.txt"
    odd.write_text("population E : E(3)\n")
    code, out, _ = run_cli(capsys, "validate", "--format", "json", odd)
    assert code == 1
    (d,) = json.loads(out)["diagnostics"]
    assert d["code"] == "F006" and d["span"] is None


def test_github_output(capsys, broken):
    code, out, _ = run_cli(capsys, "validate", "--format", "github", broken)
    assert code == 1
    lines = out.strip().splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    assert len(annotations) == 2
    for line in annotations:
        assert GITHUB.match(line), line
    assert re.match(rf"^::error file={re.escape(str(broken))},line=6,col=28,.*title=D203.*::Dale's law", annotations[0])
    assert re.match(rf"^::warning file={re.escape(str(broken))},line=7,col=12,.*title=T406.*::", annotations[1])
    assert lines[-1] == "eigraph: 1 file(s), 1 error(s), 1 warning(s)"


def test_github_output_escapes_newlines_and_percent(capsys, tmp_path):
    # The hint of an unclosed brace is one line; a message with '%' must be escaped as %25.
    path = tmp_path / "pct.ei"
    path.write_text("network m { dt = 1 ms }\npopulation E : E(4) { activation = 50% }\n")
    code, out, _ = run_cli(capsys, "validate", "--format", "github", path)
    assert code == 1
    for line in out.strip().splitlines()[:-1]:
        assert GITHUB.match(line), line
        assert "%" not in line.replace("%25", "").replace("%0A", "").replace("%0D", "").replace("%3A", "").replace(
            "%2C", "")


def test_text_output_has_caret_and_hint(capsys, broken):
    code, out, _ = run_cli(capsys, "validate", broken)
    lines = out.splitlines()
    i = lines.index(next(line for line in lines if "error[D203]" in line))
    assert lines[i + 1] == "    6 | E   -> out : dense, init = normal(0, 0.1)"
    assert lines[i + 2] == "      |                            " + "^" * len("normal(0, 0.1)")
    assert lines[i + 3].startswith("  hint: ")
    assert "\033[" not in out  # not a terminal: no colour


# -- files that are not models -------------------------------------------------------------------
def _bad_inputs(tmp_path) -> dict[str, tuple[Path, str]]:
    binary = tmp_path / "binary.ei"
    binary.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}\x00\x00\x1b[2J")
    latin = tmp_path / "latin1.ei"
    latin.write_bytes("network m { dt = 1 ms }\npopulation caf\u00e9 : E(2)\n".encode("latin-1"))
    empty = tmp_path / "empty.ei"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.yaml"
    blank.write_text("\n   \n# only a comment\n")
    folder = tmp_path / "folder.ei"
    folder.mkdir()
    return {
        "binary": (binary, "binary"),
        "non-utf8": (latin, "UTF-8"),
        "empty": (empty, "empty"),
        "blank-yaml": (blank, "no YAML document|empty"),
        "folder": (folder, "folder"),
    }


@pytest.mark.parametrize(("command", "kind"), [
    (command, kind) for command in ("validate", "graph", "convert")
    for kind in ("binary", "non-utf8", "empty", "blank-yaml", "folder")
    if (command, kind) != ("validate", "folder")  # validate takes folders
])
def test_unreadable_inputs_give_a_clear_message(capsys, tmp_path, command, kind):
    path, words = _bad_inputs(tmp_path)[kind]
    code, out, err = run_cli(capsys, command, path)
    assert code in (1, 2)
    assert re.search(words, out + err), out + err
    assert "Traceback" not in out + err
    assert "internal error" not in out + err


def test_non_utf8_points_at_the_byte(capsys, tmp_path):
    path, _ = _bad_inputs(tmp_path)["non-utf8"]
    code, out, _ = run_cli(capsys, "validate", "--format", "json", path)
    assert code == 1
    (d,) = json.loads(out)["diagnostics"]
    assert (d["code"], d["span"]["line"], d["span"]["column"]) == ("F004", 2, 15)


def test_binary_file_is_not_echoed(capsys, tmp_path):
    path = tmp_path / "ascii_binary.ei"  # binary, yet valid UTF-8: NUL bytes and an escape sequence
    path.write_bytes(b"\x00\x01\x02 data \x1b[2J\n")
    code, out, err = run_cli(capsys, "validate", path)
    assert code == 1 and "F003" in out
    assert "\x00" not in out + err and "\x1b" not in out + err


def test_bad_inputs_in_a_real_process(tmp_path):
    inputs = _bad_inputs(tmp_path)
    for kind in ("binary", "non-utf8", "empty"):
        proc = run_process("validate", inputs[kind][0])
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
    proc = run_process("graph", inputs["folder"][0])
    assert proc.returncode in (1, 2) and "folder" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = run_process("graph", tmp_path / "missing.ei")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_unknown_extension(capsys, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text(DECISION)
    code, out, _ = run_cli(capsys, "validate", path)
    assert code == 1 and "F006" in out and "extension" in out


# -- convert -------------------------------------------------------------------------------------
def _graph_json(capsys, path) -> dict:
    code, out, err = run_cli(capsys, "graph", "--format", "json", path)
    assert code == 0, out + err
    return json.loads(out)


def _shape(data: dict) -> tuple:
    """What a round trip must keep: populations and projections with their main attributes."""
    g = nx.node_link_graph(data, edges="edges")
    nodes = {n: (d["celltype"], d["size"], d["sign"], d["role"], d["tau"], d["noise"]) for n, d in g.nodes(data=True)}
    edges = {k: (u, v, d["delay"], json.dumps(d["init"], sort_keys=True), json.dumps(d["learn"], sort_keys=True),
                 json.dumps(d["connectivity"], sort_keys=True)) for u, v, k, d in g.edges(keys=True, data=True)}
    return nodes, edges


def test_convert_round_trip(capsys, tmp_path, decision):
    yaml_path = tmp_path / "decision.yaml"
    back = tmp_path / "back.ei"
    code, out, err = run_cli(capsys, "convert", decision, "-o", yaml_path)
    assert code == 0, err
    assert yaml_path.exists() and "projections:" in yaml_path.read_text()
    code, out, err = run_cli(capsys, "convert", yaml_path, "-o", back)
    assert code == 0, err
    assert "network decision" in back.read_text()
    for path in (yaml_path, back):
        code, out, _ = run_cli(capsys, "validate", path)
        assert code == 0, out
    assert _shape(_graph_json(capsys, decision)) == _shape(_graph_json(capsys, yaml_path)) == _shape(
        _graph_json(capsys, back))


def test_convert_to_standard_output(capsys, decision):
    code, out, _ = run_cli(capsys, "convert", decision)
    assert code == 0 and out.startswith("network:")
    code, out, _ = run_cli(capsys, "convert", "--to", "ei", decision)
    assert code == 0 and "population stim" in out


def test_convert_refuses_to_overwrite(capsys, tmp_path, decision):
    target = tmp_path / "out.yaml"
    target.write_text("keep me\n")
    code, out, err = run_cli(capsys, "convert", decision, "-o", target)
    assert code == 2
    assert "--force" in err
    assert target.read_text() == "keep me\n"
    code, out, err = run_cli(capsys, "convert", decision, "-o", target, "--force")
    assert code == 0
    assert target.read_text().startswith("network:")


def test_convert_needs_a_known_output_suffix(capsys, tmp_path, decision):
    code, _, err = run_cli(capsys, "convert", decision, "-o", tmp_path / "out.json")
    assert code == 2 and ".yaml" in err
    assert not (tmp_path / "out.json").exists()


def test_convert_a_model_that_does_not_parse(capsys, tmp_path):
    path = tmp_path / "bad.ei"
    path.write_text("network m { dt = 1 ms\n")
    target = tmp_path / "bad.yaml"
    code, out, err = run_cli(capsys, "convert", path, "-o", target)
    assert code == 1
    assert "S001" in err and "Traceback" not in out + err
    assert not target.exists()


# -- graph ---------------------------------------------------------------------------------------
def test_graph_json_loads_with_networkx(capsys, decision):
    g = nx.node_link_graph(_graph_json(capsys, decision), edges="edges")
    assert isinstance(g, nx.MultiDiGraph)
    assert set(g.nodes) == {"stim", "E", "I", "choice"}
    assert set(g.edges(keys=True)) == PROJECTIONS
    assert g.nodes["E"]["size"] == 80 and g.nodes["E"]["sign"] == 1 and g.nodes["E"]["celltype"] == "Pyr"
    assert g.nodes["I"]["sign"] == -1 and g.nodes["choice"]["role"] == "readout"
    assert g.edges["stim", "E", "stim->E"]["delay"] == 0  # from an input: read in the same step
    assert g.edges["E", "I", "E->I"]["delay"] == 1
    assert g.edges["I", "E", "I->E"]["learn"]["rule"] == "vogels"
    assert g.edges["E", "E", "E->E"]["connectivity"]["kind"] == "sparse"


def test_graph_graphml_loads_with_networkx(capsys, tmp_path, decision):
    out_path = tmp_path / "decision.graphml"
    code, out, err = run_cli(capsys, "graph", "--format", "graphml", decision, "-o", out_path)
    assert code == 0, err
    g = nx.read_graphml(out_path, force_multigraph=True)
    assert set(g.nodes) == {"stim", "E", "I", "choice"}
    assert {(u, v, k) for u, v, k in g.edges(keys=True)} == PROJECTIONS
    assert g.nodes["E"]["size"] == 80


def test_graph_keeps_parallel_projections(capsys, tmp_path):
    path = tmp_path / "parallel.ei"
    path.write_text("network m { dt = 1 ms }\npopulation inp : input(2)\npopulation E : E(4)\n"
                    "population I : I(2)\ninp -> E : dense\nE -> I : dense, name = \"fast\"\n"
                    "E -> I : dense, delay = 5 ms, name = \"slow\"\nI -> E : dense\n")
    g = nx.node_link_graph(_graph_json(capsys, path), edges="edges")
    assert g.number_of_edges("E", "I") == 2
    assert g.edges["E", "I", "slow"]["delay"] == 5
    out_path = tmp_path / "parallel.graphml"
    assert run_cli(capsys, "graph", "--format", "graphml", path, "-o", out_path)[0] == 0
    h = nx.read_graphml(out_path)
    assert isinstance(h, nx.MultiDiGraph) and h.number_of_edges("E", "I") == 2


def test_graph_summary(capsys, decision):
    code, out, _ = run_cli(capsys, "graph", decision)
    assert code == 0
    assert "4 populations" in out and "5 projections" in out


def test_graph_of_a_broken_model_exits_1(capsys, broken):
    code, out, err = run_cli(capsys, "graph", "--format", "json", broken)
    assert code == 1
    assert out == ""
    assert "D203" in err


def test_graph_refuses_to_overwrite(capsys, tmp_path, decision):
    target = tmp_path / "g.json"
    target.write_text("keep me\n")
    code, _, err = run_cli(capsys, "graph", "--format", "json", decision, "-o", target)
    assert code == 2 and "--force" in err
    assert target.read_text() == "keep me\n"
    code, _, _ = run_cli(capsys, "graph", "--format", "json", decision, "-o", target, "--force")
    assert code == 0
    nx.node_link_graph(json.loads(target.read_text()), edges="edges")


def test_graph_warnings_go_to_stderr(capsys, warns):
    code, out, err = run_cli(capsys, "graph", "--format", "json", warns)
    assert code == 0
    json.loads(out)  # standard output stays machine-readable
    assert "T406" in err


def test_github_output_escapes_the_file_name(capsys, tmp_path):
    folder = tmp_path / "odd,name"
    folder.mkdir()
    path = folder / "m:1.ei"
    path.write_text(BROKEN)
    code, out, _ = run_cli(capsys, "validate", "--format", "github", path)
    assert code == 1
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert len(annotations) == 2
    escaped = str(path).replace(",", "%2C").replace(":", "%3A")
    for line in annotations:
        assert GITHUB.match(line), line
        assert line.split(" ", 1)[1].startswith(f"file={escaped},line=")


# outputs that cannot be written: every command, one exit code, a clear message ----------------------
@pytest.fixture
def immutable(tmp_path):
    """A folder nobody (root included) can write in: chattr +i where the file system has it, else /proc."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0 if os.name == "posix" \
        else False
    if made:
        try:
            (folder / "probe").write_text("")
        except OSError:
            pass
        else:  # the flag did not stop the write: use /proc
            made = False
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    try:
        yield folder if made else Path("/proc/eigraph-no-such-folder")
    finally:
        if made:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def _outputs(tmp_path, immutable):
    """(case, the output path) for each way an output can be impossible to write."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    return {"under a file": a_file / "sub", "immutable": immutable / "sub", "under /proc": Path("/proc/eigraph-out")}


def _commands(model: Path, out: Path) -> dict[str, list[str]]:
    return {
        "validate": ["validate", str(model), "--viz", f"{out}.dot"],
        "convert": ["convert", str(model), "-o", f"{out}.yaml"],
        "graph": ["graph", str(model), "--format", "json", "-o", f"{out}.json"],
        "compile": ["compile", str(model), "--backend", "numpy", "-o", str(out)],
        "viz": ["viz", str(model), "-o", f"{out}.dot"],
        "run": ["run", str(model), "--backend", "numpy", "--trials", "2", "--batch", "1", "-q", "-o", str(out)],
    }


def _refused(capsys, argv: list[str], *names: str) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    said = out + err
    assert code == 2, (argv, code, said)
    assert f"eigraph {argv[0]}: error: " in err, (argv, said)
    assert "Traceback" not in said and "internal error" not in said and "X001" not in said, (argv, said)
    assert any(name in err for name in names), (argv, names, err)
    return err


@pytest.mark.parametrize("command", ["validate", "convert", "graph", "compile", "viz", "run"])
def test_unwritable_outputs_are_usage_errors(command, decision, tmp_path, immutable, capsys):
    for case, out in _outputs(tmp_path, immutable).items():
        argv = _commands(decision, out)[command]
        err = _refused(capsys, argv, str(out.parent) if case != "under a file" else "a_file", str(out))
        assert "cannot write" in err or "is not a folder" in err or "does not exist" in err, (case, err)
    leftovers = [p for p in tmp_path.rglob("*") if ".eigraph-write-test" in p.name or p.name.endswith(".tmp")]
    assert not leftovers


@pytest.mark.parametrize("command", ["validate", "convert", "graph", "viz"])
def test_a_folder_where_an_output_file_belongs(command, decision, tmp_path, capsys):
    folder = tmp_path / "out"
    for suffix in (".dot", ".yaml", ".json"):
        (tmp_path / f"out{suffix}").mkdir()
    err = _refused(capsys, _commands(decision, folder)[command] + (["--force"] if command in ("convert", "graph")
                                                                    else []), "is a folder")
    assert str(folder) in err


@pytest.mark.parametrize("command", ["compile", "run"])
def test_a_file_where_an_output_folder_belongs(command, decision, tmp_path, capsys):
    target = tmp_path / "out"
    target.write_text("a file\n")
    err = _refused(capsys, _commands(decision, target)[command], "is a file", "is not a folder")
    assert str(target) in err
    assert target.read_text() == "a file\n"  # untouched


@pytest.mark.parametrize("command", ["convert", "graph", "compile", "viz", "run"])
def test_a_folder_where_the_model_file_belongs(command, tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "m.ei").write_text(DECISION)
    _refused(capsys, _commands(folder, tmp_path / "out")[command], "is a folder")


@pytest.mark.parametrize("argv, says", [
    (["compile", "{model}", "--backend", "numpy", "--batch", "0"], "--batch must be at least 1"),
    (["compile", "{model}", "--backend", "numpy", "--batch", "-3"], "--batch must be at least 1"),
    (["viz", "{model}", "--dpi", "0"], "--dpi must be between 1 and"),
    (["viz", "{model}", "--dpi", "-5"], "--dpi must be between 1 and"),
    (["viz", "{model}", "--dpi", "1e300"], "--dpi must be between 1 and"),
    (["viz", "{model}", "--dpi", "nan"], "--dpi must be between 1 and"),
])
def test_option_values_out_of_range(argv, says, decision, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, [a.replace("{model}", str(decision)) for a in argv], says)
    assert not list(tmp_path.glob("*_compiled")) and not list(tmp_path.glob("*.svg"))


# convert: file names follow the model -----------------------------------------------------------------
def _masked(tmp_path) -> Path:
    import numpy as np

    models = tmp_path / "models"
    (models / "data").mkdir(parents=True)
    mask = np.zeros((4, 2), dtype=np.uint8)
    mask[:, 0] = 1
    np.save(models / "data" / "in mask.npy", mask)
    np.save(models / "w.npy", np.full((1, 4), 0.5))
    path = models / "masked.ei"
    path.write_text('network m { dt = 1 ms }\npopulation inp : input(2)\npopulation E : E(4)\n'
                    'population out : readout(1)\ninp -> E : mask("data/in mask.npy"), init = uniform(0.1, 0.2)\n'
                    'E -> out : weights("w.npy")\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("there", ["elsewhere/deeper", "models/data", "."])
def test_convert_rewrites_file_names_for_the_output_folder(there, tmp_path, capsys, monkeypatch):
    from eigraph.model.graph import signature
    from eigraph.model.load import check_path

    monkeypatch.chdir(tmp_path)
    model = _masked(tmp_path)
    original = check_path(model)[0]
    yaml_out = tmp_path / there / "m.yaml"
    assert main(["convert", str(model), "-o", str(yaml_out)]) == 0, capsys.readouterr()
    text = yaml_out.read_text()
    assert "in mask.npy" in text and "internal error" not in capsys.readouterr().err
    back = tmp_path / "third" / "m.ei"
    assert main(["convert", str(yaml_out), "-o", str(back)]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert 'mask("../models/data/in mask.npy")' in back.read_text()
    assert 'weights("../models/w.npy")' in back.read_text()
    for path in (yaml_out, back):
        converted, found, _ = check_path(path)
        assert converted is not None and not any(d.is_error for d in found), found
        assert signature(converted.graph) == signature(original.graph)
        assert main(["graph", str(path), "--format", "json"]) == 0  # the same graph on the command line too
        graph = json.loads(capsys.readouterr().out)
        assert main(["graph", str(model), "--format", "json"]) == 0
        expected = json.loads(capsys.readouterr().out)
        assert sorted(n["id"] for n in graph["nodes"]) == sorted(n["id"] for n in expected["nodes"])
        assert sorted(e["key"] for e in graph["edges"]) == sorted(e["key"] for e in expected["edges"])


def test_convert_keeps_absolute_file_names(tmp_path, capsys):
    model = _masked(tmp_path)
    absolute = (tmp_path / "models" / "w.npy").resolve().as_posix()
    model.write_text(model.read_text().replace('weights("w.npy")', f'weights("{absolute}")'))
    out = tmp_path / "x" / "m.yaml"
    assert main(["convert", str(model), "-o", str(out)]) == 0, capsys.readouterr()
    assert absolute in out.read_text()


# the compile cache ------------------------------------------------------------------------------------
def test_unwritable_cache_folder_falls_back_to_the_temp_folder(tmp_path, monkeypatch, capsys):
    import tempfile

    from eigraph.compile import cache

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("EIGRAPH_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(cache, "_USABLE", {})
    root = cache.cache_root()
    assert root == tmp_path / "tmp" / f"eigraph-cache-{os.getuid()}" and root.is_dir()
    err = capsys.readouterr().err
    assert "warning: cannot write the compile cache" in err and str(blocker / "cache") in err
    assert cache.cache_root() == root and capsys.readouterr().err == ""  # once per process
    source = f'"""A kernel module for the fallback test ({os.getpid()})."""\nVALUE = 41 + 1\n'
    module, path = cache.load_module(source, hashlib.sha256(source.encode()).hexdigest()[:20], "numpy")
    assert module.VALUE == 42 and path.parent == root / "numpy"


def test_no_writable_cache_folder_is_a_clear_error(tmp_path, monkeypatch):
    import tempfile

    from eigraph.compile import cache

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("EIGRAPH_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))
    monkeypatch.setattr(cache, "_USABLE", {})
    with pytest.raises(OSError, match="set EIGRAPH_CACHE_DIR to a writable folder"):
        cache.cache_root()


def test_damaged_numba_cache_files_are_removed(tmp_path, capsys):
    import pickle

    from eigraph.compile.cache import repair_numba_cache

    module = tmp_path / "eigraph_abc.py"
    module.write_text("")
    pycache = tmp_path / "__pycache__"
    pycache.mkdir()
    index = pycache / "eigraph_abc.run_chunk-10.py311.nbi"
    data = pycache / "eigraph_abc.run_chunk-10.py311.1.nbc"
    other = pycache / "eigraph_other.run_chunk-10.py311.nbi"
    index.write_bytes(pickle.dumps("0.59") + pickle.dumps((1.0, {"sig": "eigraph_abc.run_chunk-10.py311.1.nbc"})))
    data.write_bytes(pickle.dumps({"code": b"\x00" * 1000}))
    other.write_bytes(b"garbage\n")
    assert repair_numba_cache(module) == [] and index.exists() and data.exists()  # sound files are kept
    assert capsys.readouterr().err == ""
    data.write_bytes(data.read_bytes()[:100])  # cut short, as by a crash or a full disk
    assert repair_numba_cache(module) == [data]
    assert not index.exists() and not data.exists() and other.exists()  # only this module's files
    err = capsys.readouterr().err
    assert "damaged" in err and str(pycache) in err and "compiling the kernel again" in err
    index.write_bytes(b"garbage\n")
    assert repair_numba_cache(module) == [index] and not index.exists()


@pytest.mark.parametrize("command", ["convert", "graph", "compile"])
def test_a_command_that_fails_leaves_no_folder_it_made(command, tmp_path):
    """The output's folders are checked for writing before the work, and made again only when
    something is written: a model with errors leaves no empty folder behind."""
    bad = tmp_path / "bad.ei"
    bad.write_text("population E : E(4)\nE -> E : dense, init = uniform(0, 1), learn = oja(eta = \n",
                   encoding="utf-8")
    out = {"convert": "new/dir/x.yaml", "graph": "new/dir/x.json", "compile": "new/dir/compiled"}[command]
    args = [command, bad, "-o", out] + (["--format", "json"] if command == "graph" else [])
    proc = run_process(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "bad.ei:2:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()


def test_convert_makes_the_output_folder_when_it_writes(tmp_path):
    proc = run_process("convert", Path(__file__).resolve().parents[1] / "models" / "oja_pca.ei", "-o", "new/dir/oja.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "new" / "dir" / "oja.yaml").is_file()
