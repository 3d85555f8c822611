"""The resolved model: names resolved, units normalised (times in seconds), prelude merged.

These dataclasses are what :mod:`eigraph.model.graph` turns into the networkx graph; the graph
is what the checks, the drawing and the compiler read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eigraph.diagnostics import Span
from eigraph.frontend import ast

SIGNS = {"excitatory": 1, "inhibitory": -1, "unsigned": 0}
SIGN_NAMES = {1: "excitatory", -1: "inhibitory", 0: "unsigned"}
ROLES = ("input", "readout")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "linear", "clip01", "softmax")
PRECISIONS = ("float32", "float64")


@dataclass
class Network:
    name: str
    dt: float | None = None  # seconds
    seed: int = 0
    precision: str = "float32"
    dale: bool = True
    spectral_radius: float | None = None
    span: Span | None = None
    spans: dict[str, Span] = field(default_factory=dict)


@dataclass
class CellType:
    name: str
    sign: int
    role: str  # "hidden", "input" or "readout"
    defaults: list[ast.Setting]
    compartments: tuple[str, ...] = ()
    compartment_gains: dict[str, float] = field(default_factory=dict)
    builtin: bool = False
    span: Span | None = None


@dataclass
class Population:
    name: str
    celltype: str
    sign: int
    role: str
    size: int
    tau: float | None  # seconds; None for input populations or tau in steps without dt
    tau_steps: float | None  # tau / dt
    alpha: float  # dt / tau, the Euler factor; 1.0 is a discrete population
    activation: str
    bias: Any  # a number, or an init distribution {"dist": ..., "args": {...}}
    noise: float
    x0: float
    area: str | None
    compartments: tuple[str, ...]
    compartment_gains: dict[str, float]
    span: Span | None = None
    spans: dict[str, Span] = field(default_factory=dict)
    sign_override: bool = False
    # a learned bias: {"rule": ..., "args": {...}, "text": ..., "phases": [...]} (as a projection's learn)
    learn_bias: dict | None = None
    bias_bounds: tuple[float, float] | None = None
    bias_phase_expr: Any = None  # the bias_phase value, resolved once the phases are known

    @property
    def bias_name(self) -> str:
        """The name of its bias learner: ``bias->POP`` (what ``--freeze`` matches)."""
        return f"bias->{self.name}"

    @property
    def discrete(self) -> bool:
        return self.alpha == 1.0


@dataclass
class Projection:
    name: str
    source: str
    target: str
    target_compartment: str | None  # None: the soma
    connectivity: dict  # {"kind": "dense"|"sparse"|"fixed_in"|"one_to_one"|"mask"|"weights", ...}
    init: dict | None  # {"dist": ..., "args": {...}, "text": ...}; None with weights(file)
    delay: int  # steps
    delay_time: float | None  # seconds, as written (None when written in steps without dt)
    learn: dict | None  # {"rule": name, "args": {...}, "text": ...}
    bounds: tuple[float, float] | None
    normalize: float | None
    gain: float
    autapses: bool
    fan_in: float
    fan_out: float
    span: Span | None = None
    spans: dict[str, Span] = field(default_factory=dict)
    carry: str = "rate"  # "error": delivers target - rate of the source (a learning signal), fixed signed weights


@dataclass
class Rule:
    name: str
    params: dict[str, Any]  # name -> default: a number (SI units) or a name (str)
    timing: str  # "step" or "trial"
    statements: list[ast.Statement]
    builtin: bool = False
    span: Span | None = None
    param_spans: dict[str, Span] = field(default_factory=dict)
    text: str = ""  # the rule as eigraph source
    name_params: set[str] = field(default_factory=set)  # parameters read as post.PARAM: compartment names

    @property
    def traces(self) -> list[str]:
        return [s.target for s in self.statements if s.kind == "ode"]


@dataclass
class RunSpec:
    task: dict | None = None  # {"name": ..., "args": {...}, "text": ...}
    inputs: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    trials: int | None = None
    batch: int | None = None
    steps: int | None = None
    record: list[str] = field(default_factory=list)
    seed: int | None = None
    span: Span | None = None
    spans: dict[str, Span] = field(default_factory=dict)


@dataclass
class Phase:
    """One part of a trial (docs/language.md, phases). Phases run in the order declared, each from the
    state the one before left; the first is the free phase, the only one evaluation runs."""

    name: str
    index: int
    steps: int | None = None  # None: the run's steps (the task's trial)
    nudge: list[str] = field(default_factory=list)  # populations driven toward the task's target
    beta: float = 1.0  # the strength of the nudge: x' += beta * (target - r) (in units of 1 / tau)
    clamp: list[str] = field(default_factory=list)  # populations whose rate is set to the target
    couple: list[tuple[str, str]] = field(default_factory=list)  # (population, compartment) into the soma
    couple_gain: float = 1.0
    couple_clip: tuple[float, float] | None = None
    couple_from: str | None = None  # couple the change since the end of this earlier phase
    span: Span | None = None
    spans: dict[str, Span] = field(default_factory=dict)


@dataclass
class Model:
    """A resolved, checked model. ``graph`` is the networkx population graph (see docs/graph.md)."""

    path: str
    network: Network
    celltypes: dict[str, CellType]
    populations: dict[str, Population]
    projections: dict[str, Projection]
    rules: dict[str, Rule]
    run: RunSpec | None
    document: ast.Document
    diagnostics: list = field(default_factory=list)
    graph: Any = None
    phases: list[Phase] = field(default_factory=list)

    def compile(self, backend: str = "numba", batch: int = 1, seed: int | None = None):
        """Lower the graph to a Program and return a :class:`~eigraph.runtime.simulator.Simulator`.

        ``backend``: ``numba`` (fused CPU kernels) or ``numpy`` (the reference). ``seed``
        overrides the network's seed for the noise stream; the weights always follow the model.
        A model that does not fit in memory is refused (CompileError) before anything is allocated.
        """
        from eigraph.compile.lower import lower
        from eigraph.runtime.simulator import Simulator

        return Simulator(lower(self.graph, batch=batch), backend=backend, batch=batch, seed=seed)

    def draw(self, ax=None, **options):
        """Draw the population graph with matplotlib; returns the Figure (see docs/viz.md).

        ``options``: ``layout`` (``layered`` or ``spring``), ``labels``, ``highlight`` (names),
        ``detail`` (``auto``, ``full``, ``areas``), ``diagnostics`` (findings to mark; default
        the model's errors), ``legend``, ``title``. With ``ax``, draws into that axes."""
        from eigraph.viz import draw

        return draw(self, ax=ax, **options)

    @property
    def errors(self):
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self):
        return [d for d in self.diagnostics if not d.is_error]
