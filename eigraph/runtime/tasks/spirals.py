"""``spirals(arms, points, noise)``: the spiral classification benchmark of EIANN
(Galloni, Peddada, Chennawar & Milstein 2025; github.com/Milstein-Lab/EIANN,
``EIANN/utils/data_utils.py``: ``generate_spiral_data`` and ``get_spiral_dataloaders``).

Each of ``arms`` spiral arms (EIANN: 4) holds points ``(t (sin a + noise xi1), t (cos a + noise xi2))``
with ``a = 2 pi / arms * (2 t + arm)``, ``t`` evenly spaced in [0, 1] and ``xi`` standard normal
(EIANN: noise 0.16). As in EIANN, ``points`` per arm (2,000) are split 70% / 15% / 15% into
training, validation and test sets drawn independently (data seeds 0, 1, 2: the same for every
run). Trial: the two coordinates held on the input for ``steps`` steps, the one-hot arm as target at
the last step. Metric: test accuracy (%); EIANN reports 89-92% for its networks with local rules.
"""

from __future__ import annotations

import numpy as np

from eigraph.runtime.tasks.base import DatasetTask, TaskError


def spiral_points(per_arm: int, arms: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, per_arm)
    xs, ys = [], []
    for arm in range(arms):
        angle = 2 * np.pi / arms * (2 * t + arm)
        x = t * (np.sin(angle) + noise * rng.standard_normal(per_arm))
        y = t * (np.cos(angle) + noise * rng.standard_normal(per_arm))
        xs.append(np.stack([x, y], axis=1))
        ys.append(np.full(per_arm, arm, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


class Spirals(DatasetTask):
    name = "spirals"

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        arms, points, noise = args.get("arms", 4), args.get("points", 2000), args.get("noise", 0.16)
        if arms != int(arms) or not 2 <= arms <= 32:
            raise TaskError(f"spirals(arms = {arms:g}): arms must be a whole number from 2 to 32")
        if points != int(points) or points < 20:
            raise TaskError(f"spirals(points = {points:g}): points per arm must be a whole number >= 20")
        if not 0 <= noise <= 10:
            raise TaskError(f"spirals(noise = {noise:g}): noise must be between 0 and 10")
        arms, points = int(arms), int(points)
        self.arms, self.points, self.noise = arms, points, float(noise)
        sizes = {"train": int(0.7 * points), "validation": int(0.15 * points), "test": int(0.15 * points)}
        self.data = {name: spiral_points(size, arms, self.noise, data_seed)
                     for data_seed, (name, size) in enumerate(sizes.items())}
        self.n_in, self.n_out = 2, arms
        self.input_names = ["x", "y"]
        self.output_names = [f"arm {i}" for i in range(arms)]

    def figure(self, trials, outputs, scores):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
        x = trials.inputs[-1]
        predicted = self.predict(trials, outputs)
        labels = trials.conditions["label"]
        colors = plt.get_cmap("tab10")
        for arm in range(self.n_out):
            chosen = predicted == arm
            axes[0].scatter(x[chosen, 0], x[chosen, 1], s=5, color=colors(arm % 10), label=f"arm {arm}")
        wrong = predicted != labels
        axes[0].scatter(x[wrong, 0], x[wrong, 1], s=14, facecolors="none", edgecolors="black", linewidths=0.6,
                        label="wrong")
        axes[0].set_title(f"test points by predicted arm ({scores[self.metric]:.1f}% correct)")
        axes[0].set_aspect("equal")
        axes[0].legend(fontsize=7, markerscale=2, loc="upper right")
        matrix = np.asarray(scores["confusion"])
        fraction = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        image = axes[1].imshow(fraction, cmap="Blues", vmin=0, vmax=1)
        for i in range(self.n_out):
            for j in range(self.n_out):
                axes[1].text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                             color="white" if fraction[i, j] > 0.5 else "black")
        axes[1].set_xticks(range(self.n_out))
        axes[1].set_yticks(range(self.n_out))
        axes[1].set_xlabel("predicted arm")
        axes[1].set_ylabel("true arm")
        axes[1].set_title("confusion matrix")
        fig.colorbar(image, ax=axes[1], fraction=0.046, pad=0.04)
        fig.tight_layout()
        return fig
