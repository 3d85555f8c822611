"""``eigraph run``: a short training run improves its metric; --resume goes on exactly where an
interrupted run stopped; Ctrl-C leaves a readable checkpoint; bad input gives clear errors and an
existing results folder is never overwritten without --force."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import eigraph
from eigraph.cli import main
from eigraph.runtime.train import Stop, Trainer, plan_run, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
pytest.importorskip("sklearn", reason="the digits task reads scikit-learn's bundled data set")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["run", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return code, out, err


def history(folder: Path) -> list[dict]:
    with open(folder / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def weights(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "weights.npz") as data:
        return {k: data[k] for k in data.files}


# ------------------------------------------------------------------------ training improves
def test_decision_run_learns_and_writes_the_results_folder(capsys, tmp_path):
    out = tmp_path / "decision"
    code, stdout, err = run(capsys, MODELS / "decision.ei", "--trials", "400", "-o", out)
    assert code == 0, err
    assert f"results in {out}/" in stdout and "percent_correct" in stdout
    for name in ("metrics.json", "history.csv", "weights.npz", "records.npz", "model.ei", "checkpoint.npz",
                 "learning_curve.png", "activity_E.png", "activity_I.png", "weights.png", "psychometric.png"):
        assert (out / name).stat().st_size > 0, name
    rows = history(out)
    first, last = float(rows[0]["validation_percent_correct"]), float(rows[-1]["validation_percent_correct"])
    assert rows[0]["trials"] == "0" and first <= 60 and last >= 80
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["percent_correct"] >= 80 and metrics["trials"] == 400
    assert metrics["learning_rules"] == {"I->E": "vogels(eta = 1e-3, rho0 = 0.1)", "E->choice": "delta(eta = 1e-2)"}
    assert len(metrics["test"]["psychometric"]) == 10
    with np.load(out / "records.npz") as records:
        assert records["E.r"].shape == (120, 20, 80) and records["outputs"].shape == (120, 20, 2)
    assert set(weights(out)) == {"stim->E", "stim->I", "E->E", "E->I", "I->E", "I->I", "E->choice"}
    assert (out / "model.ei").read_text().count("population") == 4
    assert "[" in err and "trials/s" in err  # the progress bar


def test_digits_short_run_improves(capsys, tmp_path):
    out = tmp_path / "digits"
    code, stdout, err = run(capsys, MODELS / "digits_expansion.ei", "--trials", "2000", "-o", out, "--no-plots")
    assert code == 0, err
    rows = history(out)
    assert float(rows[0]["validation_accuracy"]) < 20 and float(rows[-1]["validation_accuracy"]) > 85
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] > 85


def test_forecast_run_beats_the_copy_last_value_baseline(capsys, tmp_path):
    out = tmp_path / "forecast"
    code, stdout, err = run(capsys, MODELS / "ngc_forecast.ei", "-o", out, "--no-plots")
    assert code == 0, err
    rows = history(out)
    assert float(rows[-1]["validation_rmse"]) < float(rows[0]["validation_rmse"])
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["rmse"] < test["baseline_rmse"] and test["beats_baseline"]
    assert "copy-last-value baseline" in stdout


def test_spirals_short_run_improves(capsys, tmp_path):
    out = tmp_path / "spirals"
    code, _, err = run(capsys, MODELS / "spirals_expansion.ei", "--trials", "20000", "-o", out, "--no-plots")
    assert code == 0, err
    rows = history(out)
    assert float(rows[0]["validation_accuracy"]) < 40 and float(rows[-1]["validation_accuracy"]) > 60


def test_data_task_trains_a_users_own_trials(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x = rng.random((300, 3))
    labels = (x[:, 0] > x[:, 1]).astype(np.int64)
    inputs = np.repeat(x[None], 2, axis=0)
    targets = np.repeat(np.eye(2)[labels][None], 2, axis=0)
    np.savez("trials.npz", inputs=inputs, targets=targets, labels=labels, mask=np.array([False, True]))
    Path("user.ei").write_text("""
network user { seed = 2 }
celltype In : unsigned input { activation = linear }
population x : In(3)
population y : readout(2)
x -> y : dense, init = constant(0), delay = 0 steps, learn = delta(eta = 0.5)
run { task = data("trials.npz"); inputs = x; targets = y; trials = 2000; batch = 10 }
""")
    code, stdout, err = run(capsys, "user.ei", "-o", "out", "--backend", "numpy", "--no-plots")
    assert code == 0, err
    rows = history(Path("out"))
    assert float(rows[-1]["validation_accuracy"]) > float(rows[0]["validation_accuracy"])
    assert json.loads(Path("out/metrics.json").read_text())["test"]["accuracy"] >= 85


# ------------------------------------------------------------------------ resume and Ctrl-C
def test_reset_state_starts_a_trial_but_keeps_weights_traces_and_noise():
    model = eigraph.load(MODELS / "ngc_forecast.ei")
    sim = model.compile(backend="numpy", batch=2)
    rest = {k: v.copy() for k, v in sim.state.items()}
    inputs = np.ones((30, 2, 1))
    sim.run(inputs, targets={"pred": np.ones((30, 2, 1))}, record=[])
    weights = {k: sim.weights[k] for k in sim.weights}
    traces = {k: v.copy() for k, v in sim.traces.items()}
    assert any(np.abs(v).sum() > 0 for v in traces.values())
    noise = sim.noise_rng.bit_generator.state
    sim.reset_state()
    assert sim.n == 0
    for key, value in rest.items():
        np.testing.assert_array_equal(sim.state[key], value, err_msg=key)
    for key, value in weights.items():
        np.testing.assert_array_equal(sim.weights[key], value, err_msg=key)
    for key, value in traces.items():
        np.testing.assert_array_equal(sim.traces[key], value, err_msg=key)
    assert sim.noise_rng.bit_generator.state == noise  # the noise stream goes on, it does not restart
    sim.reset_state(traces=True)
    assert all(np.abs(v).sum() == 0 for v in sim.traces.values())


def test_resume_goes_on_exactly_like_an_uninterrupted_run():
    model = eigraph.load(MODELS / "decision.ei")
    config = plan_run(model, trials=200, eval_every=40)
    whole = Trainer(model, config)
    assert whole.train() == "done"

    stop = Stop()
    first = Trainer(model, config)
    saved = {}

    def progress(t):
        if t.batches_done == 4:
            stop.requested = True

    def checkpoint(t):
        saved["arrays"] = t.checkpoint_arrays()

    assert first.train(stop=stop, progress=progress, checkpoint=checkpoint) == "interrupted"
    assert first.trials_done == 80
    path = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"eigraph-resume-{os.getpid()}.npz"
    try:
        np.savez(path, **saved["arrays"])
        second = Trainer(model, config)
        meta = second.load_checkpoint(path)
        assert meta["trials_done"] == 80
        assert second.train() == "done"
    finally:
        path.unlink(missing_ok=True)
    for name in whole.sim.weights:
        np.testing.assert_array_equal(second.sim.weights[name], whole.sim.weights[name], err_msg=name)
    strip = [{k: v for k, v in row.items() if k != "elapsed_s"} for row in whole.history]
    assert [{k: v for k, v in row.items() if k != "elapsed_s"} for row in second.history] == strip
    assert second.evaluate("test").scores == whole.evaluate("test").scores


def cli(*args, **kwargs) -> subprocess.Popen:
    """``eigraph run ARGS`` in a fresh process, as a user runs it."""
    return subprocess.Popen([sys.executable, "-m", "eigraph.cli", "run", *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, **kwargs)


def test_ctrl_c_writes_a_checkpoint_and_resume_finishes_identically(tmp_path):
    model, args = MODELS / "decision.ei", ["--trials", "3000", "--no-plots", "--checkpoint-every", "60"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    uninterrupted = cli(model, "-o", whole, *args)
    interrupted = cli(model, "-o", cut, *args)
    deadline = time.monotonic() + 120
    while not (cut / "checkpoint.npz").exists() and time.monotonic() < deadline and interrupted.poll() is None:
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGINT)
    _, stderr = interrupted.communicate(timeout=120)
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()
    if interrupted.returncode == 0:  # pragma: no cover - finished before the signal landed (a very fast machine)
        pytest.skip("the run finished before Ctrl-C arrived")
    assert interrupted.returncode == 130, stderr
    assert "interrupted after" in stderr and "--resume" in stderr and "Traceback" not in stderr, stderr
    meta = read_checkpoint(cut / "checkpoint.npz")  # readable, and part-way
    assert 0 < meta["trials_done"] < 3000
    assert not (cut / "metrics.json").exists()

    resumed = cli(model, "-o", cut, "--resume", *args)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, (err, stderr)
    assert f"resuming {cut}/checkpoint.npz at trial {meta['trials_done']}" in err
    a, b = weights(whole), weights(cut)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert json.loads((whole / "metrics.json").read_text())["test"] == json.loads((cut / "metrics.json").read_text())["test"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(history(whole)) == strip(history(cut))


# ------------------------------------------------------------------------ bad input
@pytest.fixture
def small(tmp_path, monkeypatch):
    """A folder with a few small decision-task models, as the current directory."""
    monkeypatch.chdir(tmp_path)

    def write(name, readout=2, task="decision", rule="delta(eta = 1e-2)", extra=""):
        Path(name).write_text(f"""
network {Path(name).stem} {{ dt = 10 ms; seed = 1 }}
population stim : input(3)
population E : E(10)
population out : readout({readout})
stim -> E : dense, init = uniform(0, 0.1)
E -> out : dense, init = constant(0), learn = {rule}
{extra}
run {{ task = {task}; inputs = stim; targets = out; trials = 40; batch = 4 }}
""")
        return name

    return write


def test_unknown_task_or_argument_on_the_command_line(capsys, small):
    model = small("m.ei")
    code, _, err = run(capsys, model, "--task", "decison")
    assert code == 2 and "unknown task 'decison'" in err and "did you mean 'decision'" in err
    code, _, err = run(capsys, model, "--task", "decision(cohrences = [0.1])")
    assert code == 2 and "has no parameter 'cohrences'" in err
    code, _, err = run(capsys, model, "--task", "spirals(arms = 1)")
    assert code == 2 and "arms must be" in err
    assert "Traceback" not in err and not Path("results").exists()


def test_unknown_task_in_the_model_is_a_model_error(capsys, small):
    code, _, err = run(capsys, small("m.ei", task="decisions"))
    assert code == 1 and "N108" in err and "unknown task 'decisions'" in err


def test_targets_population_that_does_not_match_the_task(capsys, small):
    code, _, err = run(capsys, small("m.ei", readout=3))
    assert code == 2
    assert "the decision task has 2 outputs (choice 1, choice 2), but the targets population out (3) has 3 neurons" in err
    code, _, err = run(capsys, small("d.ei"), "--task", "digits")
    assert code == 2 and "the digits task has 64 inputs" in err and "stim (3)" in err


def test_reward_and_target_rules_in_one_run_are_refused(capsys, small):
    """Reward-driven rules train (tests/test_reward.py), but not beside target-driven ones."""
    model = small("m.ei", extra="E -> E : dense, init = uniform(0, 0.1), learn = reward_hebb")
    code, _, err = run(capsys, model, "--backend", "numpy", "--no-plots")
    assert code == 2 and "rule 'reward_hebb' on E->E learns from the task's reward and rule 'delta' on E->out" in err
    assert "--freeze" in err and "Traceback" not in err and not Path("results").exists()


def test_data_file_with_wrong_shapes(capsys, small):
    np.savez("bad.npz", inputs=np.zeros((5, 4)), targets=np.zeros((5, 4, 2)))
    code, _, err = run(capsys, small("m.ei"), "--task", 'data("bad.npz")')
    assert code == 2 and "inputs must have 3 dimensions (time x trials x channels)" in err
    np.savez("wide.npz", inputs=np.zeros((5, 6, 4)), targets=np.zeros((5, 6, 2)))
    code, _, err = run(capsys, "m.ei", "--task", 'data("wide.npz")')
    assert code == 2 and "the data task has 4 inputs" in err


def test_output_folder_that_cannot_be_written(capsys, small):
    model = small("m.ei")
    Path("plain-file").write_text("x")
    code, _, err = run(capsys, model, "-o", "plain-file/results")
    assert code == 2 and "cannot write to 'plain-file/results'" in err
    code, _, err = run(capsys, model, "-o", "plain-file")
    assert code == 2 and "is not a folder" in err
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere
        Path("locked").mkdir(mode=0o500)
        code, _, err = run(capsys, model, "-o", "locked/out")
        assert code == 2 and "cannot write" in err


def test_existing_results_are_never_overwritten_without_force(capsys, small):
    model = small("m.ei")
    code, _, err = run(capsys, model, "-o", "out", "--backend", "numpy", "--no-plots")
    assert code == 0, err
    before = {p.name: p.stat().st_mtime_ns for p in Path("out").iterdir()}
    code, _, err = run(capsys, model, "-o", "out", "--backend", "numpy", "--no-plots")
    assert code == 2 and "already holds results; pass --force" in err
    assert {p.name: p.stat().st_mtime_ns for p in Path("out").iterdir()} == before
    Path("mine").mkdir()
    (Path("mine") / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, model, "-o", "mine", "--backend", "numpy", "--no-plots")
    assert code == 2 and (Path("mine") / "notes.txt").read_text() == "keep me"
    code, _, err = run(capsys, model, "-o", "out", "--backend", "numpy", "--no-plots", "--force")
    assert code == 0, err


def test_resume_needs_a_checkpoint_of_the_same_run(capsys, small):
    model = small("m.ei")
    code, _, err = run(capsys, model, "-o", "fresh", "--resume")
    assert code == 2 and "holds no checkpoint.npz" in err
    code, _, err = run(capsys, model, "-o", "out", "--backend", "numpy", "--no-plots")
    assert code == 0, err
    code, _, err = run(capsys, model, "-o", "out", "--backend", "numpy", "--no-plots", "--resume", "--seed", "9")
    assert code == 2 and "--seed 9 (the run was started with 1)" in err
    Path("out/checkpoint.npz").write_bytes(b"garbage")
    code, _, err = run(capsys, model, "-o", "out", "--resume")
    assert code == 2 and "cannot read the checkpoint" in err
