"""Every model under tests/broken/ must produce exactly the findings its header names.

Header format (comment lines at the top of each file, read by this test):

    # free text describing the mistake
    # expect: D203 9:28            an error with this code at line 9, column 28
    # expect-warning: T406 8:12    a warning
    # expect-text: double quotes   a substring the text output must contain
    # forbid-text: connectivitys   a substring it must not contain
    # xfail: BUG: ...              the findings are known to be wrong (strict xfail)
    # xfail-text: BUG: ...         the text output is known to be wrong (strict xfail)

A file must produce exactly its expected findings (as a multiset of code, severity, line and
column): nothing else, so each model stays a minimal, otherwise valid model. Files with only
warnings exit 0, and 1 under --strict; files with an error exit 1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from eigraph.cli import main

BROKEN = Path(__file__).resolve().parent / "broken"
REPO = Path(__file__).resolve().parents[1]
MODEL_SUFFIXES = (".ei", ".yaml", ".yml")

_EXPECT = re.compile(r"#\s*expect(-warning)?:\s*([A-Z]\d{3})\s+(\d+):(\d+)\s*$")
_GITHUB = re.compile(r"^::(error|warning) ([^:]*)::(.*)$")


@dataclass
class Expectation:
    path: Path
    findings: list[tuple[str, str, int, int]] = field(default_factory=list)  # (severity, code, line, col)
    texts: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    xfail: str | None = None
    xfail_text: str | None = None

    @property
    def errors(self):
        return [f for f in self.findings if f[0] == "error"]

    @property
    def warning_only(self) -> bool:
        return bool(self.findings) and not self.errors


def read_header(path: Path) -> Expectation:
    exp = Expectation(path)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = _EXPECT.match(line)
        if match:
            severity = "warning" if match.group(1) else "error"
            exp.findings.append((severity, match.group(2), int(match.group(3)), int(match.group(4))))
        elif line.startswith("# expect-text:"):
            exp.texts.append(line.split(":", 1)[1].strip())
        elif line.startswith("# forbid-text:"):
            exp.forbidden.append(line.split(":", 1)[1].strip())
        elif line.startswith("# xfail-text:"):
            exp.xfail_text = line.split(":", 1)[1].strip()
        elif line.startswith("# xfail:"):
            exp.xfail = line.split(":", 1)[1].strip()
        elif line.startswith("# expect"):
            raise ValueError(f"{path.name}: malformed header line {line!r}")
    return exp


CASES = sorted(p for p in BROKEN.iterdir() if p.suffix in MODEL_SUFFIXES)
EXPECTATIONS = {p.name: read_header(p) for p in CASES}
SOURCE = "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "eigraph").rglob("*.py")))


def _params(kind: str):
    """One pytest param per broken file, xfail(strict) where its header says the code has a bug."""
    params = []
    for path in CASES:
        exp = EXPECTATIONS[path.name]
        reason = exp.xfail if kind == "findings" else (exp.xfail_text or exp.xfail)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(exp, id=path.name, marks=marks))
    return params


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def json_findings(out: str) -> Counter:
    payload = json.loads(out)
    found = Counter()
    for d in payload["diagnostics"]:
        span = d["span"] or {}
        found[(d["severity"], d["code"], span.get("line"), span.get("column"))] += 1
    return found


def describe(findings) -> str:
    return ", ".join(f"{c} {s} {line}:{col}" for s, c, line, col in sorted(findings)) or "nothing"


# -- the folder itself ---------------------------------------------------------------------------
def test_folder_has_cases_in_both_forms():
    assert len([p for p in CASES if p.suffix == ".ei"]) >= 40
    assert len([p for p in CASES if p.suffix in (".yaml", ".yml")]) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_header_is_well_formed(path):
    exp = EXPECTATIONS[path.name]
    assert exp.findings, f"{path.name} has no '# expect:' line"
    for _severity, code, line, col in exp.findings:
        assert f'"{code}"' in SOURCE, f"{path.name} expects {code}, which eigraph does not have"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert 1 <= line <= len(lines), f"{path.name}: line {line} is outside the file"
        assert 1 <= col <= len(lines[line - 1]) + 1, f"{path.name}: column {col} is outside line {line}"


def test_every_family_of_section_6_is_covered():
    codes = {code for exp in EXPECTATIONS.values() for _s, code, _l, _c in exp.findings}
    required = {
        "S001", "S002", "S003", "S004",  # syntax
        "N101", "N102", "N103", "N104", "N105", "N106", "N107",  # names
        "D201", "D202", "D203", "D204", "D205", "D206",  # Dale's law
        "C301", "C302", "C303",  # cell types
        "T401", "T402", "T403", "T404", "T405", "T406", "T407",  # structure
        "U501", "U502", "W503", "U504",  # numerics
        "R601", "R602",  # rule bodies
        "Y001", "Y002", "Y003", "Y004", "Y005",  # YAML
    }
    assert not required - codes, f"no broken model for {sorted(required - codes)}"
    yaml_codes = {code for exp in EXPECTATIONS.values() if exp.path.suffix != ".ei"
                  for _s, code, _l, _c in exp.findings}
    assert {"Y001", "N105", "D203"} <= yaml_codes


def test_weight_files_are_what_the_models_say():
    mixed = np.load(BROKEN / "w_mixed_2x4.npy")
    assert mixed.shape == (2, 4) and (mixed > 0).any() and (mixed < 0).any()  # I(2) x E(4), both signs
    assert np.load(BROKEN / "mask_3x3.npy").shape == (3, 3)  # not (post x pre) = (4, 2)


# -- each broken model ---------------------------------------------------------------------------
@pytest.mark.parametrize("exp", _params("findings"))
def test_exact_findings(capsys, exp):
    code, out, err = run_cli(capsys, "validate", "--format", "json", str(exp.path))
    found = json_findings(out)
    want = Counter(exp.findings)
    assert found == want, f"expected {describe(want.elements())}; got {describe(found.elements())}"
    assert code == (0 if exp.warning_only else 1)
    assert "Traceback" not in out + err


@pytest.mark.parametrize("exp", _params("findings"))
def test_github_annotations(capsys, exp):
    code, out, _ = run_cli(capsys, "validate", "--format", "github", str(exp.path))
    annotations = Counter()
    for line in out.splitlines():
        if not line.startswith("::"):
            continue
        match = _GITHUB.match(line)
        assert match, f"not a workflow command: {line!r}"
        props = dict(item.split("=", 1) for item in match.group(2).split(","))
        assert props["file"] == str(exp.path)
        assert match.group(3).strip()
        annotations[(match.group(1), props["title"], int(props["line"]), int(props["col"]))] += 1
    assert annotations == Counter(exp.findings)
    assert code == (0 if exp.warning_only else 1)


@pytest.mark.parametrize("exp", _params("text"))
def test_text_output_shows_line_caret_and_hint(capsys, exp):
    code, out, err = run_cli(capsys, "validate", str(exp.path))
    assert code == (0 if exp.warning_only else 1)
    lines = out.splitlines()
    source = exp.path.read_text(encoding="utf-8").splitlines()
    for severity, c, line, col in exp.findings:
        head = f"{exp.path}:{line}:{col}: {severity}[{c}]: "
        starts = [i for i, text in enumerate(lines) if text.startswith(head)]
        assert starts, f"no line starting with {head!r} in:\n{out}"
        block = lines[starts[0] + 1:]
        block = block[:block.index("")] if "" in block else block
        # the source line, after a gutter "  NN | "
        shown = block[0]
        assert re.match(rf"^\s*{line} \| ", shown), f"no source line for line {line}: {shown!r}"
        gutter = shown.index(" | ") + 3
        assert shown[gutter:] == source[line - 1].replace("\t", " ")
        # the caret line: only spaces between its gutter and a '^' under the column
        caret = block[1]
        assert caret[gutter - 2:gutter] == "| ", caret
        assert caret[gutter:gutter + col - 1].strip() == "", caret
        assert caret[gutter + col - 1] == "^", f"caret not under column {col}:\n{shown}\n{caret}"
        # a hint with some text
        hints = [text for text in block[2:] if text.strip().startswith("hint:")]
        assert hints and hints[0].split("hint:", 1)[1].strip(), f"no hint for {c}:\n" + "\n".join(block)
    for text in exp.texts:
        assert text in out
    for text in exp.forbidden:
        assert text not in out
    summary = lines[-1]
    n_errors = len(exp.errors)
    assert summary.startswith("failed:" if n_errors else "ok:")
    assert f"{n_errors} error(s), {len(exp.findings) - n_errors} warning(s)" in summary


WARNING_ONLY = [pytest.param(e, id=e.path.name) for e in EXPECTATIONS.values() if e.warning_only]


@pytest.mark.parametrize("exp", WARNING_ONLY)
def test_strict_turns_warnings_into_errors(capsys, exp):
    code, out, _ = run_cli(capsys, "validate", "--strict", "--format", "json", str(exp.path))
    assert code == 1
    found = json_findings(out)
    assert found == Counter(("error", c, line, col) for _s, c, line, col in exp.findings)


def test_whole_folder_in_one_run(capsys):
    code, out, _ = run_cli(capsys, "validate", "--format", "json", str(BROKEN))
    assert code == 1
    payload = json.loads(out)
    assert sorted(payload["files"]) == sorted(str(p) for p in CASES)
    assert payload["errors"] + payload["warnings"] == len(payload["diagnostics"])
    by_file: dict[str, Counter] = {str(p): Counter() for p in CASES}
    for d in payload["diagnostics"]:
        if d["span"] and d["span"]["file"] in by_file:
            by_file[d["span"]["file"]][(d["severity"], d["code"], d["span"]["line"], d["span"]["column"])] += 1
    for path in CASES:  # one run over the folder gives each file the findings it gives alone
        exp = EXPECTATIONS[path.name]
        if not exp.xfail:
            assert by_file[str(path)] == Counter(exp.findings), path.name


# -- a real process, for the entry points -------------------------------------------------------
def _clean_env():
    import os

    env = dict(os.environ)
    env.pop("EIGRAPH_DEBUG", None)
    env["NO_COLOR"] = "1"
    return env


def test_python_m_eigraph_cli_on_a_broken_model():
    exp = EXPECTATIONS["dale_normal_init.ei"]
    proc = subprocess.run([sys.executable, "-m", "eigraph.cli", "validate", str(exp.path)],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert proc.returncode == 1
    (_s, c, line, col), = exp.findings
    assert f"{exp.path}:{line}:{col}: error[{c}]" in proc.stdout
    assert "hint:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "\033[" not in proc.stdout  # not a terminal: no colour codes


def test_eigraph_script_strict_and_github():
    script = shutil.which("eigraph")
    if script is None:
        pytest.skip("the eigraph script is not on PATH")
    path = EXPECTATIONS["structure_unreachable.ei"].path
    proc = subprocess.run([script, "validate", str(path)], capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert proc.returncode == 0 and "warning[T406]" in proc.stdout
    proc = subprocess.run([script, "validate", "--strict", "--format", "github", str(path)],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert proc.returncode == 1
    assert re.search(rf"^::error file={re.escape(str(path))},line=8,col=12,.*title=T406.*::", proc.stdout, re.M)


# -- the reference of codes ----------------------------------------------------------------------
def test_every_code_is_documented():
    docs = (REPO / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    codes = set(re.findall(r'"([A-Z]\d{3})"', SOURCE))
    missing = sorted(c for c in codes if f"| {c} " not in docs)
    assert not missing, f"docs/diagnostics.md does not list {missing}"
