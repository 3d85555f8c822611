"""What every task is: batches of trials (inputs, targets, a mask, epochs, conditions) and a metric.

A task generates its trials offline from a seed: the training stream is a function of (seed,
batch number), so a run resumed from a checkpoint sees the same trials as one that never
stopped; the validation and test sets are fixed sets drawn from the same seed, never trained on.
Arrays are time x trials x channels, like :meth:`eigraph.runtime.simulator.Simulator.run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLITS = {"validation": VALIDATION, "test": TEST}


class TaskError(Exception):
    """A task that cannot be made or fed: an unknown task or argument, a bad data file, a model
    whose inputs or targets do not fit the task."""


@dataclass
class Trials:
    """A batch of trials. ``mask[t, b]``: whether trial ``b``'s target at step ``t`` counts
    (learning and scoring). ``epochs``: named step ranges shared by every trial of the task.
    ``conditions``: one value per trial (label, coherence, catch, ...)."""

    inputs: np.ndarray  # (T, B, n_in)
    targets: np.ndarray  # (T, B, n_out)
    mask: np.ndarray  # (T, B) bool
    epochs: dict[str, tuple[int, int]] = field(default_factory=dict)
    conditions: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[1]

    @property
    def steps(self) -> int:
        return self.inputs.shape[0]

    def take(self, index) -> Trials:
        index = np.asarray(index)
        return Trials(self.inputs[:, index], self.targets[:, index], self.mask[:, index], dict(self.epochs),
                      {k: v[index] for k, v in self.conditions.items()})

    @staticmethod
    def concat(parts: list[Trials]) -> Trials:
        first = parts[0]
        return Trials(np.concatenate([p.inputs for p in parts], axis=1),
                      np.concatenate([p.targets for p in parts], axis=1),
                      np.concatenate([p.mask for p in parts], axis=1), dict(first.epochs),
                      {k: np.concatenate([p.conditions[k] for p in parts]) for k in first.conditions})


class Task:
    """Base class. Subclasses set the attributes below and implement :meth:`train_batch`,
    :meth:`split` and :meth:`score`; :meth:`figure` draws the task's own plot."""

    name = "task"
    metric = "metric"  # the headline number's name in metrics.json and history.csv
    unit = ""  # "%" for accuracies in percent
    higher_is_better = True
    criterion: float | None = None  # a published success criterion, drawn on the learning curve
    figure_name: str | None = None  # file stem of the task's own figure
    default_steps: int | None = None  # trial length when the task does not fix it itself

    def __init__(self, args: dict, seed: int, dt: float | None, steps: int | None):
        self.args = dict(args)
        self.seed = int(seed)
        self.dt = dt
        self.steps = steps
        self.n_in = 0
        self.n_out = 0
        self.input_names: list[str] = []
        self.output_names: list[str] = []

    # trials ------------------------------------------------------------------------------------
    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def train_batch(self, index: int, batch: int) -> Trials:
        """The ``index``-th batch of the training stream (a function of the seed and ``index``)."""
        raise NotImplementedError

    def split(self, name: str) -> Trials:
        """The fixed held-out trials of ``name`` (``validation`` or ``test``)."""
        raise NotImplementedError

    # results -----------------------------------------------------------------------------------
    def score(self, trials: Trials, outputs: np.ndarray) -> dict:
        """Scores of ``outputs`` (T, B, n_out) on ``trials``: ``{self.metric: value, ...}``."""
        raise NotImplementedError

    def figure(self, trials: Trials, outputs: np.ndarray, scores: dict):
        """The task's own matplotlib figure, or None."""
        return None

    # rewards (docs/tasks.md, rewards) -----------------------------------------------------------
    type_conditions: tuple[str, ...] = ()  # the conditions whose values make a trial type

    def reward(self, trials: Trials, outputs: np.ndarray) -> np.ndarray:
        """One reward per trial (B,), given on the trial's last step: by default minus the mean
        squared error of the outputs against the targets over the steps whose target counts
        (the mask), over every output. The decision tasks override it (1 correct, 0 wrong)."""
        mask = trials.mask.astype(np.float64)
        squared = ((outputs - trials.targets) ** 2).mean(axis=2)
        counted = mask.sum(axis=0)
        return -(squared * mask).sum(axis=0) / np.maximum(counted, 1)

    def trial_types(self, trials: Trials) -> list[str]:
        """The trial type of each trial (for a reward baseline per type): the values of the
        task's ``type_conditions``, as text; one type for every trial when it has none."""
        if not self.type_conditions:
            return ["all"] * len(trials)
        columns = [np.asarray(trials.conditions[k]) for k in self.type_conditions]
        return [",".join(f"{k}={_plain(c[b])}" for k, c in zip(self.type_conditions, columns))
                for b in range(len(trials))]

    def describe(self) -> str:
        return f"{self.name}: {self.n_in} inputs, {self.n_out} outputs"

    def summary(self, scores: dict) -> str:
        """One line for people: the headline metric (and what it is compared with)."""
        value = scores[self.metric]
        return f"{self.metric} {value:.4g}{self.unit}"


# helpers shared by the tasks ---------------------------------------------------------------------
def _plain(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def steps_of(duration: float, dt: float) -> int:
    """Whole steps in ``duration`` seconds (at least 1)."""
    return max(1, int(round(duration / dt)))


def need_dt(task: str, dt: float | None) -> float:
    if not dt:
        raise TaskError(f"the {task} task has epochs in milliseconds, so the model needs a time step: "
                        "set dt in its network block (for example dt = 10 ms)")
    return float(dt)


def no_steps(task: str, steps: int | None, length: int, how: str) -> None:
    if steps is not None and steps != length:
        raise TaskError(f"{task} trials last {length} steps ({how}); the run block (or --steps) asks for {steps}: "
                        "remove steps")


def one_hot(labels: np.ndarray, n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    out = np.full((len(labels), n), lo, dtype=np.float64)
    out[np.arange(len(labels)), labels] = hi
    return out


def static_trials(x: np.ndarray, labels: np.ndarray, n_out: int, steps: int) -> Trials:
    """Classification trials: input ``x`` (B, n_in) held for ``steps`` steps, the one-hot
    target counted at the last step (when the network has settled)."""
    batch = len(x)
    inputs = np.broadcast_to(x[None], (steps, batch, x.shape[1])).copy()
    targets = np.broadcast_to(one_hot(labels, n_out)[None], (steps, batch, n_out)).copy()
    mask = np.zeros((steps, batch), dtype=bool)
    mask[-1] = True
    epochs = {"settle": (0, steps - 1), "response": (steps - 1, steps)} if steps > 1 else {"response": (0, 1)}
    return Trials(inputs, targets, mask, epochs, {"label": np.asarray(labels, dtype=np.int64)})


def confusion(labels: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def confusion_figure(matrix: np.ndarray, title: str, names: list[str] | None = None):
    import matplotlib.pyplot as plt

    n = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * n, 1.2 + 0.45 * n))
    rows = matrix.sum(axis=1, keepdims=True)
    fraction = matrix / np.maximum(rows, 1)
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if fraction[i, j] > 0.5 else "black")
    ticks = names or [str(i) for i in range(n)]
    ax.set_xticks(range(n), ticks)
    ax.set_yticks(range(n), ticks)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return fig


class DatasetTask(Task):
    """A fixed data set of static inputs split into training, validation and test samples.
    The training stream goes through the training samples in a new random order every epoch."""

    metric = "accuracy"
    unit = "%"
    figure_name = "confusion"
    default_steps = 10
    type_conditions = ("label",)  # a trial type per class

    def __init__(self, args, seed, dt, steps):
        super().__init__(args, seed, dt, steps)
        self.trial_steps = int(steps if steps is not None else self.default_steps)
        self.data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            self._orders[epoch] = self.rng(TRAIN, epoch).permutation(len(self.data["train"][0]))
        return self._orders[epoch]

    def train_batch(self, index, batch):
        x, y = self.data["train"]
        n = len(x)
        positions = np.arange(index * batch, (index + 1) * batch)
        chosen = np.array([self._order(int(p // n))[p % n] for p in positions])
        return static_trials(x[chosen], y[chosen], self.n_out, self.trial_steps)

    def split(self, name):
        x, y = self.data[name]
        return static_trials(x, y, self.n_out, self.trial_steps)

    @property
    def sizes(self) -> dict[str, int]:
        return {k: len(v[0]) for k, v in self.data.items()}

    def predict(self, trials: Trials, outputs: np.ndarray) -> np.ndarray:
        return outputs[-1].argmax(axis=1)

    def score(self, trials, outputs):
        labels = trials.conditions["label"]
        predicted = self.predict(trials, outputs)
        return {self.metric: 100.0 * float(np.mean(predicted == labels)),
                "confusion": confusion(labels, predicted, self.n_out).tolist()}

    def figure(self, trials, outputs, scores):
        matrix = np.asarray(scores["confusion"])
        return confusion_figure(matrix, f"{self.name}: test accuracy {scores[self.metric]:.1f}%", self.output_names)

    def describe(self):
        sizes = self.sizes
        return (f"{self.name}: {self.n_in} inputs, {self.n_out} classes; {sizes['train']} training, "
                f"{sizes['validation']} validation, {sizes['test']} test samples; input held for "
                f"{self.trial_steps} steps, target on the last")
