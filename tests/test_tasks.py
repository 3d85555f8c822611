"""The built-in tasks of ``eigraph run`` against their documented structure (docs/tasks.md):
shapes, epochs, coherence sets, catch-trial rates, label balance, splits, metrics; and the clear
errors for unknown tasks, bad arguments and bad data files."""

from __future__ import annotations

import numpy as np
import pytest

from eigraph.runtime.tasks import TaskError, make_task, parse_task
from eigraph.runtime.tasks.decision import HI, LO

pytest.importorskip("sklearn", reason="the digits task reads scikit-learn's bundled data set")


def task(text: str, seed: int = 0, dt: float | None = 0.01, steps: int | None = None):
    return make_task(parse_task(text), seed, dt, steps)


# ------------------------------------------------------------------------------------ digits
def test_digits_split_is_fixed_stratified_and_disjoint():
    t = task("digits", steps=3)
    sizes = t.sizes
    assert sum(sizes.values()) == 1797
    assert sizes["train"] == pytest.approx(0.6 * 1797, abs=10) and sizes["test"] == pytest.approx(0.2 * 1797, abs=10)
    labels = {name: y for name, (_, y) in t.data.items()}
    for name, y in labels.items():  # every class keeps its share in every part
        counts = np.bincount(y, minlength=10)
        share = counts / counts.sum()
        assert np.all(np.abs(share - 0.1) < 0.012), (name, counts)
    rows = {name: {x.tobytes() for x in xs} for name, (xs, _) in t.data.items()}
    assert not rows["train"] & rows["test"] and not rows["validation"] & rows["test"]
    # the split does not depend on the run seed; the order of the training images does
    other = task("digits", seed=99, steps=3)
    np.testing.assert_array_equal(other.data["test"][0], t.data["test"][0])
    assert not np.array_equal(other.train_batch(0, 16).inputs, t.train_batch(0, 16).inputs)


def test_digits_trials_hold_the_image_and_score_the_last_step():
    t = task("digits", steps=4)
    trials = t.train_batch(0, 8)
    assert trials.inputs.shape == (4, 8, 64) and trials.targets.shape == (4, 8, 10)
    assert 0 <= trials.inputs.min() and trials.inputs.max() <= 1
    assert np.all(trials.inputs == trials.inputs[:1])  # held for every step
    assert trials.mask[-1].all() and not trials.mask[:-1].any()
    np.testing.assert_array_equal(trials.targets[-1].argmax(axis=1), trials.conditions["label"])
    assert np.all(trials.targets.sum(axis=2) == 1)
    assert t.score(trials, trials.targets)["accuracy"] == 100.0


def test_dataset_training_stream_visits_every_training_image_once_per_epoch():
    t = task("digits", steps=1)
    n = t.sizes["train"]
    batch = 7
    seen = np.concatenate([t.train_batch(i, batch).inputs[0] for i in range(-(-n // batch))])[:n]
    keys = sorted(x.tobytes() for x in seen)
    assert keys == sorted(x.tobytes() for x in t.data["train"][0])
    # a function of (seed, batch number): asking again gives the same batch
    np.testing.assert_array_equal(t.train_batch(5, batch).inputs, task("digits", steps=1).train_batch(5, batch).inputs)


# ------------------------------------------------------------------------------------ spirals
def test_spirals_follow_eiann_generator():
    t = task("spirals(noise = 0)", steps=1)
    assert t.n_in == 2 and t.n_out == 4  # EIANN's default: 4 arms
    x, y = t.data["train"]
    assert len(x) == 4 * 1400 and np.all(np.bincount(y) == 1400)
    assert len(t.data["validation"][0]) == len(t.data["test"][0]) == 4 * 300
    tt = np.linspace(0, 1, 1400)
    for arm in range(4):
        angle = 2 * np.pi / 4 * (2 * tt + arm)
        np.testing.assert_allclose(x[y == arm], np.stack([tt * np.sin(angle), tt * np.cos(angle)], 1), atol=1e-12)
    noisy = task("spirals(arms = 3, points = 100, noise = 0.16)", steps=2)
    assert noisy.n_out == 3 and np.all(np.bincount(noisy.data["train"][1]) == 70)
    assert not np.array_equal(noisy.data["train"][0], noisy.data["test"][0][:len(noisy.data["train"][0])])


# ------------------------------------------------------------------------------------ decision
def test_decision_epochs_follow_dt():
    t = task("decision")
    assert t.epochs == {"fixation": (0, 10), "stimulus": (10, 90), "decision": (90, 120)}
    t5 = task("decision", dt=0.005)
    assert t5.epochs == {"fixation": (0, 20), "stimulus": (20, 180), "decision": (180, 240)}
    with pytest.raises(TaskError, match="needs a time step"):
        task("decision", dt=None)
    with pytest.raises(TaskError, match="remove steps"):
        task("decision", steps=50)


def test_decision_coherences_catch_rate_and_balance():
    coherences = [0.032, 0.064, 0.128, 0.256, 0.512]
    t = task("decision(coherences = [0.032, 0.064, 0.128, 0.256, 0.512])")
    assert t.catch == pytest.approx(1 / 11)  # pycog: one catch trial per set of 10 conditions
    batches = [t.train_batch(i, 200) for i in range(40)]
    catch = np.concatenate([b.conditions["catch"] for b in batches])
    n = len(catch)
    assert abs(catch.mean() - 1 / 11) < 4 * np.sqrt((1 / 11) * (10 / 11) / n)
    coherence = np.concatenate([b.conditions["coherence"] for b in batches])[~catch]
    choice = np.concatenate([b.conditions["choice"] for b in batches])[~catch]
    assert set(np.round(coherence, 6)) == set(coherences)
    assert abs(choice.mean() - 0.5) < 4 * np.sqrt(0.25 / len(choice))
    assert np.all(np.concatenate([b.conditions["choice"] for b in batches])[catch] == -1)
    # the held-out sets are balanced grids: every (coherence, choice) equally often, catch trials apart
    test = t.split("test")
    live = ~test.conditions["catch"]
    pairs, counts = np.unique(np.stack([test.conditions["coherence"][live], test.conditions["choice"][live]]),
                              axis=1, return_counts=True)
    assert pairs.shape[1] == 10 and np.all(counts == counts[0])
    assert (~live).sum() == counts[0]
    assert task("decision(catch = 0.25)").catch == 0.25


def test_decision_inputs_targets_and_mask():
    t = task("decision(coherences = [0.5], noise = 0)")
    trials = t.train_batch(0, 64)
    cond = trials.conditions
    live = ~cond["catch"]
    assert trials.inputs.shape == (120, 64, 3) and trials.targets.shape == (120, 64, 2)
    fix, stim, dec = (slice(*t.epochs[k]) for k in ("fixation", "stimulus", "decision"))
    assert np.all(trials.inputs[fix, :, 0] == 1) and np.all(trials.inputs[stim, :, 0] == 1)
    assert np.all(trials.inputs[dec, :, 0] == 0)  # the fixation cue goes off: the go signal
    for b in np.flatnonzero(live):
        k = cond["choice"][b]
        assert np.all(trials.inputs[stim, b, 1 + k] == 0.75) and np.all(trials.inputs[stim, b, 2 - k] == 0.25)
        assert np.all(trials.inputs[dec, b, 1:] == 0) and np.all(trials.inputs[fix, b, 1:] == 0)
        assert np.all(trials.targets[dec, b, k] == HI) and np.all(trials.targets[dec, b, 1 - k] == LO)
    assert np.all(trials.inputs[:, ~live, 1:] == 0)  # catch trials: no stimulus
    assert np.all(trials.targets[:, ~live] == LO) and np.all(trials.targets[fix] == LO)
    assert np.all(trials.mask[fix][:, live]) and np.all(trials.mask[dec][:, live])
    assert not trials.mask[stim][:, live].any() and np.all(trials.mask[:, ~live])
    # input noise: standard deviation noise * sqrt(2 tau / dt) per step
    noisy = task("decision(noise = 0.01)").train_batch(0, 64).inputs[dec, :, 1]
    assert noisy.std() == pytest.approx(0.01 * np.sqrt(2 * 0.1 / 0.01), rel=0.1)


def test_decision_metric_excludes_catch_trials_and_gives_the_psychometric_curve():
    t = task("decision")
    trials = t.split("validation")
    perfect = t.score(trials, trials.targets)
    assert perfect["percent_correct"] == 100.0 and perfect["trials"] == (~trials.conditions["catch"]).sum()
    flipped = t.score(trials, trials.targets[..., ::-1])
    assert flipped["percent_correct"] == 0.0
    curve = perfect["psychometric"]
    assert [p["coherence"] for p in curve] == sorted(p["coherence"] for p in curve) and len(curve) == 10
    assert [p["percent_choice_1"] for p in curve] == [0.0] * 5 + [100.0] * 5


# ------------------------------------------------------------------------------------ context
def test_context_task_structure():
    t = task("context")
    assert (t.n_in, t.n_out) == (6, 2) and t.catch == pytest.approx(1 / 73)
    trials = t.split("validation")
    cond = trials.conditions
    live = ~cond["catch"]
    relevant = np.where(cond["context"] == 0, cond["motion_side"], cond["colour_side"])
    np.testing.assert_array_equal(cond["choice"][live], relevant[live])
    # every context, coherence pair and side combination equally often (72 conditions)
    keys = np.stack([cond[k][live] for k in ("context", "motion", "motion_side", "colour", "colour_side")])
    _, counts = np.unique(keys, axis=1, return_counts=True)
    assert len(counts) == 72 and np.all(counts == counts[0])
    clean = task("context(noise = 0)").train_batch(0, 32)
    stim = slice(*t.epochs["stimulus"])
    for b in np.flatnonzero(~clean.conditions["catch"]):
        c = clean.conditions
        assert np.all(clean.inputs[stim, b, c["context"][b]] == 1) and np.all(clean.inputs[stim, b, 1 - c["context"][b]] == 0)
        assert np.all(clean.inputs[stim, b, 2 + c["motion_side"][b]] == (1 + c["motion"][b]) / 2)
        assert np.all(clean.inputs[stim, b, 4 + c["colour_side"][b]] == (1 + c["colour"][b]) / 2)
    assert t.score(trials, trials.targets)["percent_correct"] == 100.0


# ------------------------------------------------------------------------------------ forecast
def test_forecast_is_next_step_prediction_of_a_noisy_sine():
    t = task("forecast")
    trials = t.train_batch(0, 4)
    assert trials.inputs.shape == (1000, 4, 1) and trials.targets.shape == (1000, 4, 1)
    np.testing.assert_array_equal(trials.inputs[1:], trials.targets[:-1])  # the target is the next input
    clean = trials.conditions["clean_next"].T
    k = np.arange(1, 1001)[:, None]  # ngc-learn's series: linspace(0, 10, 1000), 10 / 999 rad per step
    np.testing.assert_allclose(clean, np.sin(trials.conditions["phase"][None, :] + 10 / 999 * k), atol=1e-12)
    residual = trials.targets[..., 0] - clean
    assert residual.std() == pytest.approx(0.025, rel=0.05)
    assert not trials.mask[:50].any() and trials.mask[50:].all()
    test = t.split("test")
    scores = t.score(test, test.inputs)  # predicting the last value is the baseline itself
    assert scores["rmse"] == scores["baseline_rmse"] == pytest.approx(0.036, abs=0.002)
    oracle = t.score(test, test.conditions["clean_next"].T[..., None])
    assert oracle["rmse"] == pytest.approx(0.025, abs=0.001) and oracle["beats_baseline"]
    assert task("forecast", steps=300).train_batch(0, 1).inputs.shape == (300, 1, 1)
    with pytest.raises(TaskError, match="unknown signal"):
        task("forecast(signal = square)")
    with pytest.raises(TaskError, match="washout"):
        task("forecast(washout = 2000)")


# ------------------------------------------------------------------------------------ data
def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_data_task_reads_checks_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    inputs, targets = rng.random((5, 40, 3)), rng.random((5, 40, 2))
    labels = rng.integers(0, 2, 40)
    t = task(f'data("{write(tmp_path / "ok.npz", inputs=inputs, targets=targets, labels=labels, mask=np.arange(5) >= 2)}")')
    assert (t.n_in, t.n_out, t.metric) == (3, 2, "accuracy")
    parts = {k: set(v) for k, v in t.parts.items()}
    assert sum(map(len, parts.values())) == 40 and not parts["train"] & parts["test"]
    batch = t.train_batch(0, 8)
    assert batch.inputs.shape == (5, 8, 3) and np.all(batch.mask[2:]) and not batch.mask[:2].any()
    plain = task(f'data("{write(tmp_path / "plain.npz", inputs=inputs, targets=targets)}")')
    assert plain.metric == "rmse" and not plain.higher_is_better and plain.train_batch(0, 4).mask.all()


@pytest.mark.parametrize("arrays, message", [
    ({"inputs": np.zeros((5, 4))}, "has no array 'targets'"),
    ({"inputs": np.zeros((5, 4)), "targets": np.zeros((5, 4, 1))}, "inputs must have 3 dimensions"),
    ({"inputs": np.zeros((5, 4, 2)), "targets": np.zeros((6, 4, 1))}, "same time and trials"),
    ({"inputs": np.zeros((5, 4, 2)), "targets": np.full((5, 4, 1), np.nan)}, "NaN"),
    ({"inputs": np.zeros((5, 4, 2)), "targets": np.zeros((5, 4, 1)), "mask": np.ones((4, 5))}, "mask must have shape"),
    ({"inputs": np.zeros((5, 4, 2)), "targets": np.zeros((5, 4, 2)), "labels": np.array([0, 1, 2, 0])},
     "class indices from 0 to 1"),
    ({"inputs": np.zeros((5, 4, 2)), "targets": np.zeros((5, 4, 1)), "extra": np.zeros(3)}, "does not know: extra"),
    ({"inputs": np.array([["a"]]), "targets": np.zeros((5, 4, 1))}, "must hold numbers"),
    ({"inputs": np.zeros((5, 2, 2)), "targets": np.zeros((5, 2, 1))}, "at least 3 are needed"),
])
def test_data_file_errors_are_clear(tmp_path, arrays, message):
    path = write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TaskError, match=message):
        task(f'data("{path}")')


def test_data_file_that_is_missing_or_not_npz(tmp_path):
    with pytest.raises(TaskError, match="does not exist"):
        task(f'data("{tmp_path / "nope.npz"}")')
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(TaskError, match="single array"):
        task(f'data("{tmp_path / "one.npy"}")')
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(TaskError, match="cannot read"):
        task(f'data("{tmp_path / "text.npz"}")')


# ------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("text, message", [
    ("decison", "unknown task 'decison'.*did you mean 'decision'"),
    ("decision(cohrences = [0.1])", "has no parameter 'cohrences'"),
    ("spirals(arms = 3", "syntax error"),
    ("data", "needs file"),
    ("data(file = x)", "is a string"),
])
def test_unknown_tasks_and_arguments(text, message):
    with pytest.raises(TaskError, match=message):
        parse_task(text)


@pytest.mark.parametrize("text, message", [
    ("spirals(arms = 1)", "arms must be a whole number from 2"),
    ("decision(coherences = [0, 0.5])", "outside"),
    ("decision(catch = 1)", "catch-trial probability"),
    ("forecast(noise = -1)", "noise must be between"),
])
def test_bad_task_arguments(text, message):
    with pytest.raises(TaskError, match=message):
        task(text)


def test_neurogym_without_the_package_says_how_to_install_it():
    try:
        import neurogym  # noqa: F401
    except ImportError:
        with pytest.raises(TaskError, match="pip install neurogym"):
            task('neurogym(name = "PerceptualDecisionMaking-v0")')
    else:  # pragma: no cover - with the extra installed: the adapter makes trials
        t = task('neurogym(name = "PerceptualDecisionMaking-v0")', dt=0.1)
        trials = t.train_batch(0, 4)
        assert trials.inputs.shape[1:] == (4, t.n_in) and trials.targets.shape[2] == t.n_out
