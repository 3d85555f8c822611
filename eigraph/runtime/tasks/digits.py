"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

Trial: the 64 pixel intensities (0-16 scaled to 0-1) are held on the input for ``steps`` steps;
the target is the one-hot class (1 for the class, 0 elsewhere) at the last step, and the
prediction is the output unit with the largest rate at the last step. Split: a fixed stratified
split (the same for every run seed) into 60% training, 20% validation and 20% test images;
the run seed orders the training images. Metric: test accuracy (%).
"""

from __future__ import annotations

import numpy as np

from eigraph.runtime.tasks.base import DatasetTask, TaskError

SPLIT_SEED = 8  # fixed: every run is tested on the same images
FRACTIONS = (0.6, 0.2, 0.2)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError:
        raise TaskError("the digits task reads scikit-learn's bundled digits data set: install it with "
                        "pip install scikit-learn (or pip install 'eigraph[tasks]')") from None
    data = sk_load()
    return np.asarray(data.data, dtype=np.float64) / 16.0, np.asarray(data.target, dtype=np.int64)


def stratified_split(labels: np.ndarray, seed: int, fractions=FRACTIONS) -> dict[str, np.ndarray]:
    """Indices of a split that keeps each class's share in every part."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(members)))
        n_val = int(round(fractions[1] * len(members)))
        parts["train"].append(members[:n_train])
        parts["validation"].append(members[n_train:n_train + n_val])
        parts["test"].append(members[n_train + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


class Digits(DatasetTask):
    name = "digits"

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        x, y = load_digits()
        self.data = {name: (x[index], y[index]) for name, index in stratified_split(y, SPLIT_SEED).items()}
        self.n_in, self.n_out = 64, 10
        self.input_names = [f"pixel {i // 8},{i % 8}" for i in range(64)]
        self.output_names = [str(i) for i in range(10)]
