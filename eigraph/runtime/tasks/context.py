"""``context(coherences, catch, noise)``: the context-dependent integration task of Mante,
Sussillo, Shenoy & Newsome (2013), Nature 503: 78-84, as set up in Song, Yang & Wang (2016)
(pycog ``examples/models/mante.py``).

Trial structure (dt from the model): fixation 100 ms, stimulus 800 ms, decision 300 ms. Six
inputs: two context cues (motion, colour; the cue of the trial's context is 1 during the
stimulus), and for each modality two channels carrying ``(1 + c) / 2`` and ``(1 - c) / 2`` during
the stimulus (the larger one on the side that modality points to). Motion and colour coherences
are drawn independently from ``coherences`` (default 0.05, 0.15, 0.5: pycog's 1, 3, 10% times
its scale 5) and point left or right independently; the context says which modality decides.
Input noise and catch trials as in ``decision`` (catch by default 1 / 73, one per condition set).
Targets, mask and metric as in ``decision``: percent correct on non-catch trials (the choice
being the output with the larger mean over the decision epoch). The task's figure shows the
choices against each modality's coherence in each context: the relevant one should decide, the
irrelevant one should not.
"""

from __future__ import annotations

import itertools

import numpy as np

from eigraph.runtime.tasks.decision import EpochTask


class Context(EpochTask):
    name = "context"
    figure_name = "context_psychometric"
    validation_repeats = 2
    test_repeats = 8
    type_conditions = ("catch", "context", "motion", "motion_side", "colour", "colour_side")

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        self.coherences = self._coherences()
        self.catch = self._catch(2 * (2 * len(self.coherences)) ** 2)
        self.n_in, self.n_out = 6, 2
        self.input_names = ["context motion", "context colour", "motion 1", "motion 2", "colour 1", "colour 2"]
        self.output_names = ["choice 1", "choice 2"]

    def _finish(self, context, coh_m, side_m, coh_c, side_c, catch):
        choice = np.where(context == 0, side_m, side_c).astype(np.int64)
        choice[catch] = -1
        return {"catch": catch, "context": context, "motion": coh_m, "motion_side": side_m,
                "colour": coh_c, "colour_side": side_c, "choice": choice}

    def draw(self, rng, batch):
        catch = rng.random(batch) < self.catch
        context = rng.integers(0, 2, batch)
        coh_m, coh_c = rng.choice(self.coherences, batch), rng.choice(self.coherences, batch)
        side_m, side_c = rng.integers(0, 2, batch), rng.integers(0, 2, batch)
        return self._finish(context, coh_m, side_m, coh_c, side_c, catch)

    def grid(self, repeats):
        rows = list(itertools.product((0, 1), self.coherences, (0, 1), self.coherences, (0, 1))) * repeats
        n_catch = repeats if self.catch > 0 else 0
        columns = [np.array([r[i] for r in rows] + [0] * n_catch) for i in range(5)]
        catch = np.array([False] * len(rows) + [True] * n_catch)
        context, coh_m, side_m, coh_c, side_c = columns
        return self._finish(context.astype(np.int64), coh_m.astype(float), side_m.astype(np.int64),
                            coh_c.astype(float), side_c.astype(np.int64), catch)

    def stimulus(self, conditions, inputs):
        s0, s1 = self.epochs["stimulus"]
        live = np.flatnonzero(~conditions["catch"])
        inputs[s0:s1, live, conditions["context"][live]] = 1.0
        for offset, coh, side in ((2, "motion", "motion_side"), (4, "colour", "colour_side")):
            c, k = conditions[coh][live], conditions[side][live]
            inputs[s0:s1, live, offset + k] = (1 + c) / 2
            inputs[s0:s1, live, offset + 1 - k] = (1 - c) / 2

    def score(self, trials, outputs):
        scores = super().score(trials, outputs)
        cond = trials.conditions
        live = ~cond["catch"]
        chosen = self.choices(trials, outputs)
        correct = chosen == cond["choice"]
        for context, label in ((0, "motion"), (1, "colour")):
            at = live & (cond["context"] == context)
            if at.any():
                scores[f"percent_correct_{label}_context"] = 100.0 * float(correct[at].mean())
        curves = {}
        for context, label in ((0, "motion"), (1, "colour")):
            for modality in ("motion", "colour"):
                at = live & (cond["context"] == context)
                signed = np.where(cond[f"{modality}_side"][at] == 0, 1, -1) * cond[modality][at]
                curves[f"{label} context, {modality}"] = [
                    {"coherence": float(v), "percent_choice_1": 100.0 * float(np.mean(chosen[at][signed == v] == 0))}
                    for v in np.unique(signed)]
        scores["psychometric"] = curves
        return scores

    def figure(self, trials, outputs, scores):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
        for ax, label in zip(axes, ("motion", "colour")):
            for modality, color in (("motion", "black"), ("colour", "tab:orange")):
                curve = scores["psychometric"].get(f"{label} context, {modality}", [])
                ax.plot([p["coherence"] * 100 for p in curve], [p["percent_choice_1"] for p in curve], "o-",
                        color=color, label=f"{modality} coherence" + (" (relevant)" if modality == label else ""))
            ax.axhline(50, color="0.8", lw=0.8)
            ax.set_xlabel("signed coherence (%)")
            ax.set_title(f"{label} context ({scores.get(f'percent_correct_{label}_context', float('nan')):.1f}% correct)")
            ax.legend(fontsize=8)
        axes[0].set_ylabel("choice 1 (%)")
        fig.tight_layout()
        return fig
