"""Reward-driven learning (issue 12): the tasks' rewards and trial types, the reward baseline,
``reward_baseline`` in rules, the prelude's ``node_perturbation`` (Miconi 2017), and ``eigraph run``
training reward-driven rules with the exact trial-end reward (docs/runtime.md, rewards).

- Each built-in task's reward on constructed outputs, against numbers worked out by hand, and
  its trial types.
- The running baseline per trial type (and over every trial), by hand.
- ``reward_baseline`` and ``node_perturbation`` by hand: a 2-unit network, 3 steps, batch 2, every
  trace and weight in plain floats, on both backends (the file's one Numba compile).
- The trainer's rewarded trial: the outputs it records are those of the same trial run without
  learning from the same state (the last-step probe and replay are exact), the weights change
  only at the trial's end, by the rule with the task's reward of those outputs and the baseline.
- Refusals, validate's R615, a checkpoint round trip with the baselines, and ``eigraph run``.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

import eigraph
from eigraph.runtime.errors import InputError
from eigraph.runtime.tasks import TaskError, Trials, make_task
from eigraph.runtime.train import Stop, Trainer, plan_run


def load(tmp_path: Path, name: str, text: str):
    (tmp_path / name).write_text(text)
    with contextlib.chdir(tmp_path):
        model = eigraph.load(name)
    assert not model.errors, model.errors
    return model


# ------------------------------------------------------------------------------------------------
# the tasks' rewards and trial types
# ------------------------------------------------------------------------------------------------
def epoch_trials(conditions: dict) -> Trials:
    """4 trials of 6 steps, the decision epoch the last 2 steps (rewards read only that)."""
    batch = len(conditions["catch"])
    return Trials(np.zeros((6, batch, 3)), np.zeros((6, batch, 2)), np.ones((6, batch), dtype=bool),
                  {"fixation": (0, 1), "stimulus": (1, 4), "decision": (4, 6)}, conditions)


def decision_outputs() -> np.ndarray:
    """Outputs (6 steps, 4 trials, 2 choices). Over the decision epoch (steps 4, 5) trial 0 chooses
    0 (means 0.8 vs 0.2), trial 1 chooses 0, trial 2 (a catch trial) chooses 1, trial 3 chooses 1
    (0.6 vs 0.4), although it favours choice 0 on every step before the decision epoch."""
    out = np.zeros((6, 4, 2))
    out[:4, :, 0] = 5.0  # before the decision epoch: choice 0 everywhere (must not count)
    out[4:, 0] = [[0.9, 0.1], [0.7, 0.3]]
    out[4:, 1] = [[0.9, 0.1], [0.7, 0.3]]
    out[4:, 2] = [[0.0, 1.0], [0.0, 1.0]]
    out[4:, 3] = [[0.2, 0.7], [0.6, 0.1]]  # means 0.4 vs 0.4 ... see below
    out[5, 3] = [0.6, 0.5]  # means (0.2 + 0.6) / 2 = 0.4 vs (0.7 + 0.5) / 2 = 0.6: choice 1
    return out


def test_decision_reward_is_one_for_a_correct_choice_and_zero_otherwise():
    task = make_task({"name": "decision", "args": {}}, seed=0, dt=0.01)
    conditions = {"catch": np.array([False, False, True, False]), "coherence": np.array([0.032, 0.512, 0.0, 0.128]),
                  "choice": np.array([0, 1, -1, 1])}
    # trial 0: chose 0, correct 0 -> 1; trial 1: chose 0, correct 1 -> 0; trial 2: catch -> 0
    # (no correct choice); trial 3: chose 1 over the decision epoch, correct 1 -> 1
    reward = task.reward(epoch_trials(conditions), decision_outputs())
    np.testing.assert_array_equal(reward, [1.0, 0.0, 0.0, 1.0])
    assert reward.dtype == np.float64
    assert task.trial_types(epoch_trials(conditions)) == [
        "catch=False,coherence=0.032,choice=0", "catch=False,coherence=0.512,choice=1",
        "catch=True,coherence=0,choice=-1", "catch=False,coherence=0.128,choice=1"]


def test_context_reward_follows_the_context_and_types_name_every_condition():
    task = make_task({"name": "context", "args": {}}, seed=0, dt=0.01)
    # the context decides: trial 0 in the motion context (motion says 0), trial 1 in the colour
    # context (colour says 1), trial 2 a catch trial, trial 3 in the colour context (colour says 0)
    conditions = {"catch": np.array([False, False, True, False]), "context": np.array([0, 1, 0, 1]),
                  "motion": np.array([0.5, 0.05, 0.0, 0.15]), "motion_side": np.array([0, 0, 0, 1]),
                  "colour": np.array([0.15, 0.5, 0.0, 0.05]), "colour_side": np.array([1, 1, 0, 0]),
                  "choice": np.array([0, 1, -1, 0])}
    # choices from decision_outputs: 0, 0, 1, 1 -> correct, wrong, catch, wrong
    np.testing.assert_array_equal(task.reward(epoch_trials(conditions), decision_outputs()), [1.0, 0.0, 0.0, 0.0])
    assert task.trial_types(epoch_trials(conditions))[1] == \
        "catch=False,context=1,motion=0.05,motion_side=0,colour=0.5,colour_side=1"
    assert len(set(task.trial_types(task.split("validation")))) == 2 * (2 * 3) ** 2 + 1  # 72 stimuli + catch


def test_forecast_reward_is_minus_the_masked_mean_squared_error():
    task = make_task({"name": "forecast", "args": {"washout": 1}}, seed=0, dt=0.01, steps=3)
    targets = np.array([[0.0, 1.0], [0.5, -0.5], [1.0, 0.0]])[:, :, None]  # (3 steps, 2 trials, 1)
    outputs = np.array([[9.0, 9.0], [0.0, 0.0], [0.5, 0.5]])[:, :, None]  # step 0 is the washout
    mask = np.array([[False, False], [True, True], [True, True]])
    trials = Trials(np.zeros((3, 2, 1)), targets, mask, {}, {"phase": np.zeros(2)})
    # trial 0: ((0.5 - 0)^2 + (1 - 0.5)^2) / 2 = 0.25; trial 1: ((-0.5)^2 + (0 - 0.5)^2) / 2 = 0.25
    # with a different output on trial 1's last step: ((-0.5)^2 + (0 - 2)^2) / 2 = 2.125
    np.testing.assert_allclose(task.reward(trials, outputs), [-0.25, -0.25], rtol=0, atol=1e-15)
    outputs[2, 1, 0] = 2.0
    np.testing.assert_allclose(task.reward(trials, outputs), [-0.25, -2.125], rtol=0, atol=1e-15)
    # a real batch: the same as the score's squared error over the masked steps, trial by trial
    batch = task.train_batch(0, 2)
    guess = np.zeros_like(batch.targets)
    want = [-np.mean(batch.targets[1:, b, 0] ** 2) for b in range(2)]
    np.testing.assert_allclose(task.reward(batch, guess), want, rtol=1e-14)
    assert task.trial_types(batch) == ["all", "all"]


def test_data_reward_averages_outputs_and_masked_steps_and_types_are_labels(tmp_path):
    # 2 steps, 4 trials, 2 outputs; the mask counts step 1 only (and step 0 of trial 0)
    targets = np.zeros((2, 4, 2))
    targets[:, :, 0] = 1.0
    mask = np.array([[True, False, False, False], [True, True, True, True]])
    np.savez(tmp_path / "t.npz", inputs=np.zeros((2, 4, 1)), targets=targets, mask=mask, labels=[0, 1, 0, 1])
    with contextlib.chdir(tmp_path):
        task = make_task({"name": "data", "args": {"file": "t.npz"}}, seed=0)
    trials = task.all
    outputs = np.zeros((2, 4, 2))
    outputs[1, 1] = [1.0, 1.0]  # trial 1: errors (0, 1) -> mean 0.5 over the outputs
    outputs[0, 0] = [3.0, 0.0]  # trial 0, step 0 counts: errors (2, 0) -> 2; step 1: (1, 0) -> 0.5
    outputs[0, 2] = [3.0, 3.0]  # trial 2, step 0 does not count; step 1: (1, 0) -> 0.5
    # trial 0: (2 + 0.5) / 2 = 1.25; trials 1, 2, 3: 0.5 at their one counted step
    np.testing.assert_allclose(task.reward(trials, outputs), [-1.25, -0.5, -0.5, -0.5], rtol=0, atol=1e-15)
    assert task.trial_types(trials) == ["label=0", "label=1", "label=0", "label=1"]
    np.savez(tmp_path / "u.npz", inputs=np.zeros((2, 4, 1)), targets=targets)  # no labels: one type
    with contextlib.chdir(tmp_path):
        plain = make_task({"name": "data", "args": {"file": "u.npz"}}, seed=0)
    assert plain.trial_types(plain.all) == ["all"] * 4


def test_digits_reward_is_minus_the_last_step_error_and_types_are_the_digits():
    pytest.importorskip("sklearn", reason="the digits task reads scikit-learn's bundled data set")
    task = make_task({"name": "digits", "args": {}}, seed=0, steps=2)
    trials = task.train_batch(0, 3)
    labels = trials.conditions["label"]
    outputs = np.zeros((2, 3, 10))
    outputs[0] = 7.0  # the first step does not count (static trials: the target on the last step)
    outputs[1, 0, labels[0]] = 1.0  # trial 0 exact: 0
    outputs[1, 2, (labels[2] + 1) % 10] = 1.0  # trial 2: two outputs off by 1: 2 / 10
    # trial 1: all 0, the class's output off by 1: 1 / 10
    np.testing.assert_allclose(task.reward(trials, outputs), [0.0, -0.1, -0.2], rtol=0, atol=1e-15)
    assert task.trial_types(trials) == [f"label={k}" for k in labels]


# ------------------------------------------------------------------------------------------------
# a tiny forecast model for the trainer: node_perturbation on E -> E, reward_hebb on y -> E
# ------------------------------------------------------------------------------------------------
FORECAST = """\
network fc {{ dt = 10 ms; seed = 4; precision = float64 }}
celltype S : excitatory {{ tau = 20 ms; activation = tanh }}
population y   : input(1)
population E   : S(5) {{ noise = 0.2 }}
population out : readout(1)
y -> E   : dense, init = uniform(0.2, 1), learn = reward_hebb(eta = 0.5, tau_e = 20 ms)
E -> E   : dense, init = uniform(0, 0.3), learn = node_perturbation(eta = 20, tau_x = 10 ms, max_dw = {max_dw}{extra})
E -> out : dense, init = uniform(0, 0.5)
run {{ task = forecast(washout = 2); inputs = y; targets = out; steps = 12; batch = 3; trials = 12 }}
"""


def forecast_model(tmp_path, name="fc.ei", max_dw="0.01", extra=""):
    return load(tmp_path, name, FORECAST.format(max_dw=max_dw, extra=extra))


def test_baselines_by_hand_per_type_and_over_every_trial(tmp_path):
    """R_bar <- R_bar + (R - R_bar) / 4, trial by trial in batch order; the first reward of a type
    starts its mean, and before that a trial's baseline is its own reward (no prediction error)."""
    trainer = Trainer(forecast_model(tmp_path), plan_run(forecast_model(tmp_path), backend="numpy"))
    assert trainer.baseline == (4.0, True)  # node_perturbation's defaults: 4 trials, per type
    types = ["a", "b", "a", "a"]
    assert np.isnan(trainer.baseline_of(types)).all()
    trainer.update_baselines(types, np.array([1.0, 0.0, 0.0, 1.0]))
    # a: 1 -> 1 + (0 - 1) / 4 = 0.75 -> 0.75 + (1 - 0.75) / 4 = 0.8125; b: 0
    assert trainer.baselines == {"a": 0.8125, "b": 0.0}
    np.testing.assert_array_equal(trainer.baseline_of(["b", "c", "a"]), [0.0, np.nan, 0.8125])
    trainer.update_baselines(["b", "c"], np.array([1.0, 0.5]))
    assert trainer.baselines == {"a": 0.8125, "b": 0.25, "c": 0.5}

    shared = forecast_model(tmp_path, "fc_all.ei", extra=", baseline_per_type = 0, baseline_trials = 2")
    trainer = Trainer(shared, plan_run(shared, backend="numpy"))
    assert trainer.baseline == (2.0, False)
    trainer.update_baselines(["a", "b", "a"], np.array([1.0, 0.0, 0.5]))
    # one mean: 1 -> 1 + (0 - 1) / 2 = 0.5 -> 0.5 + (0.5 - 0.5) / 2 = 0.5
    assert trainer.baselines == {"all": 0.5}
    np.testing.assert_array_equal(trainer.baseline_of(["x", "a"]), [0.5, 0.5])


# ------------------------------------------------------------------------------------------------
# reward_baseline and node_perturbation by hand
# ------------------------------------------------------------------------------------------------
HAND = """\
network np_hand { dt = 10 ms; precision = float64 }
celltype H : excitatory { tau = 20 ms; activation = tanh }
population u : input(1)
population h : H(2)
u -> h : dense, learn = rpe_pre(eta = 0.5)
h -> h : dense, autapses = true, learn = node_perturbation(eta = 2, tau_x = 20 ms, max_dw = 0.05)
rule rpe_pre(eta = 0.1) {
    dw = eta * pre * (reward - reward_baseline)
}
"""
W_IN = [1.0, 0.5]
W_REC = [[0.5, 0.2], [0.1, 0.4]]
U = [1.0, 0.3, 1.5]
REWARD = [[0.2, 0.0], [-0.1, 0.3], [1.0, -0.5]]  # [step][batch element]
BASELINE = [[0.5, 0.0], [0.0, 0.1], [0.25, 0.0]]


def by_hand():
    """3 steps in one call (one trial) from the equations, in plain floats. Both batch elements get
    the same input, so they share the state; only their rewards differ. dt / tau = 0.5, dt / tau_x
    = 0.5; pre of u -> h is this step's u (delay 0), of h -> h the rate at the step's start:
      x_i     <- x_i + 0.5 * (-x_i + Win_i * u + sum_j W_ij r_j)
      rpe_pre (on step): Win_i += mean_b 0.5 * u * (R_b - Rbar_b)
      node_perturbation (on trial): elig_ij += (r_j * (x_i - xbar_i))^3   (xbar before this step)
                                    xbar_i  += 0.5 * (x_i - xbar_i)
      at the trial's end: W_ij += mean_b clip(2 * elig_ij * (R_b - Rbar_b), -0.05, 0.05)
    (sign = +1; the Dale clip at 0 is not reached). At the end batch element 0 has R - Rbar = 0.75
    and element 1 -0.5: 2 * 0.75 * elig_00 = 0.067 is clipped to 0.05, -0.045 is not."""
    x, r = [0.0, 0.0], [0.0, 0.0]
    w_in, w = W_IN[:], [row[:] for row in W_REC]
    elig, xbar = [[0.0, 0.0], [0.0, 0.0]], [0.0, 0.0]
    steps = []
    for n in range(3):
        x = [x[i] + 0.5 * (-x[i] + w_in[i] * U[n] + w[i][0] * r[0] + w[i][1] * r[1]) for i in range(2)]
        elig = [[elig[i][j] + (r[j] * (x[i] - xbar[i])) ** 3 for j in range(2)] for i in range(2)]
        xbar = [xbar[i] + 0.5 * (x[i] - xbar[i]) for i in range(2)]
        rpe = [REWARD[n][b] - BASELINE[n][b] for b in range(2)]
        w_in = [max(w_in[i] + 0.5 * U[n] * (rpe[0] + rpe[1]) / 2, 0.0) for i in range(2)]
        if n == 2:
            def clip(v):
                return min(max(v, -0.05), 0.05)
            w = [[max(w[i][j] + (clip(2 * elig[i][j] * rpe[0]) + clip(2 * elig[i][j] * rpe[1])) / 2, 0.0)
                  for j in range(2)] for i in range(2)]
        r = [math.tanh(v) for v in x]
        steps.append({"x": x, "elig": elig, "xbar": xbar, "Win": w_in, "W": w})
    return steps


# The same numbers written out (from by_hand, checked against it below): elig stays 0 on step 0
# (no presynaptic rate yet); the recurrent weights change only at the end of the trial.
EXPECTED = [
    {"x": [0.5, 0.25], "elig": [[0.0, 0.0], [0.0, 0.0]], "xbar": [0.25, 0.125], "Win": [0.925, 0.425],
     "W": W_REC},
    {"x": [0.5287711555553734, 0.2608395903437423],
     "elig": [[0.002137961032114384, 0.00031827984851699043], [0.00024736335852834656, 3.682516710942741e-05]],
     "xbar": [0.3893855777776867, 0.19291979517187116], "Win": [0.9325, 0.4325], "W": W_REC},
    {"x": [1.1103789428279447, 0.5300329873464587],
     "elig": [[0.04474849786578594, 0.006538795838857918], [0.004602987992166144, 0.0006726827435400637]],
     "xbar": [0.7498822603028157, 0.36147639125916486], "Win": [1.02625, 0.52625],
     "W": [[0.502625751067107, 0.2016346989597145], [0.10115074699804154, 0.40016817068588506]]},
]


def test_the_written_numbers_are_the_equations():
    for step, (got, want) in enumerate(zip(by_hand(), EXPECTED)):
        for key in want:
            np.testing.assert_allclose(np.array(got[key], dtype=float), np.array(want[key], dtype=float),
                                       rtol=1e-14, atol=1e-16, err_msg=f"step {step}: {key}")


def test_reward_baseline_and_node_perturbation_by_hand(ei, backend):
    model = ei.load("reward_hand.ei", HAND)
    assert not model.errors, model.errors
    sim = model.compile(backend=backend, batch=2)

    def start():
        sim.reset(weights=True)
        sim.weights["u->h"] = np.array([[v] for v in W_IN])
        sim.weights["h->h"] = np.array(W_REC)

    inputs = {"u": np.repeat(np.array(U)[:, None, None], 2, axis=1)}
    close = dict(rtol=1e-12, atol=1e-15)
    start()  # step by step: the trial does not end before the last call (trial_end=False)
    for n, want in enumerate(EXPECTED):
        out = sim.run({"u": inputs["u"][n:n + 1]}, reward=np.array(REWARD[n]), reward_baseline=np.array(BASELINE[n]),
                      record=["h.x"], trial_end=n == 2)
        for b in range(2):
            np.testing.assert_allclose(out["h.x"][0, b], want["x"], **close, err_msg=f"step {n}: x")
            np.testing.assert_allclose(sim.traces["h->h:elig"][..., b], want["elig"], **close, err_msg=f"step {n}")
            np.testing.assert_allclose(sim.traces["h->h:xbar"][:, b], want["xbar"], **close, err_msg=f"step {n}")
        np.testing.assert_allclose(sim.weights["u->h"][:, 0], want["Win"], **close, err_msg=f"step {n}: Win")
        np.testing.assert_allclose(sim.weights["h->h"], want["W"], **close, err_msg=f"step {n}: W")
    start()  # the trial in one call: the same weights at its end
    sim.run(inputs, reward=np.array(REWARD), reward_baseline=np.array(BASELINE), record=[])
    np.testing.assert_allclose(sim.weights["h->h"], EXPECTED[2]["W"], **close)
    np.testing.assert_allclose(sim.weights["u->h"][:, 0], EXPECTED[2]["Win"], **close)
    start()  # a rule reading reward_baseline needs one
    with pytest.raises(InputError, match="reads 'reward_baseline', but none was given"):
        sim.run(inputs, reward=np.array(REWARD), record=[])
    with pytest.raises(InputError, match=r"reward_baseline must be one number, one per batch element \(2,\)"):
        sim.run(inputs, reward=np.array(REWARD), reward_baseline=np.zeros(3), record=[])
    sim.run(inputs, learn=False, record=[])  # without learning: neither is needed


# ------------------------------------------------------------------------------------------------
# the trainer's rewarded trial
# ------------------------------------------------------------------------------------------------
def test_rewarded_trial_is_exact_and_learns_at_its_end_by_the_rule(tmp_path):
    model = forecast_model(tmp_path)
    trainer = Trainer(model, plan_run(model, backend="numpy"))
    sim, task = trainer.sim, trainer.task
    assert sorted(trainer.rewarded) == ["E->E", "y->E"]
    calls = []
    plain_run = sim.run

    def spy(*args, **kwargs):
        before = {k: sim.weights[k].copy() for k in ("y->E", "E->E")}
        result = plain_run(*args, **kwargs)
        calls.append((kwargs.get("learn"), kwargs.get("trial_end", True), before,
                      {k: sim.weights[k].copy() for k in ("y->E", "E->E")}))
        return result

    for index in range(2):
        trials = task.train_batch(index, 3)
        saved, rngs = sim._snapshot(), sim.noise_rng.bit_generator.state
        baselines = dict(trainer.baselines)
        sim.run = spy
        calls.clear()
        try:
            outputs, _ = trainer.run_batch(trials, learn=True)
        finally:
            del sim.run
        after = {k: sim.weights[k].copy() for k in ("y->E", "E->E")}
        elig = sim.traces["E->E:elig"].copy()  # this trial's eligibility (reset at the next trial's start)
        # (1) T - 1 steps learning without ending the trial, (2) the last step probed without
        # learning, (3) the last step again, learning, ending the trial; only (3) changes weights
        assert [(c[0], c[1]) for c in calls] == [(True, False), (False, True), (True, True)]
        for learn, _, before, later in calls[:2]:
            for name in before:
                np.testing.assert_array_equal(later[name], before[name], err_msg=name)
        # the reward is the task's reward of the recorded outputs; the baseline of an unseen type
        # is the trial's own reward
        reward = task.reward(trials, outputs)
        np.testing.assert_array_equal(trainer.last_rewards, reward)
        rbar = np.array([baselines.get("all", r) for r in reward])
        # node_perturbation's change, from its eligibility: mean_b clip(eta * elig * (R - Rbar))
        change = np.clip(20 * elig * (reward - rbar), -0.01, 0.01).mean(axis=-1)
        change[np.eye(5, dtype=bool)] = 0  # no autapses: the diagonal has no synapse
        np.testing.assert_allclose(after["E->E"], np.maximum(calls[2][2]["E->E"] + change, 0), rtol=1e-12,
                                   atol=1e-15)
        if index == 0:
            np.testing.assert_array_equal(after["E->E"], calls[2][2]["E->E"])  # R = Rbar: no change
        else:
            assert np.abs(after["E->E"] - calls[2][2]["E->E"]).max() > 1e-3
            raw = np.abs(20 * elig * (reward - rbar))[~np.eye(5, dtype=bool)]
            assert (raw > 0.01).any() and (raw < 0.01).any()  # the clip acts on some synapses, not all
        assert np.abs(after["y->E"] - calls[2][2]["y->E"]).max() > 1e-6  # reward_hebb: reward * elig
        # the baseline: the first batch's rewards start the mean, the next ones move it by 1 / 4
        want = baselines.get("all")
        for r in reward:
            want = r if want is None else want + (r - want) / 4
        assert trainer.baselines == {"all": pytest.approx(want, rel=1e-14)}
        # the same trial without learning from the same state: the same outputs, bit for bit
        state_after = sim._snapshot()
        sim._restore(saved)
        sim.noise_rng.bit_generator.state = rngs
        for name, value in calls[0][2].items():
            sim.weights[name] = value
        again, _ = trainer.run_batch(trials, learn=False)
        np.testing.assert_array_equal(again, outputs)
        sim._restore(state_after)
        for name, value in after.items():
            sim.weights[name] = value


# ------------------------------------------------------------------------------------------------
# refusals, validate, checkpoints
# ------------------------------------------------------------------------------------------------
def test_trainer_refuses_mixed_rules_phases_and_mixed_baselines(tmp_path):
    mixed = load(tmp_path, "mixed.ei", FORECAST.format(max_dw="0.01", extra="").replace(
        "E -> out : dense, init = uniform(0, 0.5)", "E -> out : dense, init = uniform(0, 0.5), learn = delta(eta = 0.1)"))
    with pytest.raises(TaskError, match=r"rule 'reward_hebb' on y->E learns from the task's reward and rule 'delta' "
                                        r"on E->out from its targets: .*freeze one of them"):
        Trainer(mixed, plan_run(mixed, backend="numpy"))
    Trainer(mixed, plan_run(mixed, backend="numpy", freeze=["E->out"]))  # frozen: a reward-driven run
    both = load(tmp_path, "both.ei", FORECAST.format(max_dw="0.01", extra="").replace(
        "E -> out : dense, init = uniform(0, 0.5)", "E -> out : dense, init = uniform(0, 0.5), learn = graded").replace(
        "run {", "rule graded(eta = 0.1) {\n    dw = eta * reward * (target - post)\n}\nrun {"))
    with pytest.raises(TaskError, match="rule 'graded' on E->out reads both the task's reward and its targets"):
        Trainer(both, plan_run(both, backend="numpy"))
    phased = load(tmp_path, "phased.ei", FORECAST.format(max_dw="0.01", extra="").replace(
        "run {", "phase free { steps = 12 }\nphase second { steps = 4 }\nrun {"))
    with pytest.raises(TaskError, match="learns from the task's reward, but the model has phases"):
        Trainer(phased, plan_run(phased, backend="numpy"))
    two = load(tmp_path, "two.ei", FORECAST.format(max_dw="0.01", extra="").replace(
        "reward_hebb(eta = 0.5, tau_e = 20 ms)", "node_perturbation(baseline_trials = 8)"))
    with pytest.raises(TaskError, match="read reward_baseline with different settings .*baseline_trials = 8"):
        Trainer(two, plan_run(two, backend="numpy"))


@pytest.mark.parametrize("args, message", [
    ("baseline_trials = 0.5", "baseline_trials = 0.5: the running mean of the reward must span at least 1 trial"),
    ("baseline_per_type = 2", "baseline_per_type = 2: it must be 0 (one baseline) or 1 (one per trial type)"),
])
def test_validate_reports_bad_baseline_settings(tmp_path, capsys, args, message):
    from conftest import validate_finding

    text = FORECAST.format(max_dw="0.01", extra=", " + args)
    from eigraph.cli import main

    validate_finding(tmp_path, capsys, text, "R615", (7, 51))  # at the learn = ... value
    assert main(["validate", str(tmp_path / "m.ei")]) == 1
    out = capsys.readouterr().out
    assert message in out, out
    validate_finding(tmp_path, capsys, FORECAST.format(max_dw="0.01", extra=", baseline_trials = 1"), None, None)


def test_checkpoint_keeps_the_baselines_and_resume_matches_an_uninterrupted_run(tmp_path):
    model = forecast_model(tmp_path)
    config = plan_run(model, backend="numpy", trials=15, eval_every=6)
    whole = Trainer(model, config)
    assert whole.train(handle_sigint=False) == "done"
    assert set(whole.baselines) == {"all"}

    stop, saved = Stop(), {}

    def progress(t):
        if t.batches_done == 2:
            stop.requested = True

    first = Trainer(model, config)
    assert first.train(stop=stop, progress=progress, checkpoint=lambda t: saved.update(a=t.checkpoint_arrays()),
                       handle_sigint=False) == "interrupted"
    path = tmp_path / "checkpoint.npz"
    np.savez(path, **saved["a"])
    meta = json.loads(bytes(saved["a"]["trainer"]).decode())
    assert meta["baselines"] == first.baselines and first.baselines
    second = Trainer(model, config)
    second.load_checkpoint(path)
    assert second.baselines == first.baselines
    assert second.train(handle_sigint=False) == "done"
    for name in ("y->E", "E->E"):
        np.testing.assert_array_equal(second.sim.weights[name], whole.sim.weights[name], err_msg=name)
    assert second.baselines == whole.baselines
    # without the baselines the resumed run would differ: they matter
    third = Trainer(model, config)
    third.load_checkpoint(path)
    third.baselines = {}
    third.train(handle_sigint=False)
    assert np.abs(third.sim.weights["E->E"] - whole.sim.weights["E->E"]).max() > 0


# ------------------------------------------------------------------------------------------------
# eigraph run
# ------------------------------------------------------------------------------------------------
DECISION = """\
network rew { dt = 50 ms; seed = 3; precision = float64 }
celltype S : excitatory { tau = 100 ms; activation = tanh }
population stim : input(3)
population E : S(6) { noise = 0.1 }
population out : readout(2)
stim -> E : dense, init = uniform(0, 0.5)
E -> E : dense, init = uniform(0, 0.2), learn = node_perturbation(eta = 0.5, max_dw = 1e-2, baseline_per_type = 0)
E -> out : dense, init = uniform(0, 0.5)
run { task = decision; inputs = stim; targets = out; batch = 4; trials = 16 }
"""


def test_eigraph_run_trains_a_reward_model(tmp_path, capsys, monkeypatch):
    from eigraph.cli import main

    monkeypatch.chdir(tmp_path)
    Path("m.ei").write_text(DECISION)
    code = main(["run", "m.ei", "-o", "out", "--backend", "numpy", "--no-plots"])
    _, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(Path("out/metrics.json").read_text())
    assert metrics["trials"] == 16 and 0 <= metrics["test"]["percent_correct"] <= 100
    assert metrics["learning_rules"] == {"E->E": "node_perturbation(eta = 0.5, max_dw = 1e-2, baseline_per_type = 0)"}
    with np.load("out/weights.npz") as saved:
        start = eigraph.load("m.ei").compile(backend="numpy", batch=4).weights["E->E"]
        assert np.abs(saved["E->E"] - start).max() > 0  # the recurrent weights learned
    with np.load("out/checkpoint.npz") as data:
        assert json.loads(bytes(data["trainer"]).decode())["baselines"]
