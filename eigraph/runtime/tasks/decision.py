"""``decision(coherences, catch, noise)``: the perceptual decision task of Song, Yang & Wang (2016),
PLoS Comput Biol 12(2): e1004792 (their random-dot motion task, pycog ``examples/models/rdm_fixed.py``;
Roitman & Shadlen 2002).

Trial structure (dt from the model): fixation 100 ms, stimulus 800 ms, decision 300 ms
(1,200 ms, 120 steps at dt = 10 ms). Three inputs: a fixation cue (1 during fixation and stimulus,
0 in the decision epoch: the go signal) and two evidence channels that carry, during the stimulus
only, ``(1 + c) / 2`` for the correct choice and ``(1 - c) / 2`` for the other, with the coherence
``c`` drawn uniformly from ``coherences`` and the correct choice from {1, 2}. Every input carries
white noise of standard deviation ``noise * sqrt(2 tau / dt)`` per step (Song et al.'s input noise
with tau = 100 ms; noise = 0.01). Catch trials (probability ``catch``; by default
1 / (number of conditions + 1), 1/11 for 5 coherences, as in pycog) have no stimulus.

Targets (two outputs, one per choice): 0.2 for both during fixation; in the decision epoch 1.0 for
the correct choice and 0.2 for the other; 0.2 throughout a catch trial. The mask (the steps that
count) is the fixation and decision epochs (all of a catch trial); learning happens in the
fixation and decision epochs. Metric: percent correct on the non-catch trials, the choice being
the output with the larger mean over the decision epoch (Song et al. train until 85% correct).
The task's figure is the psychometric curve: percent choice 1 against signed coherence.
"""

from __future__ import annotations

import itertools

import numpy as np

from eigraph.runtime.tasks.base import TEST, TRAIN, VALIDATION, Task, TaskError, Trials, need_dt, no_steps, steps_of

LO, HI = 0.2, 1.0
TAU_IN = 0.1  # s: the time constant that scales the input noise (Song et al.: tau = 100 ms)


class EpochTask(Task):
    """Fixation, stimulus and decision epochs, two choices, catch trials (Song et al. 2016)."""

    metric = "percent_correct"
    unit = "%"
    criterion = 85.0
    figure_name = "psychometric"
    durations = {"fixation": 0.1, "stimulus": 0.8, "decision": 0.3}  # seconds (pycog)
    validation_repeats = 10  # trials per condition in the validation set
    test_repeats = 40  # and in the test set

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        self.dt = need_dt(self.name, dt)
        start, self.epochs = 0, {}
        for epoch, duration in self.durations.items():
            length = steps_of(duration, self.dt)
            self.epochs[epoch] = (start, start + length)
            start += length
        self.length = start
        no_steps(self.name, steps, self.length,
                 " + ".join(f"{k} {v * 1e3:g} ms" for k, v in self.durations.items()) + f" at dt = {self.dt * 1e3:g} ms")
        self.noise = float(args.get("noise", 0.01))
        if not 0 <= self.noise <= 10:
            raise TaskError(f"{self.name}(noise = {self.noise:g}): the input noise must be between 0 and 10")

    def _coherences(self, key="coherences") -> list[float]:
        values = self.args.get(key)
        if not isinstance(values, (list, tuple)) or not values:
            raise TaskError(f"{self.name}({key} = ...): give a list of coherences, for example [0.032, 0.128, 0.512]")
        for c in values:
            if not 0 < c <= 1:
                raise TaskError(f"{self.name}({key}): coherence {c:g} is outside (0, 1]")
        return [float(c) for c in values]

    def _catch(self, n_conditions: int) -> float:
        value = self.args.get("catch")
        if value is None:
            return 1.0 / (n_conditions + 1)
        if not 0 <= value < 1:
            raise TaskError(f"{self.name}(catch = {value:g}): the catch-trial probability must be in [0, 1)")
        return float(value)

    # to implement: conditions of a batch and the inputs of a trial given its conditions
    def draw(self, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def grid(self, repeats: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def stimulus(self, conditions: dict[str, np.ndarray], inputs: np.ndarray) -> None:
        raise NotImplementedError

    def build(self, conditions: dict[str, np.ndarray], rng: np.random.Generator) -> Trials:
        batch = len(conditions["catch"])
        inputs = np.zeros((self.length, batch, self.n_in))
        self.stimulus(conditions, inputs)
        inputs += self.noise * np.sqrt(2 * TAU_IN / self.dt) * rng.standard_normal(inputs.shape)
        targets = np.full((self.length, batch, 2), LO)
        a, b = self.epochs["decision"]
        live = ~conditions["catch"]
        choice = conditions["choice"]
        targets[a:b, live, choice[live]] = HI
        mask = np.zeros((self.length, batch), dtype=bool)
        for epoch in ("fixation", "decision"):
            lo, hi = self.epochs[epoch]
            mask[lo:hi] = True
        mask[:, conditions["catch"]] = True
        return Trials(inputs, targets, mask, dict(self.epochs), conditions)

    def train_batch(self, index, batch):
        rng = self.rng(TRAIN, index)
        return self.build(self.draw(rng, batch), rng)

    def split(self, name):
        key = {"validation": VALIDATION, "test": TEST}[name]
        repeats = self.validation_repeats if name == "validation" else self.test_repeats
        return self.build(self.grid(repeats), self.rng(key))

    def summary(self, scores):
        catch = f", {scores['catch_trials']} catch trials excluded" if scores.get("catch_trials") else ""
        return f"percent_correct {scores[self.metric]:.1f}% ({scores['trials']} trials{catch})"

    def choices(self, trials: Trials, outputs: np.ndarray) -> np.ndarray:
        a, b = trials.epochs["decision"]
        return outputs[a:b].mean(axis=0).argmax(axis=1)

    def reward(self, trials, outputs):
        """1 for a correct choice (the output with the larger mean over the decision epoch is the
        correct one), 0 for a wrong one and for a catch trial (which has no correct choice); given
        on the trial's last step, the end of the decision epoch (Song, Yang & Wang 2017, eLife
        6:e21492: reward 1 for a correct decision, 0 otherwise)."""
        chosen = self.choices(trials, outputs)
        correct = (chosen == trials.conditions["choice"]) & ~trials.conditions["catch"]
        return correct.astype(np.float64)

    def score(self, trials, outputs):
        live = ~trials.conditions["catch"]
        chosen = self.choices(trials, outputs)
        correct = chosen == trials.conditions["choice"]
        a, b = trials.epochs["decision"]
        scores = {self.metric: 100.0 * float(correct[live].mean()) if live.any() else float("nan"),
                  "trials": int(live.sum()), "catch_trials": int((~live).sum())}
        if (~live).any():
            scores["catch_decision_output"] = float(outputs[a:b, ~live].mean())
        f0, f1 = trials.epochs["fixation"]
        scores["fixation_output"] = float(outputs[f0:f1].mean())
        return scores


class Decision(EpochTask):
    name = "decision"
    test_repeats = 100
    type_conditions = ("catch", "coherence", "choice")  # a trial type per stimulus (Miconi 2017)

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        self.coherences = self._coherences()
        self.catch = self._catch(2 * len(self.coherences))
        self.n_in, self.n_out = 3, 2
        self.input_names = ["fixation", "evidence 1", "evidence 2"]
        self.output_names = ["choice 1", "choice 2"]

    def draw(self, rng, batch):
        catch = rng.random(batch) < self.catch
        coherence = rng.choice(self.coherences, batch)
        choice = rng.integers(0, 2, batch)
        coherence[catch], choice[catch] = 0.0, -1
        return {"catch": catch, "coherence": coherence, "choice": choice}

    def grid(self, repeats):
        rows = [(c, k) for c, k in itertools.product(self.coherences, (0, 1))] * repeats
        n_catch = repeats if self.catch > 0 else 0
        catch = np.array([False] * len(rows) + [True] * n_catch)
        coherence = np.array([c for c, _ in rows] + [0.0] * n_catch)
        choice = np.array([k for _, k in rows] + [-1] * n_catch, dtype=np.int64)
        return {"catch": catch, "coherence": coherence, "choice": choice}

    def stimulus(self, conditions, inputs):
        f0, _ = self.epochs["fixation"]
        s0, s1 = self.epochs["stimulus"]
        inputs[f0:s1, :, 0] = 1.0
        live = np.flatnonzero(~conditions["catch"])
        c, k = conditions["coherence"][live], conditions["choice"][live]
        inputs[s0:s1, live, 1 + k] = (1 + c) / 2
        inputs[s0:s1, live, 2 - k] = (1 - c) / 2

    def score(self, trials, outputs):
        scores = super().score(trials, outputs)
        live = ~trials.conditions["catch"]
        chosen = self.choices(trials, outputs)[live]
        signed = np.where(trials.conditions["choice"][live] == 0, 1, -1) * trials.conditions["coherence"][live]
        curve = []
        for value in np.unique(signed):
            at = signed == value
            curve.append({"coherence": float(value), "trials": int(at.sum()),
                          "percent_choice_1": 100.0 * float(np.mean(chosen[at] == 0))})
        scores["psychometric"] = curve
        by = {}
        for c in np.unique(np.abs(signed)):
            at = np.abs(signed) == c
            by[f"{c:g}"] = 100.0 * float(np.mean(chosen[at] == trials.conditions["choice"][live][at]))
        scores["percent_correct_by_coherence"] = by
        return scores

    def figure(self, trials, outputs, scores):
        import matplotlib.pyplot as plt

        curve = scores["psychometric"]
        x = np.array([p["coherence"] for p in curve]) * 100
        y = np.array([p["percent_choice_1"] for p in curve])
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        axes[0].plot(x, y, "o-", color="black")
        axes[0].axhline(50, color="0.8", lw=0.8)
        axes[0].axvline(0, color="0.8", lw=0.8)
        axes[0].set_xlabel("signed coherence (%), + favours choice 1")
        axes[0].set_ylabel("choice 1 (%)")
        axes[0].set_ylim(-3, 103)
        axes[0].set_title(f"psychometric curve ({scores[self.metric]:.1f}% correct)")
        by = scores["percent_correct_by_coherence"]
        cs = sorted(by, key=float)
        axes[1].plot([float(c) * 100 for c in cs], [by[c] for c in cs], "o-", color="tab:blue")
        axes[1].set_xscale("log")
        axes[1].set_xticks([float(c) * 100 for c in cs], [f"{float(c) * 100:g}" for c in cs])
        axes[1].minorticks_off()
        axes[1].axhline(self.criterion, color="tab:red", ls="--", lw=0.8, label="85% criterion (Song et al.)")
        axes[1].set_xlabel("coherence (%)")
        axes[1].set_ylabel("correct (%)")
        axes[1].set_ylim(40, 102)
        axes[1].legend(fontsize=8, loc="lower right")
        axes[1].set_title("accuracy by coherence")
        fig.tight_layout()
        return fig

    def describe(self):
        e = self.epochs
        return (f"decision: coherences {', '.join(f'{c:g}' for c in self.coherences)}, catch {self.catch:.3f}; "
                f"fixation {e['fixation'][1]} steps, stimulus {e['stimulus'][1] - e['stimulus'][0]}, "
                f"decision {e['decision'][1] - e['decision'][0]} (dt = {self.dt * 1e3:g} ms)")
