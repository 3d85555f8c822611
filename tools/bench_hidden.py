"""Hidden-layer learning: test accuracy with and without it, and what a two-phase trial costs.

    python tools/bench_hidden.py [--models eiann_digits,eiann_digits_small,eiann_spirals,decision_rflo]
                                 [--seeds 1,2,3] [--trials N] [--backend numba] [--json OUT]

For each model (models/NAME.ei) and each run seed, ``eigraph run``'s training loop (the run block,
``--trials`` overriding its trials) runs twice: as written, and with every learning projection into
a hidden population other than the output, and every learned bias of one, frozen (``--freeze``: the ablation; the output still learns). Printed: test
accuracy, mean and range over the seeds, for both, and the difference.

Speed: for each model, the median wall time of one training batch with every phase (the
trainer's ``run_batch``), beside the sum of its phases run alone (each phase a trial of its own:
``reset_state`` and its steps as one ``sim.run`` call with the same arrays, learning on). Target (issue 11): the two-phase trial costs
no more than the sum of its phases.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eigraph  # noqa: E402
from eigraph.runtime.train import Trainer, plan_run  # noqa: E402


def hidden_learning(model) -> list[str]:
    """The learning projections into hidden populations and the learned biases of hidden populations
    (not of the run's target populations, the output): what --freeze turns off for the control, in
    which only the output (its weights and its bias) learns."""
    targets = set(plan_run(model).targets)

    def hidden(pop: str) -> bool:
        return model.populations[pop].role == "hidden" and pop not in targets

    return ([name for name, p in model.projections.items() if p.learn and hidden(p.target)]
            + [f"bias->{name}" for name, pop in model.populations.items() if pop.learn_bias and hidden(name)])


def train_once(model, seed: int, trials: int | None, backend: str, freeze: list[str]) -> float:
    config = plan_run(model, trials=trials, seed=seed, backend=backend, freeze=freeze)
    trainer = Trainer(model, config)
    trainer.train(handle_sigint=False)
    test = trainer.evaluate("test")
    return float(test.scores[trainer.task.metric])


def phase_costs(model, backend: str, repeats: int = 30) -> tuple[float, float]:
    """(median ms of one training batch with every phase, median ms of its phases run alone, summed)."""
    trainer = Trainer(model, plan_run(model, trials=1, backend=backend))
    sim, phases = trainer.sim, trainer.phases
    trials = trainer.task.train_batch(0, trainer.config.batch)
    for _ in range(3):
        trainer.run_batch(trials, learn=True)
    whole, alone = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.run_batch(trials, learn=True)
        whole.append(time.perf_counter() - start)
        total = 0.0
        for phase in phases:
            first = trials.steps - (phase.steps or trials.steps)
            inputs = {name: trials.inputs[first:, :, s] for name, s in trainer.in_slices}
            targets = {name: trials.targets[first:, :, s] for name, s in trainer.out_slices}
            start = time.perf_counter()  # each phase alone is a trial of its own: from rest
            sim.reset_state()
            sim.run(inputs, record=[f"{n}.r" for n, _ in trainer.out_slices], targets=targets, learn=True,
                    phase=phase.index)
            total += time.perf_counter() - start
        alone.append(total)
    return statistics.median(whole) * 1e3, statistics.median(alone) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="eiann_digits,eiann_digits_small,eiann_spirals")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--trials", type=int, default=None, help="training trials (default: each run block's)")
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, out = [], {}
    for name in args.models.split(","):
        model = eigraph.load(ROOT / "models" / f"{name}.ei")
        frozen = hidden_learning(model)
        learned = [train_once(model, seed, args.trials, args.backend, []) for seed in seeds]
        control = [train_once(model, seed, args.trials, args.backend, frozen) for seed in seeds]
        whole, alone = phase_costs(model, args.backend)
        out[name] = {"seeds": seeds, "learned": learned, "frozen": control, "frozen_projections": frozen,
                     "trial_ms": whole, "phases_alone_ms": alone}
        rows.append((name, learned, control, whole, alone))
        print(f"{name}: learned {learned}, frozen {control}, trial {whole:.2f} ms, phases alone {alone:.2f} ms",
              file=sys.stderr, flush=True)

    def cell(values):
        return f"{statistics.mean(values):.1f}% ({min(values):.1f}-{max(values):.1f})"

    print(f"\nseeds {args.seeds}; test accuracy, mean (range); --freeze: every learning projection into a "
          "hidden population and every learned hidden bias\n")
    print("| model | hidden layers learn | hidden frozen | difference | two-phase trial | phases alone | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, learned, control, whole, alone in rows:
        # a model without phases has one trial, no phases to run alone: its trial time, no ratio
        timing = f"{whole:.2f} ms | {alone:.2f} ms | {whole / alone:.2f}" if alone else f"{whole:.2f} ms | one phase | -"
        print(f"| {name} | {cell(learned)} | {cell(control)} | {statistics.mean(learned) - statistics.mean(control):+.1f} "
              f"points | {timing} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
