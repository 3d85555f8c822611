"""The Program: a backend-neutral description of one simulation step.

Named state arrays (shapes in neurons; the batch is the last axis, so a population's state is
``(N, B)``) and an ordered list of operations. Each operation declares what it reads and writes;
the order is derived from those declarations (a topological sort, ties broken by declaration
order), never kept by hand. A backend is a translation of the Program and nothing else.

Time convention: ``r[n]`` is a population's rate after ``n`` completed steps (``r[0] = f(x0)``).
Step ``n`` computes ``r[n + 1]``; a projection with delay ``d`` delivers ``r_source[n + 1 - d]``,
so delay 1 (the default) reads the rate at the start of the step and delay 0 the rate just
computed in this step (inputs: the input presented at step ``n``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eigraph.compile.codetext import visible
from eigraph.compile.connectivity import Weights
from eigraph.diagnostics import Span


@dataclass
class PopulationPlan:
    name: str
    index: int
    size: int
    role: str  # input | hidden | readout
    sign: int
    alpha: float
    activation: str
    bias: float | np.ndarray  # per neuron when drawn from a distribution
    noise: float
    x0: float
    compartments: tuple[str, ...]
    compartment_gains: dict[str, float]
    history: int  # ring-buffer length for r: max outgoing delay + 1, at least 2
    span: Span | None = None

    @property
    def ident(self) -> str:
        """A Python identifier for generated code."""
        return f"p{self.index}"


@dataclass
class RulePlan:
    """A learning rule bound to one projection: parameter values (SI units), statements with
    compartment-name parameters substituted, the analysis (trace shapes, factorisation) and
    the traces' initial values."""

    name: str
    timing: str  # step | trial
    params: dict[str, float]
    statements: list
    analysis: object  # eigraph.compile.rules.RuleAnalysis
    trace_init: dict[str, float]
    text: str = ""

    def trace_shape(self, trace: str, n_post: int, n_pre: int, nnz: int | None, batch: int) -> tuple[int, ...]:
        """pre: (N_pre[, B]); post: (N_post[, B]); syn: (N_post, N_pre[, B]) dense or (nnz[, B]) CSR;
        const: (B,) or (1,). The batch axis is absent for ``: shared`` traces."""
        kind = self.analysis.trace_shape[trace]
        batched = self.analysis.batched[trace]
        base = {"pre": (n_pre,), "post": (n_post,), "const": ()}.get(kind)
        if kind == "syn":
            base = (nnz,) if nnz is not None else (n_post, n_pre)
        if batched:
            return base + (batch,)
        return base if base else (1,)


@dataclass
class ProjectionPlan:
    name: str
    index: int
    source: str
    target: str
    compartment: str | None
    delay: int
    sign: int  # of the source: the effective weight is sign * gain * W
    gain: float
    weights: Weights
    span: Span | None = None
    learn: dict | None = None
    bounds: tuple | None = None
    normalize: float | None = None
    rule: RulePlan | None = None
    connectivity: str = "dense"  # as written: "sparse(p = 0.1)"
    learn_phases: tuple[int, ...] | None = None  # the phases the rule updates in; None: every phase
    tie: tuple[str, float] | None = None  # (projection, scale): W = scale * W_projection^T, always
    carry: str = "rate"  # "error": delivers the source's error (target - r; 0 without a target), sign 0

    @property
    def ident(self) -> str:
        return f"w{self.index}"

    @property
    def factor(self) -> float:
        """The constant multiplying W in the delivery: sign (1 if unsigned) times gain."""
        return (self.sign if self.sign != 0 else 1) * self.gain


@dataclass
class BiasPlan:
    """A learned bias (``learn_bias = RULE(...)`` on a population): the weights of synapses from an
    always-on unit onto ``target``. The rule runs as on a projection whose source is one neuron
    with rate 1 (``pre = 1``, ``pre@PHASE = 1``, ``sign = 1``, ``w`` the neuron's bias); its batch
    averaged ``dw`` is added to the bias, clipped to ``bounds`` if given (no Dale clip: a bias is
    signed). ``weights.dense`` is an (N, 1) view of the population's per-neuron ``bias`` array,
    so backends read and write one array."""

    name: str  # bias->POP
    index: int  # after the projections' indices (NaN status codes and identifiers stay distinct)
    target: str
    weights: Weights
    rule: RulePlan
    learn: dict
    bounds: tuple | None = None
    learn_phases: tuple[int, ...] | None = None
    span: Span | None = None
    source = None  # the always-on unit is no population
    compartment = None
    delay = 0
    sign = 0  # no Dale clip; the rule's `sign` reads 1
    gain = 1.0
    normalize = None
    tie = None
    connectivity = "bias"

    @property
    def ident(self) -> str:
        return f"w{self.index}"

    @property
    def factor(self) -> float:
        return 1.0


@dataclass
class PhasePlan:
    """One phase of a trial (docs/runtime.md): its steps and what it does to the dynamics."""

    name: str
    index: int
    steps: int | None
    nudge: tuple[str, ...] = ()
    beta: float = 1.0
    clamp: tuple[str, ...] = ()
    couple: tuple[tuple[str, str], ...] = ()  # (population, compartment) added to the soma
    couple_gain: float = 1.0
    couple_clip: tuple[float, float] | None = None
    couple_from: int | None = None  # index of the phase whose end value is subtracted first

    def couples(self, population: str) -> list[str]:
        return [c for p, c in self.couple if p == population]


@dataclass
class Op:
    kind: str  # input | deliver | integrate | record
    name: str  # the population or projection it acts on
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    order: int = 0  # declaration order, the tie-break


@dataclass
class Program:
    name: str
    file: str
    dtype: np.dtype
    dt: float | None
    seed: int
    populations: dict[str, PopulationPlan]
    projections: dict[str, ProjectionPlan]
    ops: list[Op] = field(default_factory=list)
    content_hash: str = ""
    dale: bool = True
    phases: list[PhasePlan] = field(default_factory=list)
    # values kept at the end of a phase, for rules (pre@free) and couplings (couple_from):
    # (population, what, phase index); what is "r", "x" or a compartment
    phase_values: list[tuple[str, str, int]] = field(default_factory=list)
    biases: dict[str, BiasPlan] = field(default_factory=dict)  # learned biases by population name

    @property
    def plastic(self) -> list[ProjectionPlan]:
        return [q for q in self.projections.values() if q.rule is not None]

    @property
    def learners(self) -> list:
        """Everything a rule updates: plastic projections, then learned biases."""
        return self.plastic + list(self.biases.values())

    def learner(self, name: str):
        """The projection or learned bias (``bias->POP``) called ``name``."""
        if name in self.projections:
            return self.projections[name]
        return next(b for b in self.biases.values() if b.name == name)

    def ties_of(self, name: str) -> list[ProjectionPlan]:
        """The projections tied to ``name`` (whose weights are a scaled transpose of its weights)."""
        return [q for q in self.projections.values() if q.tie is not None and q.tie[0] == name]

    def phase_value_key(self, q: ProjectionPlan, name: str) -> tuple[str, str, int] | None:
        """The kept value a rule of ``q`` reads as ``name`` (``pre@free``, ``post.apical@free``):
        (population, what, phase index), what being ``r``, ``x`` or a compartment; None for an
        unknown phase."""
        base, _, phase = name.partition("@")
        index = next((p.index for p in self.phases if p.name == phase), None)
        if index is None:
            return None
        if base == "pre":
            return None if q.source is None else (q.source, "r", index)
        return q.target, "r" if base == "post" else base[len("post."):], index

    def learns_in(self, q: ProjectionPlan, phase: int) -> bool:
        return q.rule is not None and (q.learn_phases is None or phase in q.learn_phases)

    @property
    def error_sources(self) -> list[str]:
        """Populations whose error (target - r) a ``carry = error`` projection delivers, in program order:
        each keeps a ring buffer of its error as of its rates."""
        names = {q.source for q in self.projections.values() if q.carry == "error"}
        return [name for name in self.populations if name in names]

    def incoming(self, population: str) -> list[ProjectionPlan]:
        return [p for p in self.projections.values() if p.target == population]

    def state_layout(self) -> dict[str, dict]:
        """Every state array: shape (B for the batch), dtype and what it holds."""
        layout = {}
        dtype = str(np.dtype(self.dtype))
        for p in self.populations.values():
            layout[f"{p.name}.r"] = {"shape": [p.history, p.size, "B"], "dtype": dtype,
                                     "holds": f"ring buffer of the last {p.history} rates"}
            if p.name in self.error_sources:
                layout[f"{p.name}.err"] = {"shape": [p.history, p.size, "B"], "dtype": dtype,
                                           "holds": f"ring buffer of the last {p.history} errors target - r "
                                                    "(0 where no target), for carry = error"}
            if p.role != "input":
                layout[f"{p.name}.x"] = {"shape": [p.size, "B"], "dtype": dtype, "holds": "state"}
            for c in p.compartments:
                layout[f"{p.name}.{c}"] = {"shape": [p.size, "B"], "dtype": dtype,
                                           "holds": f"summed input to compartment {c}"}
        for q in self.projections.values():
            w = q.weights
            storage = "csr" if w.is_sparse else "dense"
            layout[f"{q.name}.w"] = {"shape": list(w.shape), "dtype": dtype, "storage": storage, "nnz": w.nnz,
                                     "holds": "magnitudes" if q.sign != 0 else "weights"}
        for b in self.biases.values():
            layout[f"{b.name}.w"] = {"shape": [b.weights.shape[0]], "dtype": dtype, "storage": "dense",
                                     "nnz": b.weights.shape[0], "holds": f"the learned bias of {b.target}"}
        return layout

    def describe(self) -> str:
        """A readable listing of the step, in order."""
        lines = [f"program {self.name}: {len(self.populations)} populations, {len(self.projections)} projections",
                 "", "one step, in order:"]
        for i, op in enumerate(self.ops):
            if op.kind == "deliver":
                q = self.projections[op.name]
                where = f".{q.compartment}" if q.compartment else ""
                storage = "csr" if q.weights.is_sparse else "dense"
                what = "err" if q.carry == "error" else "r"
                lines.append(f"  {i:3d}. deliver   {q.name}: {q.target}{where} += {q.factor:g} * W ({storage}, "
                             f"{q.weights.nnz} synapses) @ {what}_{q.source}[n + 1 - {q.delay}]"
                             + (" (the error target - r, 0 without a target; fixed signed weights)"
                                if q.carry == "error" else ""))
            elif op.kind == "integrate":
                p = self.populations[op.name]
                lines.append(f"  {i:3d}. integrate {p.name}: x += {p.alpha:g} * (-x + input + bias)"
                             + (f" + {np.sqrt(2 * p.alpha) * p.noise:g} * N(0, 1)" if p.noise else "")
                             + f"; r = {p.activation}(x)")
            elif op.kind == "input":
                lines.append(f"  {i:3d}. input     {op.name}: r = the task's input at step n")
            elif op.kind == "learn":
                q = self.learner(op.name)
                how = "matrix products" if q.rule.analysis.factorised else "per-synapse kernel"
                when = "" if q.learn_phases is None else \
                    " in phase " + ", ".join(self.phases[k].name for k in q.learn_phases)
                lines.append(f"  {i:3d}. learn     {q.name}: rule {q.rule.name} on {q.rule.timing}{when} ({how})")
            elif op.kind == "update" and op.name not in self.projections:
                q = self.learner(op.name)
                steps = ["bias += dw (pre = 1)"] + ([f"bounds {list(q.bounds)}"] if q.bounds else [])
                lines.append(f"  {i:3d}. update    {q.name}: " + ", then ".join(steps))
            elif op.kind == "update":
                q = self.projections[op.name]
                steps = ["W += dw"] + (["clip at 0 (Dale)"] if self.dale and q.sign else []) + (
                    [f"bounds {list(q.bounds)}"] if q.bounds else []) + (
                    [f"normalize rows to {q.normalize:g}"] if q.normalize else [])
                lines.append(f"  {i:3d}. update    {q.name}: " + ", then ".join(steps))
            else:
                lines.append(f"  {i:3d}. {op.kind:<9} {op.name}")
        if self.phases:
            lines += ["", "a trial's phases, in order (each a run of the step above, from the state the last left):"]
            for phase in self.phases:
                what = [f"nudge {', '.join(phase.nudge)} (beta {phase.beta:g})"] if phase.nudge else []
                what += [f"clamp {', '.join(phase.clamp)}"] if phase.clamp else []
                if phase.couple:
                    relative = f" - at the end of {self.phases[phase.couple_from].name}" \
                        if phase.couple_from is not None else ""
                    clip = f", clipped to {list(phase.couple_clip)}" if phase.couple_clip else ""
                    what.append(f"soma += {phase.couple_gain:g} * ({', '.join(f'{p}.{c}' for p, c in phase.couple)}"
                                f"{relative}){clip}")
                steps = f"{phase.steps} steps" if phase.steps else "the trial's steps"
                lines.append(f"  {phase.index}. {phase.name}: {steps}" + ("; " + "; ".join(what) if what else ""))
            for q in self.projections.values():
                if q.tie is not None:
                    lines.append(f"  {q.name} = {q.tie[1]:g} x transpose({q.tie[0]}) after every update")
        # one line per entry whatever a name holds (program.txt of `eigraph compile`)
        return "\n".join(visible(line) for line in lines)
