"""The source-level tree that both front ends (``.ei`` and YAML) produce.

It says what the file says, in the file's order, with a span on everything; nothing is resolved
yet (names, units, the prelude). :mod:`eigraph.model.resolve` turns it into the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eigraph.diagnostics import Span
from eigraph.expr.ast import Expr


@dataclass
class Setting:
    """``key = value`` inside a block, or ``key = value`` after a projection or a population size."""

    key: str
    value: Expr
    span: Span | None = field(default=None, compare=False)  # the key


@dataclass
class NetworkDecl:
    name: str
    settings: list[Setting]
    span: Span | None = field(default=None, compare=False)


@dataclass
class CellTypeDecl:
    name: str
    sign: str
    role: str | None
    settings: list[Setting]
    span: Span | None = field(default=None, compare=False)
    sign_span: Span | None = field(default=None, compare=False)
    role_span: Span | None = field(default=None, compare=False)


@dataclass
class PopulationDecl:
    name: str  # dotted when declared inside an area: "H1.E"
    celltype: str
    size: Expr
    settings: list[Setting]
    span: Span | None = field(default=None, compare=False)
    celltype_span: Span | None = field(default=None, compare=False)
    area: str | None = None


@dataclass
class ProjectionDecl:
    source: str
    target: str  # as written: may end in ".COMPARTMENT"
    connectivity: Expr
    settings: list[Setting]
    span: Span | None = field(default=None, compare=False)
    source_span: Span | None = field(default=None, compare=False)
    target_span: Span | None = field(default=None, compare=False)
    area: str | None = None  # the area the projection is written in: names resolve there first


@dataclass
class Param:
    name: str
    default: Expr | None
    span: Span | None = field(default=None, compare=False)


@dataclass
class Statement:
    """One line of a rule body.

    ``kind`` is ``"let"`` (``e = ...``, a temporary, or ``dw = ...``), ``"ode"`` (``theta' = ...``,
    a trace) or ``"init"`` (``theta(0) = 1``). ``shared`` marks a trace ``: shared``.
    """

    kind: str
    target: str
    value: Expr
    shared: bool = False
    at: Expr | None = None  # the time in an init statement, ``0``
    span: Span | None = field(default=None, compare=False)
    annotation: str | None = None  # the raw word after ':' on an ode, for checking
    annotation_span: Span | None = field(default=None, compare=False)


@dataclass
class RuleDecl:
    name: str
    params: list[Param]
    timing: str | None
    body: list[Statement]
    span: Span | None = field(default=None, compare=False)
    timing_span: Span | None = field(default=None, compare=False)


@dataclass
class RunDecl:
    settings: list[Setting]
    span: Span | None = field(default=None, compare=False)


@dataclass
class PhaseDecl:
    """``phase NAME { steps = ...; nudge = ...; clamp = ...; couple = [...] ... }``: one part of a trial."""

    name: str
    settings: list[Setting]
    span: Span | None = field(default=None, compare=False)


@dataclass
class AreaDecl:
    """Only recorded for spans and printing; its contents are flattened into the document."""

    name: str
    span: Span | None = field(default=None, compare=False)
    parent: str | None = None


@dataclass
class Document:
    """Everything one file declares, in file order within each kind."""

    path: str
    network: list[NetworkDecl] = field(default_factory=list)
    celltypes: list[CellTypeDecl] = field(default_factory=list)
    populations: list[PopulationDecl] = field(default_factory=list)
    projections: list[ProjectionDecl] = field(default_factory=list)
    rules: list[RuleDecl] = field(default_factory=list)
    runs: list[RunDecl] = field(default_factory=list)
    areas: list[AreaDecl] = field(default_factory=list)
    phases: list[PhaseDecl] = field(default_factory=list)
