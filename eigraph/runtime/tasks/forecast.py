"""``forecast(signal, noise, washout)``: next-step prediction of a noisy sine, the task of the
ngc-learn EI-RNN exhibit (NAC Lab, github.com/NACLab/ngc-museum, ``exhibits/ei_rnn/sim_ei_rnn.py``).

The exhibit's series is ``sin(x) + 0.025 xi`` on ``x = linspace(0, 10, 1000)``: 0.01 rad per step,
one slow sine period every 628 steps. Here every trial is such a series of ``steps`` points (1,000
by default) with its own random phase and noise: the input at step ``k`` is the noisy value
``y[k]`` and the target is the next one, ``y[k + 1]``. The first ``washout`` steps (50) are not
learned from or scored, while the network settles. Metric: the RMSE between the prediction and
the target over the test series (lower is better), compared with the copy-last-value baseline
that predicts ``y[k + 1] = y[k]`` (RMSE about 0.036 for noise 0.025: the noise of two samples,
sqrt(2) x 0.025, plus the sine's own change). A predictor that knew the clean sine would reach
the noise floor, 0.025. ngc-learn's EI-RNN does not beat the baseline; ``metrics.json`` reports
both numbers and the RMSE against the clean signal.
"""

from __future__ import annotations

import numpy as np

from eigraph.runtime.tasks.base import TEST, TRAIN, VALIDATION, Task, TaskError, Trials

STEP = 10.0 / 999.0  # rad per step: linspace(0, 10, 1000)
SIGNALS = ("sine",)


class Forecast(Task):
    name = "forecast"
    metric = "rmse"
    higher_is_better = False
    figure_name = "forecast"
    default_steps = 1000
    validation_trials = 8
    test_trials = 32

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        signal = args.get("signal", "sine")
        if signal not in SIGNALS:
            raise TaskError(f"forecast(signal = {signal}): unknown signal; choose one of: {', '.join(SIGNALS)}")
        self.signal = signal
        self.noise = float(args.get("noise", 0.025))
        if not 0 <= self.noise <= 10:
            raise TaskError(f"forecast(noise = {self.noise:g}): noise must be between 0 and 10")
        self.length = int(steps if steps is not None else self.default_steps)
        washout = args.get("washout", 50)
        if washout != int(washout) or not 0 <= washout < self.length:
            raise TaskError(f"forecast(washout = {washout:g}): the washout must be a whole number of steps "
                            f"from 0 to {self.length - 1}")
        self.washout = int(washout)
        self.n_in, self.n_out = 1, 1
        self.input_names, self.output_names = ["y(t)"], ["prediction of y(t + 1)"]

    def build(self, rng: np.random.Generator, batch: int) -> Trials:
        phase = rng.uniform(0, 2 * np.pi, batch)
        k = np.arange(self.length + 1)[:, None]
        clean = np.sin(phase[None, :] + STEP * k)
        noisy = clean + self.noise * rng.standard_normal(clean.shape)
        inputs = noisy[:-1, :, None]
        targets = noisy[1:, :, None]
        mask = np.zeros((self.length, batch), dtype=bool)
        mask[self.washout:] = True
        epochs = {"washout": (0, self.washout), "prediction": (self.washout, self.length)}
        return Trials(inputs, targets, mask, epochs, {"phase": phase, "clean_next": clean[1:].T.copy()})

    def train_batch(self, index, batch):
        return self.build(self.rng(TRAIN, index), batch)

    def split(self, name):
        key, count = {"validation": (VALIDATION, self.validation_trials), "test": (TEST, self.test_trials)}[name]
        return self.build(self.rng(key), count)

    def score(self, trials, outputs):
        m = trials.mask
        prediction, target, last = outputs[..., 0], trials.targets[..., 0], trials.inputs[..., 0]
        clean = trials.conditions["clean_next"].T

        def rmse(a, b):
            return float(np.sqrt(np.mean((a[m] - b[m]) ** 2)))

        return {"rmse": rmse(prediction, target), "baseline_rmse": rmse(last, target),
                "rmse_vs_clean_signal": rmse(prediction, clean), "noise_floor": self.noise,
                "beats_baseline": bool(rmse(prediction, target) < rmse(last, target))}

    def summary(self, scores):
        return f"rmse {scores['rmse']:.4f} (copy-last-value baseline {scores['baseline_rmse']:.4f})"

    def figure(self, trials, outputs, scores):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 1, figsize=(9, 5.5))
        k = np.arange(trials.steps)
        for ax, window in zip(axes, (slice(None), slice(self.washout, min(trials.steps, self.washout + 100)))):
            ax.plot(k[window], trials.targets[window, 0, 0], ".", ms=2.5, color="0.55", label="target y(t + 1)")
            ax.plot(k[window], trials.conditions["clean_next"][0][window], "-", lw=0.8, color="black",
                    label="clean sine")
            ax.plot(k[window], outputs[window, 0, 0], "-", lw=1.2, color="tab:red", label="network prediction")
            ax.set_xlabel("step")
        if self.washout:
            axes[0].axvspan(0, self.washout, color="0.93", lw=0, label="washout (not scored)")
        axes[0].set_title(f"test series 1: rmse {scores['rmse']:.4f}, copy-last-value baseline "
                          f"{scores['baseline_rmse']:.4f}, noise floor {self.noise:g}")
        axes[0].legend(fontsize=8, loc="upper right", ncol=3)
        axes[1].set_title("the first 100 scored steps")
        fig.tight_layout()
        return fig

    def describe(self):
        return (f"forecast: {self.signal} with noise {self.noise:g}, {self.length} steps per series, "
                f"washout {self.washout}")
