"""The training loop behind ``eigraph run``: trials from a task, local learning, evaluation on
held-out trials, checkpoints.

One batch of trials at a time (docs/tasks.md):

- the dynamic state goes back to rest (:meth:`Simulator.reset_state`: weights, traces and the
  noise stream go on);
- the trial runs in segments of steps where learning is on or off for the whole batch: learning
  (with the targets) on the steps whose target counts for every trial of the batch (the task's
  mask), without learning elsewhere. Epochs are aligned within a batch, so for the built-in tasks
  this is exactly the task's mask. A rule ``on trial`` updates at the end of each learning segment.
  When a rule on step with traces learns (rflo, eprop, reward_hebb, ...), the trial is one call
  instead: the traces integrate on every step, the weights change and the errors count only on
  the masked steps, and rules ``on trial`` update at the trial's end;
  A run of reward-driven rules (reading ``reward`` or ``reward_baseline``) instead learns on every
  step with the task's reward on the last one, probed without learning and replayed exactly
  (:meth:`Trainer._run_rewarded`, docs/runtime.md, rewards);
- the training batch's score is kept for the learning curve.

Every ``eval_every`` trials (and before the first and after the last batch) the network runs
without learning on the task's validation trials; at the end on its test trials. Evaluations draw
their noise from their own generator, so how often one evaluates does not change training. The
training stream is a function of (seed, batch number), and a checkpoint holds the simulator's
whole state (weights, traces, noise stream) with the loop's counters and history: a run resumed
from one goes on exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from eigraph.expr import ast as ex
from eigraph.runtime.tasks import Task, TaskError, Trials, make_task, parse_task
from eigraph.runtime.threads import blas_threads

CHECKPOINT_FORMAT = 1
EVAL_NOISE_KEY = 7  # seeds the evaluation noise: [seed, 7, split]
REWARD_SYMBOLS = {"reward", "reward_baseline"}
DEFAULT_BASELINE_TRIALS = 4.0  # Miconi 2017's ALPHATRACE = 0.75: R_bar <- 0.75 R_bar + 0.25 R


@dataclass
class RunConfig:
    """What a run does: the model's run block with the command line's overrides applied."""

    task: dict
    inputs: list[str]
    targets: list[str]
    trials: int
    batch: int
    steps: int | None
    record: list[str]
    seed: int
    backend: str = "numba"
    eval_every: int = 0  # trials; 0: about 20 evaluations per run
    checkpoint_every: int = 0  # trials; 0: about 10 checkpoints per run
    freeze: list[str] = field(default_factory=list)  # glob patterns: projections (and bias->POP) not learning here

    @property
    def batches(self) -> int:
        return max(1, math.ceil(self.trials / self.batch))

    def every(self, trials: int, default_count: int) -> int:
        """A schedule in batches: every ``trials`` trials, or about ``default_count`` times a run."""
        if trials:
            return max(1, round(trials / self.batch))
        return max(1, round(self.batches / default_count))

    def same_run(self, other: RunConfig) -> list[str]:
        """The settings of ``other`` that differ in a way that changes training (for --resume)."""
        keys = ("task", "inputs", "targets", "batch", "steps", "seed", "freeze")
        return [k for k in keys if _jsonable(getattr(self, k)) != _jsonable(getattr(other, k))]


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


DEFAULT_TRIALS = 1000
DEFAULT_BATCH = 16


def plan_run(model, task: str | None = None, trials: int | None = None, batch: int | None = None,
             steps: int | None = None, seed: int | None = None, backend: str = "numba",
             eval_every: int = 0, checkpoint_every: int = 0, freeze=()) -> RunConfig:
    """The run block of ``model`` with these overrides; missing inputs and targets are inferred
    (the input populations; the populations whose rules read ``target``). :class:`TaskError`
    says what is missing or wrong."""
    spec = model.run
    task_spec = parse_task(task) if task else (spec.task if spec is not None else None)
    if task_spec is None:
        raise TaskError(f"'{model.path}' has no task: add a run block (run {{ task = digits; inputs = ...; "
                        "targets = ... }) or pass --task")
    populations = model.populations
    inputs = list(spec.inputs) if spec is not None and spec.inputs else \
        [name for name, p in populations.items() if p.role == "input"]
    targets = list(spec.targets) if spec is not None and spec.targets else []
    if not targets:
        readers = []
        for projection in model.projections.values():
            rule = model.rules.get(projection.learn["rule"]) if projection.learn else None
            if rule is not None and "target" in rule_names(rule) and projection.target not in readers:
                readers.append(projection.target)
        for name, p in populations.items():  # a learned bias whose rule reads the target
            rule = model.rules.get(p.learn_bias["rule"]) if p.learn_bias else None
            if rule is not None and "target" in rule_names(rule) and name not in readers:
                readers.append(name)
        targets = readers or [name for name, p in populations.items() if p.role == "readout"]
    if not inputs:
        raise TaskError(f"'{model.path}' has no input population for the task's inputs")
    if not targets:
        raise TaskError(f"'{model.path}' has no population for the task's outputs: set targets in the run block")
    for what, value in (("trials", trials), ("batch", batch), ("steps", steps)):
        if value is not None and value < 1:
            raise TaskError(f"--{what} must be at least 1, got {value}")
    if seed is not None and not 0 <= seed < 2**32:
        raise TaskError(f"--seed must be between 0 and 2^32 - 1, got {seed}")
    for what, value in (("eval-every", eval_every), ("checkpoint-every", checkpoint_every)):
        if value < 0:
            raise TaskError(f"--{what} must be 0 (automatic) or a number of trials, got {value}")
    def pick(given, key, default):
        if given is not None:
            return given
        return getattr(spec, key) if spec is not None and getattr(spec, key) is not None else default

    frozen_projections(model, list(freeze))  # every pattern must match a learning projection
    return RunConfig(task=task_spec, inputs=inputs, targets=targets,
                     trials=int(pick(trials, "trials", DEFAULT_TRIALS)), batch=int(pick(batch, "batch", DEFAULT_BATCH)),
                     steps=pick(steps, "steps", None), record=list(spec.record) if spec is not None else [],
                     seed=int(pick(seed, "seed", model.network.seed)), backend=backend,
                     eval_every=int(eval_every), checkpoint_every=int(checkpoint_every), freeze=list(freeze))


def frozen_projections(model, patterns: list[str]) -> list[str]:
    """The learning projections and learned biases (named ``bias->POP``) whose names match one of the
    glob ``patterns`` (``--freeze``); a pattern that matches none is a :class:`TaskError` naming the
    ones that learn."""
    import fnmatch

    learning = [name for name, p in model.projections.items() if p.learn]
    learning += [p.bias_name for p in model.populations.values() if p.learn_bias]
    out = []
    for pattern in patterns:
        matched = [name for name in learning if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise TaskError(f"--freeze {pattern!r} matches no projection that learns (they are: "
                            f"{', '.join(learning) or 'none'}); patterns are globs over projection names, "
                            "for example --freeze 'H1.*' or --freeze 'Input.E->H1.E'")
        out += [name for name in matched if name not in out]
    return out


def rule_names(rule) -> set[str]:
    """The names a rule's statements read (``pre``, ``target``, ``reward``, ...)."""
    from eigraph.expr import ast as ex

    return {n.dotted for s in rule.statements for n in ex.walk(s.value) if isinstance(n, ex.Name)}


@dataclass
class Evaluation:
    scores: dict
    trials: Trials
    outputs: np.ndarray  # (T, B, n_out)
    records: dict[str, np.ndarray] = field(default_factory=dict)  # of the first batch of trials


class Stop:
    """Set by Ctrl-C (see :meth:`Trainer.train`) or by a caller: the loop stops after the batch."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


class Trainer:
    """Trains ``model`` on its task. ``Trainer(model, plan_run(model)).train()``."""

    def __init__(self, model, config: RunConfig, sim=None):
        self.model = model
        self.config = config
        self.task: Task = make_task(config.task, config.seed, model.network.dt, config.steps)
        self.in_slices = self._slices(config.inputs, self.task.n_in, "inputs", self.task.input_names,
                                      role="input")
        self.out_slices = self._slices(config.targets, self.task.n_out, "targets", self.task.output_names)
        self.frozen = frozen_projections(model, list(config.freeze))
        self._check_rules()
        self._check_error_feedback()
        if sim is None:  # the state, weights and a trial's arrays must fit before anything is drawn
            from eigraph.check.resources import refuse

            trial = getattr(self.task, "trial_steps", None) or getattr(self.task, "length", None) or config.steps
            refuse(model.graph, config.batch, trial, config.record or None, what=f"'{model.path}'")
        self._check_phases(model, config)
        if sim is None:
            sim = self._compile(model, config)
        self.sim = sim
        self.phases = self.sim.program.phases
        for name in config.record:
            try:
                self.sim.read(name)
            except KeyError as exc:
                raise TaskError(f"record: {exc.args[0]}") from None
        self.baseline = self._baseline_settings()
        self.baselines: dict[str, float] = {}  # trial type -> running mean of the reward
        self.batches_done = 0
        self.history: list[dict] = []
        self.elapsed = 0.0  # seconds of training and evaluation, over every session of this run
        self.pending: list[float] = []  # training-batch scores since the last evaluation
        self.interrupted = False
        self.initial_weight_scale = max((float(np.abs(w).max()) for w in self.sim.weights.values() if np.size(w)),
                                        default=0.0)

    # set-up ------------------------------------------------------------------------------------
    def _compile(self, model, config):
        """The simulator; frozen projections (--freeze) are compiled without their rule."""
        if not self.frozen:
            return model.compile(backend=config.backend, batch=config.batch, seed=config.seed)
        from eigraph.compile.lower import lower
        from eigraph.runtime.simulator import Simulator

        graph = model.graph.copy()
        for source, target, key, data in graph.edges(keys=True, data=True):
            if key in self.frozen:
                graph.edges[source, target, key].update(learn=None, plastic=False)
        for name in graph.nodes:
            if f"bias->{name}" in self.frozen:  # a frozen learned bias keeps its initial value
                graph.nodes[name].update(learn_bias=None)
        return Simulator(lower(graph, batch=config.batch), backend=config.backend, batch=config.batch,
                         seed=config.seed)

    def _check_phases(self, model, config) -> None:
        """Every phase fits in the task's trial, and the free phase (the one scored) spans all of it."""
        if not model.phases:
            return
        trial = self.task.split("validation").steps
        free = model.phases[0]
        if free.steps is not None and free.steps != trial:
            raise TaskError(f"the free phase '{free.name}' runs {free.steps} steps, but the {self.task.name} task's "
                            f"trials have {trial}: the free phase is scored against the whole trial, so give it "
                            f"steps = {trial} (or leave steps out of it)" + (
                                "; for digits and spirals the run block's steps sets the trial's length"
                                if self.task.name in ("digits", "spirals") else ""))
        for phase in model.phases[1:]:
            if phase.steps is not None and phase.steps > trial:
                raise TaskError(f"phase '{phase.name}' runs {phase.steps} steps, but the {self.task.name} task's "
                                f"trials have {trial}: a phase presents the trial's last steps, so give it at most "
                                f"steps = {trial}")

    def _slices(self, names: list[str], width: int, key: str, channels: list[str], role: str | None = None):
        populations = self.model.populations
        out, start = [], 0
        for name in names:
            p = populations.get(name)
            if p is None:
                raise TaskError(f"{key}: no population '{name}'")
            if role == "input" and p.role != "input":
                raise TaskError(f"inputs: '{name}' is not an input population")
            if role is None and p.role == "input":
                raise TaskError(f"targets: '{name}' is an input population")
            out.append((name, slice(start, start + p.size)))
            start += p.size
        if start != width:
            what = "inputs" if key == "inputs" else "outputs"
            sizes = " + ".join(f"{n} ({populations[n].size})" for n in names)
            listed = f" ({', '.join(channels)})" if channels and len(channels) <= 12 else ""
            raise TaskError(f"the {self.task.name} task has {width} {what}{listed}, but the {key} population"
                            f"{'s' if len(names) > 1 else ''} {sizes} {'have' if len(names) > 1 else 'has'} "
                            f"{start} neuron{'s' if start != 1 else ''}: make the sizes match")
        return out

    def _check_rules(self):
        targets = set(self.config.targets)
        rewarded, supervised = [], []
        uses = [(q.name, q.learn, q.target) for q in self.model.projections.values()]
        uses += [(p.bias_name, p.learn_bias, p.name) for p in self.model.populations.values()]
        for name, learn, target in uses:
            if not learn:
                continue
            if name in getattr(self, "frozen", ()):
                continue
            rule = self.model.rules[learn["rule"]]
            names = rule_names(rule)
            if names & REWARD_SYMBOLS and "target" in names:
                raise TaskError(f"rule '{rule.name}' on {name} reads both the task's reward and its targets: eigraph "
                                "run trains a rule from one or the other (a reward-driven run gives no targets to "
                                "the rules); write it with reward or with target, or run it from Python with "
                                "sim.run(..., targets=..., reward=...)")
            if names & REWARD_SYMBOLS:
                rewarded.append((name, rule.name))
            if "target" in names:
                supervised.append((name, rule.name))
            if "target" in names and target not in targets:
                raise TaskError(f"rule '{rule.name}' on {name} reads 'target', but '{target}' "
                                f"is not one of the run's targets ({', '.join(self.config.targets)})")
        if rewarded and supervised:
            raise TaskError(f"rule '{rewarded[0][1]}' on {rewarded[0][0]} learns from the task's reward and rule "
                            f"'{supervised[0][1]}' on {supervised[0][0]} from its targets: eigraph run trains one or "
                            "the other in a run (a reward-driven run learns on every step of the trial, a "
                            "target-driven one where the target counts); freeze one of them (--freeze) or train "
                            "them in separate runs")
        if rewarded and self.model.phases:
            raise TaskError(f"rule '{rewarded[0][1]}' on {rewarded[0][0]} learns from the task's reward, but the "
                            "model has phases: eigraph run trains reward-driven rules in models without phases")
        self.rewarded = [name for name, _ in rewarded]

    def _baseline_settings(self) -> tuple[float, bool] | None:
        """(trials, per_type) of the reward baseline the reward-driven rules read (their parameters
        baseline_trials and baseline_per_type), or None when no rule reads reward_baseline."""
        settings = {}
        for q in self.sim.program.learners:
            if q.name not in self.rewarded or not any(
                    isinstance(n, ex.Name) and n.dotted == "reward_baseline"
                    for st in q.rule.statements for n in ex.walk(st.value)):
                continue
            trials = float(q.rule.params.get("baseline_trials", DEFAULT_BASELINE_TRIALS))
            per_type = float(q.rule.params.get("baseline_per_type", 1.0))
            if trials < 1 or per_type not in (0.0, 1.0):
                raise TaskError(f"rule '{q.rule.name}' on {q.name}: baseline_trials must be at least 1 (trials) and "
                                f"baseline_per_type 0 (one baseline) or 1 (one per trial type); got {trials:g} and "
                                f"{per_type:g}")
            settings[q.name] = (trials, per_type == 1.0)
        if not settings:
            return None
        if len(set(settings.values())) > 1:
            detail = ", ".join(f"{k}: baseline_trials = {v[0]:g}, baseline_per_type = {int(v[1])}"
                               for k, v in settings.items())
            raise TaskError(f"the reward-driven rules of this run read reward_baseline with different settings "
                            f"({detail}): eigraph run keeps one baseline per run, so give them the same")
        return next(iter(settings.values()))

    def baseline_of(self, types: list[str]) -> np.ndarray:
        """The reward baseline of each trial of a batch before its rewards count: the running mean of
        its type (or of every trial, baseline_per_type = 0); a type not seen yet has none, so the
        trial's own reward stands in (no reward prediction error: the first trial of a type does not
        learn)."""
        per_type = self.baseline is None or self.baseline[1]
        return np.array([self.baselines.get(t if per_type else "all", np.nan) for t in types])

    def update_baselines(self, types: list[str], rewards: np.ndarray) -> None:
        """Fold a batch's rewards into the running means, trial by trial in batch order:
        R_bar <- R_bar + (R - R_bar) / baseline_trials (Miconi 2017: R_bar <- a R_bar + (1 - a) R
        with a = 1 - 1 / baseline_trials); the first reward of a type starts its mean."""
        if self.baseline is None:
            return
        trials, per_type = self.baseline
        for t, r in zip(types, rewards):
            key = t if per_type else "all"
            old = self.baselines.get(key)
            self.baselines[key] = float(r) if old is None else old + (float(r) - old) / trials

    def _check_error_feedback(self):
        """A ``carry = error`` projection delivers its source's error, target - r: the source must be one of
        the run's targets (else its error would be 0 throughout and the rules reading it would not learn)."""
        targets = set(self.config.targets)
        for q in self.model.projections.values():
            if q.carry == "error" and q.source not in targets:
                raise TaskError(f"{q.name} carries the error of '{q.source}', but '{q.source}' is not one of the "
                                f"run's targets ({', '.join(self.config.targets) or 'none'}): add it to targets")

    # running trials ----------------------------------------------------------------------------
    @property
    def trials_done(self) -> int:
        return self.batches_done * self.config.batch

    def run_batch(self, trials: Trials, learn: bool, record=()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run one batch of trials (exactly ``batch`` of them) from rest; the outputs (T, B, n_out)
        and the ``record``ed arrays (T, B, N)."""
        sim = self.sim
        sim.reset_state()
        outputs = [f"{name}.r" for name, _ in self.out_slices]
        names = list(dict.fromkeys(outputs + list(record)))
        # evaluation runs the free phase only; training every phase in order, each from the state
        # the one before left. A phase of s steps presents the trial's last s steps.
        phases = self.phases[:1] if not learn else self.phases
        if learn and self.rewarded:
            arrays = self._run_rewarded(trials, names)
            output = np.concatenate([arrays[name] for name in outputs], axis=2)
            return output, {name: arrays[name] for name in record}
        arrays: dict[str, np.ndarray] = {}
        for k, phase in enumerate(phases or [None]):
            # a phase's steps fit the trial (_check_phases); the free phase spans all of it
            first = 0 if phase is None or not phase.steps else trials.steps - phase.steps
            # only the free phase's output is scored and recorded: the later phases record nothing
            result = self._run_steps(trials, first, learn, names if k == 0 else [], phase)
            if k == 0:
                arrays = result
        output = np.concatenate([arrays[name] for name in outputs], axis=2)
        return output, {name: arrays[name] for name in record}

    def _run_rewarded(self, trials: Trials, names: list[str]) -> dict[str, np.ndarray]:
        """A training trial of reward-driven rules (docs/runtime.md, rewards): learning on every
        step, the reward on the last. The reward depends on the trial's outputs, the last step's
        included, so: (1) steps 0 to T - 2 run learning (traces integrate; rules on trial do not
        update yet) with reward 0; (2) the last step runs without learning, to read the outputs;
        (3) the task's reward and the baseline are computed; (4) the state (noise and draw streams
        included) goes back to before the last step, which runs again, learning, with the reward
        and the baseline: the same step, so the same outputs, and the rules see the reward where
        it exists. Rules on trial that read the reward start the trial with their traces at their
        initial values (the eligibility of this trial)."""
        sim, steps, batch = self.sim, trials.steps, self.config.batch
        for q in sim.program.learners:
            if q.name in self.rewarded and q.rule.timing == "trial":
                for trace in q.rule.analysis.trace_shape:
                    sim.traces[f"{q.name}:{trace}"][...] = q.rule.trace_init.get(trace, 0.0)
        inputs = {name: trials.inputs[:, :, s] for name, s in self.in_slices}
        zeros = np.zeros((max(steps - 1, 0), batch))
        head = sim.run({k: v[:-1] for k, v in inputs.items()}, record=names, learn=True, trial_end=False,
                       reward=zeros, reward_baseline=zeros) if steps > 1 else None
        saved = sim._snapshot()
        streams = [sim.noise_rng] + list(sim.draw_rngs.values())
        states = [rng.bit_generator.state for rng in streams]
        probe = sim.run({k: v[-1:] for k, v in inputs.items()}, record=names, learn=False)
        arrays = {name: probe[name] if head is None else np.concatenate([head[name], probe[name]], axis=0)
                  for name in names}
        output = np.concatenate([arrays[f"{name}.r"] for name, _ in self.out_slices], axis=2)
        reward = np.asarray(self.task.reward(trials, output), dtype=np.float64)
        types = self.task.trial_types(trials)
        baseline = self.baseline_of(types)
        baseline = np.where(np.isnan(baseline), reward, baseline)
        sim._restore(saved)
        for rng, state in zip(streams, states):
            rng.bit_generator.state = state
        sim.run({k: v[-1:] for k, v in inputs.items()}, record=[], learn=True, trial_end=True,
                reward=reward[None], reward_baseline=baseline[None])
        self.update_baselines(types, reward)
        self.last_rewards = reward
        return arrays

    def _run_steps(self, trials: Trials, first: int, learn: bool, names: list[str], phase):
        """Steps ``first`` to the end of a trial, in segments with learning on or off (on where the
        task's target counts for the whole batch); a phase that nudges or clamps gets its targets
        throughout."""
        sim, steps = self.sim, trials.steps
        learning = trials.mask.all(axis=1) if learn else np.zeros(steps, dtype=bool)
        which = None if phase is None else phase.index
        driven = set(phase.nudge + phase.clamp) if phase is not None else set()
        if phase is not None and learn:
            program = sim.program
            rules = [q.rule for q in program.learners if program.learns_in(q, phase.index)]
            if not rules:  # nothing learns in this phase: one call
                learning = np.zeros(steps, dtype=bool)
            elif all(r.timing == "trial" and not r.analysis.trace_shape for r in rules) and learning[-1] and \
                    not (np.diff(learning[first:].astype(np.int8)) < 0).any():
                # rules without traces that update once, at the end of the phase, give the same
                # weights from one call over the phase as from a last learning segment: one call
                learning = np.ones(steps, dtype=bool)
        if learn and learning[first:].any() and self._traces_run(phase):
            # rules on step with traces: one call, the traces integrating on every step (the
            # eligibility of the stimulus epoch reaches the decision), the weights changing and the
            # errors counting only where the task's target counts (Simulator.run's learn per step)
            inputs = {name: trials.inputs[first:, :, s] for name, s in self.in_slices}
            given = {name: trials.targets[first:, :, s] for name, s in self.out_slices}
            return sim.run(inputs, record=names, targets=given, learn=learning[first:], phase=which)
        pieces: dict[str, list[np.ndarray]] = {name: [] for name in names}
        start = first
        while start < steps:
            stop = start + 1
            while stop < steps and learning[stop] == learning[start]:
                stop += 1
            inputs = {name: trials.inputs[start:stop, :, s] for name, s in self.in_slices}
            given = {name: trials.targets[start:stop, :, s] for name, s in self.out_slices
                     if learning[start] or name in driven}
            out = sim.run(inputs, record=names, targets=given or None, learn=bool(learning[start]), phase=which)
            for name in names:
                pieces[name].append(out[name])
            start = stop
        return {name: np.concatenate(parts, axis=0) for name, parts in pieces.items()}

    def _traces_run(self, phase) -> bool:
        """Whether a rule on step that learns in this phase has traces: then a trial runs as one
        call with learning gated per step (its traces would otherwise stop where the target does
        not count)."""
        program = self.sim.program
        return any(q.rule.timing == "step" and q.rule.analysis.trace_shape
                   and (phase is None or program.learns_in(q, phase.index)) for q in program.learners)

    def evaluate(self, split: str, record=(), record_trials: int = 0) -> Evaluation:
        """Run the task's ``split`` trials without learning (in batches, the last one padded);
        ``record`` over the first batch, or over the first ``record_trials`` trials."""
        trials = self.task.split(split)
        sim, batch = self.sim, self.config.batch
        saved_rng = sim.noise_rng
        key = {"validation": 1, "test": 2}.get(split, 3)
        sim.noise_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.config.seed,
                                                                                     EVAL_NOISE_KEY, key])))
        outputs, recorded = [], {name: [] for name in record}
        wanted = max(record_trials, 1) if record else 0
        try:
            for start in range(0, len(trials), batch):
                index = np.arange(start, start + batch) % len(trials)
                chunk = trials.take(index)
                out, rec = self.run_batch(chunk, learn=False, record=record if start < wanted else ())
                keep = min(batch, len(trials) - start)
                outputs.append(out[:, :keep])
                for name, value in rec.items():
                    recorded[name].append(value[:, :keep])
        finally:
            sim.noise_rng = saved_rng
        output = np.concatenate(outputs, axis=1)
        records = {name: np.concatenate(parts, axis=1) for name, parts in recorded.items() if parts}
        return Evaluation(self.task.score(trials, output), trials, output, records)

    # the loop ----------------------------------------------------------------------------------
    def train(self, stop=None, progress=None, checkpoint=None, handle_sigint: bool = True) -> str:
        """Train until the configured number of trials: ``"done"``, or ``"interrupted"`` when
        ``stop()`` became true (Ctrl-C sets it when ``handle_sigint``: the current batch
        finishes, a checkpoint is written, and the loop returns; a second Ctrl-C aborts at once).
        ``progress(trainer)`` is called after every batch; ``checkpoint(trainer)`` when one is due."""
        stop = stop or Stop()
        config = self.config
        eval_batches = config.every(config.eval_every, 20)
        checkpoint_batches = config.every(config.checkpoint_every, 10)
        previous = None
        if handle_sigint and isinstance(stop, Stop) and threading.current_thread() is threading.main_thread():
            def on_sigint(signum, frame):
                if stop.requested:
                    raise KeyboardInterrupt
                stop.requested = True
                print("\neigraph run: stopping after this batch and writing a checkpoint (Ctrl-C again to abort)",
                      file=sys.stderr, flush=True)

            previous = signal.signal(signal.SIGINT, on_sigint)
        limits = blas_threads(1)  # small products: extra BLAS threads only spin (see blas_threads)
        limits.__enter__()
        try:
            if not self.history:
                self._evaluate_now()
            while self.batches_done < config.batches and not stop():
                started = time.perf_counter()
                trials = self.task.train_batch(self.batches_done, config.batch)
                outputs, _ = self.run_batch(trials, learn=True)
                score = self.task.score(trials, outputs)[self.task.metric]
                if np.isfinite(score):
                    self.pending.append(float(score))
                self.batches_done += 1
                self.elapsed += time.perf_counter() - started
                last = self.batches_done == config.batches
                if self.batches_done % eval_batches == 0 or last:
                    self._evaluate_now()
                if checkpoint is not None and (self.batches_done % checkpoint_batches == 0 or last):
                    checkpoint(self)
                if progress is not None:
                    progress(self)
            if stop() and self.batches_done < config.batches:
                self.interrupted = True
                if checkpoint is not None:
                    checkpoint(self)
                return "interrupted"
            return "done"
        finally:
            limits.__exit__(None, None, None)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _evaluate_now(self):
        if self.history and self.history[-1]["trials"] == self.trials_done:
            return
        started = time.perf_counter()
        result = self.evaluate("validation")
        self.elapsed += time.perf_counter() - started
        metric = self.task.metric
        row = {"trials": self.trials_done,
               f"train_{metric}": float(np.mean(self.pending)) if self.pending else None,
               f"validation_{metric}": float(result.scores[metric]),
               "elapsed_s": round(self.elapsed, 3)}
        self.pending = []
        self.history.append(row)

    # checkpoints -------------------------------------------------------------------------------
    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        meta = {"format": CHECKPOINT_FORMAT, "config": asdict(self.config), "batches_done": self.batches_done,
                "trials_done": self.trials_done, "history": self.history, "elapsed": self.elapsed,
                "pending": self.pending, "model_hash": self.sim.program.content_hash,
                "initial_weight_scale": self.initial_weight_scale, "baselines": self.baselines}
        arrays = dict(self.sim.state_arrays())
        arrays["trainer"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        return arrays

    def save_checkpoint(self, path) -> None:
        import io

        from eigraph.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **self.checkpoint_arrays())
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path) -> dict:
        """Go on from a checkpoint of this run; returns its trainer record. :class:`TaskError`
        when it is not one, or was written for a different model or run settings."""
        meta = read_checkpoint(path)
        if meta.get("model_hash") != self.sim.program.content_hash:
            raise TaskError(f"'{path}' was written for a different model (or eigraph version): it cannot be resumed "
                            "with this one")
        saved = RunConfig(**meta["config"])
        differ = self.config.same_run(saved)
        if differ:
            detail = ", ".join(f"{k} {_jsonable(getattr(saved, k))} (now {_jsonable(getattr(self.config, k))})"
                               for k in differ)
            raise TaskError(f"'{path}' was written by a run with other settings: {detail}; resume with the same "
                            "settings, or start a new run in another folder")
        try:
            self.sim.load(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file: say so plainly
            raise TaskError(f"cannot resume from '{path}': {exc}") from None
        self.batches_done = int(meta["batches_done"])
        self.history = list(meta["history"])
        self.elapsed = float(meta["elapsed"])
        self.pending = list(meta.get("pending", []))
        self.baselines = {str(k): float(v) for k, v in meta.get("baselines", {}).items()}
        if meta.get("initial_weight_scale") is not None:
            self.initial_weight_scale = float(meta["initial_weight_scale"])
        return meta


def read_checkpoint(path) -> dict:
    """The trainer record of a checkpoint file (and a check that it is one)."""
    import zipfile

    from eigraph.check.resources import FileProblem, regular_file

    try:
        regular_file(path)  # a FIFO or a device is not opened
    except FileProblem as exc:
        raise TaskError(f"cannot read the checkpoint '{path}': {exc.message}") from None
    damaged = (f"cannot read the checkpoint '{path}': it is not an eigraph run checkpoint (a damaged file, or "
               "another kind of file under its name); start the run again in a new folder, or with --force")
    try:
        if not zipfile.is_zipfile(path):  # a .npy, a pickle, a text file, a truncated write ...
            raise TaskError(damaged)
        with np.load(path, allow_pickle=False) as data:
            if "trainer" not in data or "meta" not in data:
                raise TaskError(f"'{path}' is not an eigraph run checkpoint (it holds no trainer record)")
            meta = json.loads(bytes(data["trainer"]).decode())
    except TaskError:
        raise
    except Exception:  # noqa: BLE001 - unreadable, truncated, or arrays of objects: never numpy's advice
        raise TaskError(damaged) from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise TaskError(f"'{path}' is a checkpoint of another format "
                        f"({meta.get('format') if isinstance(meta, dict) else 'unknown'})")
    try:
        RunConfig(**meta["config"])
        int(meta["batches_done"]), list(meta["history"]), float(meta["elapsed"])
    except Exception:  # noqa: BLE001
        raise TaskError(damaged) from None
    return meta


def _shown(value) -> str:
    if value is None:
        return "not set"
    if isinstance(value, dict):
        return str(value.get("text") or value.get("name"))
    return str(value)


OVERRIDABLE = ("task", "trials", "batch", "steps", "seed", "backend", "eval_every", "checkpoint_every", "freeze")


def resumed_config(meta: dict, overrides: dict) -> RunConfig:
    """The run configuration stored in a checkpoint, with the command line's ``overrides`` (the
    options given: None for those left out). An override that differs from the stored value is
    refused (:class:`TaskError` naming both), except ``trials``, which may grow."""
    saved = RunConfig(**meta["config"])
    conflicts = []
    for key, value in overrides.items():
        if value is None:
            continue
        stored = getattr(saved, key)
        if key == "task":
            same = [{k: t.get(k) for k in ("name", "args")} for t in (value, stored)]
            if _jsonable(same[0]) == _jsonable(same[1]):
                continue
        elif _jsonable(value) == _jsonable(stored):
            continue
        if key == "trials" and value > stored:
            saved.trials = int(value)
            continue
        option = "--" + key.replace("_", "-")
        conflicts.append(f"{option} {_shown(value)} (the run was started with {_shown(stored)})")
    if conflicts:
        raise TaskError("--resume goes on with the settings the run was started with, but " + "; ".join(conflicts)
                        + ": leave these options out to go on as started (--trials may only grow), or start a "
                        "new run with -o ANOTHER_DIR (or --force)")
    return saved


class ProgressBar:
    """A plain-text progress bar on stderr: trials, the latest scores, trials per second, time
    left. On a terminal it redraws one line; elsewhere it prints a line every 10%."""

    def __init__(self, trainer: Trainer, stream=None, width: int = 24):
        self.trainer = trainer
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_draw = 0.0
        self.last_decile = -1
        self.start_elapsed = trainer.elapsed
        self.start_trials = trainer.trials_done

    def __call__(self, trainer: Trainer) -> None:
        total = trainer.config.batches * trainer.config.batch
        done = trainer.trials_done
        now = time.monotonic()
        final = done >= total
        decile = int(10 * done / total)
        if self.tty and not final and now - self.last_draw < 0.1:
            return
        if not self.tty and not final and decile == self.last_decile:
            return
        self.last_draw, self.last_decile = now, decile
        line = self.line(trainer, done, total)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def line(self, trainer: Trainer, done: int, total: int) -> str:
        task = trainer.task
        filled = int(self.width * done / total)
        bar = "#" * filled + "." * (self.width - filled)
        spent = trainer.elapsed - self.start_elapsed
        rate = (done - self.start_trials) / spent if spent > 0 else 0.0
        left = (total - done) / rate if rate > 0 else float("nan")
        parts = [f"[{bar}] {done}/{total} trials"]
        metric = task.metric
        train = np.mean(trainer.pending) if trainer.pending else (
            trainer.history[-1].get(f"train_{metric}") if trainer.history else None)
        if train is not None:
            parts.append(f"train {metric} {train:.4g}{task.unit}")
        if trainer.history:
            value = trainer.history[-1][f"validation_{metric}"]
            parts.append(f"validation {metric} {value:.4g}{task.unit}")
        parts.append(f"{rate:,.0f} trials/s")
        if np.isfinite(left) and done < total:
            parts.append(f"{_duration(left)} left")
        return "  ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
