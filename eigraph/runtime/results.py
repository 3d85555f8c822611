"""What ``eigraph run`` leaves in its folder: numbers, arrays, the model, and plots.

- ``metrics.json``: the task, the test scores (the headline metric first), the last validation
  score, what was run (trials, batch, seed, backend, rules) and how long it took;
- ``history.csv``: one row per evaluation: trials, training and validation metric, seconds;
- ``weights.npz``: every projection's weights (post x pre; magnitudes under Dale's law, the sign
  is the source's), and each learned bias as ``bias->POP`` (one value per neuron);
- ``records.npz``: what the run block records (``E.r``, ...), over the first batch of test trials
  (the first 100 for trials of fewer than 5 steps),
  with their inputs, targets, outputs and mask (time x trials x neurons);
- ``model.ei``: the model's canonical text;
- ``checkpoint.npz``: the last checkpoint (``eigraph run ... --resume`` goes on from it);
- plots (PNG): ``learning_curve.png``, ``activity_POP.png`` for each recorded population,
  ``weights.png``, and the task's own figure (``psychometric.png``, ``confusion.png``,
  ``forecast.png``, ...).

Every file is written atomically (a reader never sees half a file). The folder's
``.eigraph-files.json`` lists the files eigraph wrote there: ``--force`` replaces only those, and
a file of the user's with the name of one eigraph writes is never replaced. ``.eigraph-lock`` is
held (``flock``) while a run writes to the folder, so a second run into it refuses to start.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from eigraph.fileio import atomic_write_bytes, atomic_write_text

RESULT_FILES = ("metrics.json", "history.csv", "weights.npz", "records.npz", "model.ei", "checkpoint.npz")
MANIFEST = ".eigraph-files.json"
LOCK = ".eigraph-lock"
BOOKKEEPING = (MANIFEST, LOCK)
MAX_WEIGHT_PANELS = 16


class Manifest:
    """The files eigraph wrote in a results folder (``.eigraph-files.json``, written atomically)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST
        self.names: list[str] = []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("files"), list):
                self.names = [n for n in data["files"] if isinstance(n, str) and "/" not in n and n not in BOOKKEEPING]
        except (OSError, ValueError):
            pass  # none yet (or unreadable): eigraph wrote nothing it knows of here

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def add(self, *names: str) -> None:
        new = [n for n in names if n not in self.names]
        if new:
            self.names += new
            self._write()

    def remove(self, name: str) -> None:
        if name in self.names:
            self.names.remove(name)
            self._write()

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps({"written_by": "eigraph run", "files": self.names}, indent=1) + "\n")


def user_files(folder: Path) -> list[Path]:
    """What is in a results folder besides eigraph's own bookkeeping."""
    return sorted(p for p in Path(folder).iterdir() if p.name not in BOOKKEEPING)


def written_here(folder: Path) -> list[Path]:
    """The files of a results folder that ``eigraph run`` wrote (replaced by ``--force``)."""
    manifest = Manifest(folder)
    return [folder / name for name in manifest.names if (folder / name).is_file()]


def planned_files(trainer, plots: bool = True) -> list[str]:
    """The names of the files a run writes in its folder."""
    names = list(RESULT_FILES)
    if plots:
        names += ["learning_curve.png", "weights.png"]
        names += [f"activity_{_file_part(n)}.png" for n in record_names(trainer)]
        names.append(f"{trainer.task.figure_name or trainer.task.name}.png")
    return names


def clashes(folder: Path, names: list[str]) -> list[str]:
    """The files of ``names`` that are in ``folder`` but that eigraph did not write there."""
    manifest = Manifest(folder)
    return [n for n in names if (Path(folder) / n).exists() and n not in manifest]


def chance_warning(trainer, test) -> str | None:
    """A warning when the test metric is at chance while the weights grew by orders of magnitude
    (a learning rate far too large): the run 'succeeded' but learned nothing."""
    task = trainer.task
    metric = task.metric
    score = test.scores.get(metric)
    if score is None or not np.isfinite(score):
        return None
    if task.unit == "%" and task.higher_is_better and task.n_out >= 2:
        chance = 100.0 / task.n_out
        at_chance = score <= chance + 0.1 * (100.0 - chance)
        level = f"{score:.4g}{task.unit}, chance is {chance:.3g}{task.unit}"
    elif "beats_baseline" in test.scores:
        at_chance = not test.scores["beats_baseline"]
        level = f"{metric} {score:.4g}, no better than the copy-last-value baseline"
    else:
        return None
    start = getattr(trainer, "initial_weight_scale", None)
    now = max((float(np.abs(w).max()) for w in trainer.sim.weights.values() if np.size(w)), default=0.0)
    if not at_chance or start is None or not np.isfinite(now):
        return None
    if now < 100.0 * max(start, 1e-2):
        return None
    return (f"the test score is at chance ({level}) while the largest weight grew from {start:.3g} to {now:.3g}: "
            "the learning rate is probably far too large; lower the rules' eta (e.g. by 10x) and run again")


def record_names(trainer) -> list[str]:
    """The run block's record list, or every hidden and readout population's rate."""
    if trainer.config.record:
        return list(trainer.config.record)
    return [f"{name}.r" for name, p in trainer.model.populations.items() if p.role != "input"]


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def metrics(trainer, test, command: str | None = None, warnings=()) -> dict:
    from eigraph import __version__

    task, config, model = trainer.task, trainer.config, trainer.model
    scores = dict(test.scores)
    headline = {task.metric: scores.pop(task.metric)}
    last = trainer.history[-1] if trainer.history else {}
    rules = {name: p.learn["text"] for name, p in model.projections.items() if p.learn}
    rules.update({p.bias_name: p.learn_bias["text"] for p in model.populations.values() if p.learn_bias})
    out = {
        "model": str(Path(model.path).resolve()) if model.path else None,
        "network": model.network.name,
        "task": {"name": config.task["name"], "args": config.task.get("args", {}), "text": config.task.get("text")},
        "description": task.describe(),
        "metric": task.metric,
        "unit": task.unit,
        "higher_is_better": task.higher_is_better,
        "test": {**headline, **scores},
        "test_trials": len(test.trials),
        "validation": {task.metric: last.get(f"validation_{task.metric}")},
        "summary": task.summary(test.scores),
        "trials": trainer.trials_done,
        "batch": config.batch,
        "steps_per_trial": int(test.trials.steps),
        "seed": config.seed,
        "backend": config.backend,
        "inputs": config.inputs,
        "targets": config.targets,
        "learning_rules": rules,
        "frozen": {"patterns": list(config.freeze), "projections": list(getattr(trainer, "frozen", []))},
        "learning": "local rules only (no autodiff): the rules above, run by eigraph's kernels",
        "elapsed_s": round(trainer.elapsed, 3),
        "trials_per_s": round(trainer.trials_done / trainer.elapsed, 1) if trainer.elapsed > 0 else None,
        "eigraph": __version__,
    }
    if task.criterion is not None:
        out["criterion"] = task.criterion
        out["meets_criterion"] = bool(headline[task.metric] >= task.criterion)
    if command:
        out["command"] = command
    if warnings:
        out["warnings"] = list(warnings)
    return out


def write_results(folder: Path, trainer, test, command: str | None = None, plots: bool = True,
                  records: dict | None = None, warnings=()) -> tuple[list[str], list[str]]:
    """Write everything but the checkpoint; returns (files written, notes for the user). Each
    file goes into the folder's manifest before it is written."""
    folder = Path(folder)
    written, notes = [], []
    data = metrics(trainer, test, command, warnings)
    manifest = Manifest(folder)
    manifest.add("metrics.json", "history.csv", "weights.npz", "records.npz", "model.ei")
    atomic_write_text(folder / "metrics.json", json.dumps(data, indent=2, default=_json_default) + "\n")
    written.append("metrics.json")
    atomic_write_text(folder / "history.csv", history_csv(trainer))
    written.append("history.csv")
    weights = {name: trainer.sim.weights[name] for name in trainer.sim.weights}
    # every bias the model learns, frozen ones (--freeze 'bias->POP') too: one value per neuron
    weights.update({p.bias_name: trainer.sim.biases[name] for name, p in trainer.model.populations.items()
                    if p.learn_bias})
    atomic_write_bytes(folder / "weights.npz", _npz(weights))
    written.append("weights.npz")
    arrays = {name: value.astype(np.float32) for name, value in (records or test.records).items()}
    recorded = next(iter(arrays.values())).shape[1] if arrays else trainer.config.batch
    first = test.trials.take(np.arange(min(len(test.trials), recorded)))
    arrays.update({"inputs": first.inputs.astype(np.float32), "targets": first.targets.astype(np.float32),
                   "outputs": test.outputs[:, :len(first)].astype(np.float32), "mask": first.mask})
    for key, value in first.conditions.items():
        arrays[f"condition.{key}"] = np.asarray(value)
    atomic_write_bytes(folder / "records.npz", _npz(arrays))
    written.append("records.npz")
    atomic_write_text(folder / "model.ei", canonical_text(trainer.model))
    written.append("model.ei")
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            notes.append("no plots: matplotlib is not installed (pip install 'eigraph[plot]')")
        else:
            written += write_plots(folder, trainer, test, arrays, data)
    return written, notes


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def history_csv(trainer) -> str:
    metric = trainer.task.metric
    columns = ["trials", f"train_{metric}", f"validation_{metric}", "elapsed_s"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in trainer.history:
        writer.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                         for c in columns])
    return buffer.getvalue()


def canonical_text(model) -> str:
    from eigraph.frontend.emit import to_ei

    header = (f"# The canonical text of {Path(model.path).name if model.path else 'the model'}, "
              "as eigraph read it (eigraph convert writes the same).\n")
    return header + to_ei(model.document)


# plots -----------------------------------------------------------------------------------------
def write_plots(folder: Path, trainer, test, arrays: dict, data: dict) -> list[str]:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    manifest = Manifest(folder)

    def save(fig, name):
        manifest.add(name)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(folder / name, buffer.getvalue())
        written.append(name)

    save(learning_curve(trainer, test), "learning_curve.png")
    for name in record_names(trainer):
        if name in arrays:
            save(activity(trainer, test, name, arrays[name]), f"activity_{_file_part(name)}.png")
    save(weights_figure(trainer), "weights.png")
    figure = trainer.task.figure(test.trials, test.outputs, test.scores)
    if figure is not None:
        save(figure, f"{trainer.task.figure_name or trainer.task.name}.png")
    return written


def _file_part(name: str) -> str:
    stem = name[:-2] if name.endswith(".r") else name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)


def learning_curve(trainer, test):
    import matplotlib.pyplot as plt

    task = trainer.task
    metric = task.metric
    rows = trainer.history
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [r["trials"] for r in rows]
    ax.plot(x, [r[f"validation_{metric}"] for r in rows], "o-", ms=3, color="black", label="validation")
    trained = [(r["trials"], r[f"train_{metric}"]) for r in rows if r.get(f"train_{metric}") is not None]
    if trained:
        ax.plot(*zip(*trained), "-", color="tab:blue", alpha=0.7, label="training batches (while learning)")
    ax.plot([trainer.trials_done], [test.scores[metric]], "*", ms=12, color="tab:red",
            label=f"test: {test.scores[metric]:.4g}{task.unit}")
    if task.criterion is not None:
        ax.axhline(task.criterion, color="tab:red", ls="--", lw=0.8, label=f"criterion {task.criterion:g}{task.unit}")
    if "baseline_rmse" in test.scores:
        ax.axhline(test.scores["baseline_rmse"], color="tab:orange", ls="--", lw=0.9,
                   label=f"copy-last-value baseline {test.scores['baseline_rmse']:.4f}")
    ax.set_xlabel("training trials")
    ax.set_ylabel(f"{metric}{' (' + task.unit + ')' if task.unit else ''}")
    ax.set_title(f"{trainer.model.network.name} on {task.name}: learning curve")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def activity(trainer, test, name: str, values: np.ndarray):
    """A population's rates over the first test trial (neurons x time), with the mean over the
    recorded test trials; for one-step trials, the rates across test trials instead."""
    import matplotlib.pyplot as plt

    trials = test.trials
    dt = trainer.model.network.dt
    steps, count, size = values.shape
    population = name.rsplit(".", 1)[0]
    p = trainer.model.populations.get(population)
    kind = {1: "excitatory", -1: "inhibitory", 0: "unsigned"}.get(p.sign if p else 0, "")
    if steps < 5:
        order = np.argsort(trials.conditions["label"][:count], kind="stable") if "label" in trials.conditions \
            else np.arange(count)
        fig, ax = plt.subplots(figsize=(8, 4.2))
        image = ax.imshow(values[-1][order].T, aspect="auto", interpolation="nearest", cmap="magma")
        ax.set_xlabel("test trial" + (" (sorted by class)" if "label" in trials.conditions else ""))
        ax.set_ylabel("neuron")
        ax.set_title(f"{name} ({kind}, {size} neurons) at the last step of {count} test trials")
        fig.colorbar(image, ax=ax, label="rate")
        fig.tight_layout()
        return fig
    scale = dt * 1e3 if dt else 1
    time_axis = np.arange(1, steps + 1) * scale  # the rate after step k is the one at the end of the step
    unit = "ms" if dt else "steps"
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    extent = (0, steps * scale, size - 0.5, -0.5)
    image = axes[0].imshow(values[:, 0].T, aspect="auto", interpolation="nearest", cmap="magma", extent=extent)
    fig.colorbar(image, ax=axes, label="rate", fraction=0.03)
    axes[0].set_ylabel("neuron")
    axes[0].set_title(f"{name} ({kind}, {size} neurons): test trial 1" + _condition_text(trials, 0))
    mean = values.mean(axis=2)
    for b in range(min(count, 8)):
        axes[1].plot(time_axis, mean[:, b], lw=0.9, alpha=0.8)
    axes[1].set_ylabel("mean rate")
    axes[1].set_xlabel(f"time ({unit})")
    axes[1].set_title(f"population mean, first {min(count, 8)} test trials", fontsize=9)
    for start, stop in trials.epochs.values():
        if start > 0:
            for ax in axes:
                ax.axvline(start * scale, color="white" if ax is axes[0] else "0.6", lw=0.6, ls=":")
    for epoch, (start, stop) in trials.epochs.items():
        axes[1].text((start + stop) / 2 * scale, 1.0, epoch, transform=axes[1].get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=7, color="0.35")
    axes[1].set_xlim(0, steps * scale)
    return fig


def _condition_text(trials, b: int) -> str:
    shown = []
    for key, value in trials.conditions.items():
        v = np.asarray(value)
        if v.ndim == 1 and key in ("label", "coherence", "choice", "catch", "context", "phase"):
            item = v[b]
            shown.append(f"{key} {item:g}" if isinstance(item, (float, np.floating)) else f"{key} {item}")
    return f" ({', '.join(shown)})" if shown else ""


def weights_figure(trainer):
    """Every projection's weights as sign x magnitude: red excitatory, blue inhibitory."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    sim = trainer.sim
    names = list(sim.weights)[:MAX_WEIGHT_PANELS]
    count = len(names)
    cols = min(4, count)
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        q = sim.program.projections[name]
        sign = sim.program.populations[q.source].sign if sim.program.dale else 0
        w = sim.weights[name] * (sign if sign else 1)
        limit = float(np.abs(w).max()) or 1.0
        image = ax.imshow(w, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-limit, vmax=limit)
        kind = {1: "E", -1: "I", 0: "unsigned"}[sign]
        learned = f", learns: {q.rule.name}" if q.rule is not None else ""
        ax.set_title(f"{name} ({kind}{learned})", fontsize=8)
        ax.set_xlabel(f"{q.source} (pre)", fontsize=7)
        ax.set_ylabel(f"{q.target} (post)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    more = len(sim.weights) - count
    fig.suptitle("weights after training: sign x magnitude (red excitatory, blue inhibitory)"
                 + (f"; {more} more in weights.npz" if more > 0 else ""), fontsize=10)
    fig.tight_layout()
    return fig
