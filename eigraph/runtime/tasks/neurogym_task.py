"""``neurogym("Name-v0")``: trials from a NeuroGym task (Molano-Mazon et al. 2022,
github.com/neurogym/neurogym), when the optional ``neurogym`` package is installed.

Each trial comes from the environment's ``new_trial()`` with the model's dt: its observations
``ob`` are the inputs and its ground-truth actions ``gt`` become one-hot targets over the action
space at every step (NeuroGym's supervised convention: action 0 is "fixate"). Trials of one batch
are padded at the end to the longest one; padded steps do not count. Metric: percent correct, the
choice being the action other than "fixate" with the largest mean output over the steps whose
ground truth is not "fixate", compared with that ground truth.
"""

from __future__ import annotations

import numpy as np

from eigraph.runtime.tasks.base import TEST, TRAIN, VALIDATION, Task, TaskError, Trials, confusion, confusion_figure


class NeuroGym(Task):
    name = "neurogym"
    metric = "percent_correct"
    unit = "%"
    figure_name = "confusion"
    validation_trials = 100
    test_trials = 400

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        env_name = str(args.get("name", ""))
        try:
            import neurogym
        except ImportError:
            raise TaskError(f"neurogym(name = \"{env_name}\") needs the optional neurogym package, which is not "
                            "installed: pip install neurogym (or use a built-in task: digits, spirals, decision, "
                            "context, forecast, data)") from None
        if not dt:
            raise TaskError("the neurogym task needs the model's time step: set dt in its network block")
        try:
            self.env = neurogym.make(env_name, dt=dt * 1e3)
        except Exception as exc:  # noqa: BLE001 - neurogym raises many kinds for an unknown name
            raise TaskError(f"neurogym cannot make '{env_name}': {exc}") from None
        self.env_name = env_name
        self.core = getattr(self.env, "unwrapped", self.env)  # the TrialEnv itself, past gym's wrappers
        self.n_in = int(np.prod(self.env.observation_space.shape))
        self.n_out = int(self.env.action_space.n)
        self.input_names = [f"observation {i}" for i in range(self.n_in)]
        self.output_names = ["fixate"] + [f"action {i}" for i in range(1, self.n_out)]

    def _trials(self, rng: np.random.Generator, count: int) -> Trials:
        core = self.core
        core.seed(int(rng.integers(2**31)))  # NeuroGym's TrialEnv.seed: its trial generator
        obs, gts = [], []
        for _ in range(count):
            core.new_trial()
            obs.append(np.asarray(core.ob, dtype=np.float64).reshape(len(core.ob), -1))
            gts.append(np.asarray(core.gt, dtype=np.int64).reshape(-1))
        length = max(len(o) for o in obs)
        inputs = np.zeros((length, count, self.n_in))
        targets = np.zeros((length, count, self.n_out))
        mask = np.zeros((length, count), dtype=bool)
        decision = np.zeros((length, count), dtype=bool)
        answer = np.zeros(count, dtype=np.int64)
        for b, (o, g) in enumerate(zip(obs, gts)):
            inputs[:len(o), b] = o
            targets[np.arange(len(g)), b, g] = 1.0
            mask[:len(g), b] = True
            decision[:len(g), b] = g > 0
            answer[b] = g[g > 0][-1] if (g > 0).any() else 0
        return Trials(inputs, targets, mask, {}, {"label": answer, "decision_steps": decision.T.copy()})

    def train_batch(self, index, batch):
        return self._trials(self.rng(TRAIN, index), batch)

    def split(self, name):
        key, count = {"validation": (VALIDATION, self.validation_trials), "test": (TEST, self.test_trials)}[name]
        return self._trials(self.rng(key), count)

    def score(self, trials, outputs):
        decision = trials.conditions["decision_steps"].T[..., None].astype(float)
        mean = (outputs * decision).sum(axis=0) / np.maximum(decision.sum(axis=0), 1)
        predicted = 1 + mean[:, 1:].argmax(axis=1) if self.n_out > 1 else np.zeros(len(mean), dtype=np.int64)
        labels = trials.conditions["label"]
        return {"percent_correct": 100.0 * float(np.mean(predicted == labels)),
                "confusion": confusion(labels, predicted, self.n_out).tolist()}

    def figure(self, trials, outputs, scores):
        return confusion_figure(np.asarray(scores["confusion"]),
                                f"{self.env_name}: {scores['percent_correct']:.1f}% correct", self.output_names)
