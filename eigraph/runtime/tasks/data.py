"""``data("file.npz")``: your own trials.

The file holds ``inputs`` (time x trials x input channels) and ``targets`` (time x trials x
outputs), numbers, finite; optionally ``mask`` (time x trials, or time) of 0/1 or booleans, the
steps whose targets count (all by default), and ``labels`` (trials,), whole numbers from 0 to
outputs - 1, for a classification. The trials are split 70% / 15% / 15% into training,
validation and test trials (a fixed split); the training stream visits the training trials in a
new random order every epoch. Metric: with labels, the accuracy (%), the prediction being the
output with the largest mean over a trial's masked steps; without, the RMSE over the masked steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eigraph.runtime.tasks.base import TRAIN, Task, TaskError, Trials, confusion, confusion_figure

SPLIT_SEED = 3


class Data(Task):
    name = "data"
    figure_name = "data"

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        path = Path(str(args.get("file", "")))
        self.path = path
        arrays = read_data_file(path)
        inputs, targets, mask, labels = arrays["inputs"], arrays["targets"], arrays["mask"], arrays["labels"]
        length, count = inputs.shape[:2]
        if steps is not None and steps != length:
            raise TaskError(f"the trials in '{path.name}' last {length} steps; the run block (or --steps) asks for "
                            f"{steps}: remove steps")
        if count < 3:
            raise TaskError(f"'{path.name}' holds {count} trial(s): at least 3 are needed (training, validation "
                            "and test trials)")
        order = np.random.default_rng(SPLIT_SEED).permutation(count)
        n_train = max(1, int(round(0.7 * count)))
        n_val = max(1, int(round(0.15 * count)))
        n_train = min(n_train, count - 2)
        parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
                 "test": order[n_train + n_val:]}
        if len(parts["test"]) == 0:
            parts["validation"], parts["test"] = parts["validation"][:-1], parts["validation"][-1:]
        conditions = {"trial": np.arange(count)}
        if labels is not None:
            conditions["label"] = labels
        self.all = Trials(inputs, targets, mask, {}, conditions)
        self.parts = {k: np.sort(v) for k, v in parts.items()}
        self.n_in, self.n_out = inputs.shape[2], targets.shape[2]
        self.input_names = [f"input {i}" for i in range(self.n_in)]
        self.output_names = [f"output {i}" for i in range(self.n_out)]
        self.classify = labels is not None
        self.type_conditions = ("label",) if self.classify else ()
        self.metric = "accuracy" if self.classify else "rmse"
        self.unit = "%" if self.classify else ""
        self.higher_is_better = self.classify
        self.figure_name = "confusion" if self.classify else "data"
        self._orders: dict[int, np.ndarray] = {}

    def train_batch(self, index, batch):
        train = self.parts["train"]
        n = len(train)
        chosen = []
        for p in range(index * batch, (index + 1) * batch):
            epoch = p // n
            if epoch not in self._orders:
                self._orders = {epoch: self.rng(TRAIN, epoch).permutation(n)}
            chosen.append(train[self._orders[epoch][p % n]])
        return self.all.take(np.array(chosen))

    def split(self, name):
        return self.all.take(self.parts[name])

    def predict(self, trials, outputs):
        weights = trials.mask[..., None].astype(float)
        mean = (outputs * weights).sum(axis=0) / np.maximum(weights.sum(axis=0), 1)
        return mean.argmax(axis=1)

    def score(self, trials, outputs):
        m = trials.mask
        rmse = float(np.sqrt(np.mean((outputs[m] - trials.targets[m]) ** 2))) if m.any() else float("nan")
        if not self.classify:
            return {"rmse": rmse}
        labels = trials.conditions["label"]
        predicted = self.predict(trials, outputs)
        return {"accuracy": 100.0 * float(np.mean(predicted == labels)), "rmse": rmse,
                "confusion": confusion(labels, predicted, self.n_out).tolist()}

    def figure(self, trials, outputs, scores):
        if self.classify:
            return confusion_figure(np.asarray(scores["confusion"]),
                                    f"{self.path.name}: test accuracy {scores['accuracy']:.1f}%", self.output_names)
        import matplotlib.pyplot as plt

        n = min(self.n_out, 4)
        fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 + 1.4 * n), squeeze=False)
        for i in range(n):
            ax = axes[i, 0]
            ax.plot(trials.targets[:, 0, i], color="0.5", label="target")
            ax.plot(outputs[:, 0, i], color="tab:red", label="output")
            ax.set_ylabel(self.output_names[i])
        axes[0, 0].set_title(f"{self.path.name}: test trial 1 (rmse over the test trials {scores['rmse']:.4g})")
        axes[0, 0].legend(fontsize=8)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        return fig

    def describe(self):
        sizes = {k: len(v) for k, v in self.parts.items()}
        return (f"data: '{self.path.name}', {self.all.steps} steps x {len(self.all)} trials, {self.n_in} inputs, "
                f"{self.n_out} outputs; {sizes['train']} training, {sizes['validation']} validation, "
                f"{sizes['test']} test trials")


def read_data_file(path: Path) -> dict:
    """The arrays of a data file, checked; a :class:`TaskError` saying what is wrong otherwise."""
    name = path.name
    if not path.exists():
        raise TaskError(f"data file '{path}' does not exist")
    from eigraph.check.resources import FileProblem, npz_headers, numpy_reason, regular_file

    try:
        regular_file(path)  # a FIFO or a device is not opened
        with open(path, "rb") as probe:
            if probe.read(2) == b"PK":
                npz_headers(path)  # no object arrays, no header claiming more data than the file holds
    except FileProblem as exc:
        raise TaskError(f"cannot read the data file '{name}': {exc.message}") from None
    try:
        handle = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error for the user
        raise TaskError(f"cannot read '{name}' as a NumPy .npz file: {numpy_reason(exc)}") from None
    if not isinstance(handle, np.lib.npyio.NpzFile):
        raise TaskError(f"'{name}' is a single array; the data task needs an .npz file with the arrays 'inputs' and "
                        "'targets' (np.savez(file, inputs=..., targets=...))")
    with handle:
        keys = set(handle.files)
        missing = [k for k in ("inputs", "targets") if k not in keys]
        if missing:
            raise TaskError(f"'{name}' has no array {' or '.join(repr(m) for m in missing)} (it has: "
                            f"{', '.join(sorted(keys)) or 'nothing'}); save inputs (time x trials x inputs) and targets "
                            "(time x trials x outputs)")
        unknown = sorted(keys - {"inputs", "targets", "mask", "labels"})
        if unknown:
            raise TaskError(f"'{name}' has arrays the data task does not know: {', '.join(unknown)} "
                            "(it reads inputs, targets, mask and labels)")
        try:
            arrays = {k: handle[k] for k in keys}
        except Exception as exc:  # noqa: BLE001 - object arrays need pickle, which we refuse
            raise TaskError(f"cannot read the arrays of '{name}': {numpy_reason(exc)}") from None
    out = {}
    for key in ("inputs", "targets"):
        array = arrays[key]
        if array.dtype.kind not in "fiub":
            raise TaskError(f"'{name}': {key} must hold numbers, not {array.dtype}")
        if array.ndim != 3:
            raise TaskError(f"'{name}': {key} must have 3 dimensions (time x trials x channels), got shape "
                            f"{array.shape}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise TaskError(f"'{name}': {key} contains NaN or infinite values")
        out[key] = array
    if out["inputs"].shape[:2] != out["targets"].shape[:2]:
        raise TaskError(f"'{name}': inputs {out['inputs'].shape} and targets {out['targets'].shape} must have the same "
                        "time and trials (the first two dimensions)")
    length, count = out["inputs"].shape[:2]
    if length < 1 or count < 1 or 0 in out["inputs"].shape[2:] or 0 in out["targets"].shape[2:]:
        raise TaskError(f"'{name}': inputs {out['inputs'].shape} and targets {out['targets'].shape} must not be empty")
    mask = arrays.get("mask")
    if mask is None:
        out["mask"] = np.ones((length, count), dtype=bool)
    else:
        if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
            raise TaskError(f"'{name}': mask must hold 0/1 or booleans")
        if mask.shape == (length,):
            mask = np.broadcast_to(mask[:, None], (length, count))
        if mask.shape != (length, count):
            raise TaskError(f"'{name}': mask must have shape (time,) = ({length},) or (time, trials) = "
                            f"({length}, {count}), got {mask.shape}")
        out["mask"] = mask.astype(bool).copy()
        if not out["mask"].any():
            raise TaskError(f"'{name}': the mask is 0 everywhere: no step would count")
    labels = arrays.get("labels")
    if labels is None:
        out["labels"] = None
    else:
        if labels.shape != (count,):
            raise TaskError(f"'{name}': labels must have shape (trials,) = ({count},), got {labels.shape}")
        if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
            raise TaskError(f"'{name}': labels must be whole numbers (class indices)")
        labels = labels.astype(np.int64)
        n_out = out["targets"].shape[2]
        if labels.min() < 0 or labels.max() >= n_out:
            raise TaskError(f"'{name}': labels must be class indices from 0 to {n_out - 1} (one per output), "
                            f"got {labels.min()} to {labels.max()}")
        out["labels"] = labels
    return out
