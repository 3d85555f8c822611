"""The benchmark scripts in tools/ still run end to end (tiny sizes, one timed round).

Speed is never asserted here (see the README): these only catch a script broken by a change to
the API it drives, and check that each one verified its implementations against eigraph.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_bench_runs_and_checks_agreement(tmp_path):
    out = tmp_path / "bench.json"
    done = run_tool(str(ROOT / "tools" / "bench.py"), "--quick", "--sizes", "40:2", "--repeats", "1",
                    "--threads", "1", "--json", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["n"], r["connectivity"]) for r in report["rows"]] == [(40, "dense"), (40, "sparse")]
    for row in report["rows"]:
        assert all(len(v) == 1 for v in row["times_s"].values())  # one round, every implementation
        assert set(row["times_s"]) >= {"eigraph", "floor", "numpy:split", "numpy:fused"}
        assert max(row["agreement"].values()) <= 1e-4  # every loop reproduced eigraph's rates
    assert "median wall time of one trial" in done.stdout


def test_bench_plastic_runs_and_checks_agreement(tmp_path):
    out = tmp_path / "plastic.json"
    done = run_tool(str(ROOT / "tools" / "bench_plastic.py"), "--sizes", "40:2", "--steps", "20", "--repeats", "1",
                    "--threads", "1", "--json", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert {(r["n"], r["connectivity"]) for r in rows} == {(40, "dense"), (40, "sparse")}
    assert all(r["max_rel_diff"] <= 1e-3 for r in rows)


def test_bench_hidden_runs_learned_and_frozen(tmp_path):
    """tools/bench_hidden.py on the small EIANN model, one seed, a few trials (the kernels are those
    tests/test_phases.py compiles)."""
    out = tmp_path / "hidden.json"
    done = run_tool(str(ROOT / "tools" / "bench_hidden.py"), "--models", "eiann_digits_small", "--seeds", "1",
                    "--trials", "20", "--json", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())["eiann_digits_small"]
    assert report["frozen_projections"] == ["Input.E->H1.E", "H1.E->H2.E"]
    assert len(report["learned"]) == len(report["frozen"]) == 1
    assert report["trial_ms"] > 0 and report["phases_alone_ms"] > 0
    assert "| eiann_digits_small |" in done.stdout
