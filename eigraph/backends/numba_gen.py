"""The Numba backend: generates readable Python source for the whole run and compiles it.

One ``@njit`` function holds the time loop. Dense projections are BLAS products
(``np.dot(W, r)``, state stored neurons x batch), stacked into one product where they form a
grid (``product_groups``); a sparse projection's rows are accumulated inside the same loop that
updates the target population (with the hand-written row loop of ``simd.py`` where it applies),
so the summed input, the Euler step, the activation and the NaN check are one pass over the
target's neurons. Comments in the generated code point back to the model's lines. Constants
are module globals, which Numba folds into the machine code.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eigraph import __version__
from eigraph.backends import simd
from eigraph.backends.numba_rules import RuleEmitter, reads_reward, reads_target
from eigraph.compile.cache import file_lock, load_module
from eigraph.compile.codetext import comment_text, docstring_text, ident_part, verify_kernel_source, visible
from eigraph.compile.program import PopulationPlan, Program
from eigraph.compile.rules import draw_count
from eigraph.runtime.errors import InputError
from eigraph.runtime.threads import blas_threads

# Threads for element-wise loops only pay off when a loop is far larger than the BLAS products
# around it: a parallel region each step next to threaded BLAS was measured 10-30x slower on a
# busy 2-core machine (tools/bench.py), while the whole update pass at N=1024, B=64 is ~25 us.
PARALLEL_MIN_ELEMENTS = 1 << 20  # neurons x batch of a population, or synapses of a rule
# Sparse rows are the costly part of an update: their multiply-adds per step (synapses x batch)
# decide threads too (when Numba has more than one). At N=1024, p=0.1, B=64 (6.7 million) two
# threads nearly halve the step.
PARALLEL_MIN_SYNAPSE_WORK = 1 << 20
# BLAS threads pay only for large products: below this many dense multiply-adds a step (all
# dense projections, and the products of plastic ones' rules) a run holds BLAS to one thread.
# N=256, B=32 (2.2 million): 7.5 ms a trial on one thread, 8.8 ms on two; N=1024, B=64 (68
# million): 191 ms on one, 105 ms on two.
BLAS_THREADS_MIN_WORK = 1 << 23
FASTMATH = "{'reassoc', 'contract'}"  # lets the NaN-check sum vectorise; never nnan/ninf

_ACTIVATIONS = {
    "relu": "max({v}, ZERO)",
    "tanh": "np.tanh({v})",
    "sigmoid": "ONE / (ONE + np.exp(-{v}))",
    "softplus": "max({v}, ZERO) + np.log1p(np.exp(-abs({v})))",
    "linear": "{v}",
    "clip01": "min(max({v}, ZERO), ONE)",
}


def _where(span) -> str:
    if span is None:
        return ""
    name = Path(str(span.file)).name  # a backslash is a separator on Windows only
    return f"  [{comment_text(name)}:{span.line}]"


class _Writer:
    """Lines of generated code. User text reaches them only inside comments (names are quoted
    through :func:`comment_text` where they are written) and every line is passed through
    :func:`visible` as well: no line break or other non-printable character can end a comment
    early, whatever a name holds (eigraph/compile/codetext.py)."""

    def __init__(self):
        self.lines: list[str] = []
        self.indent = 0

    def __call__(self, text: str = "") -> None:
        self.lines.append(("    " * self.indent + visible(text)) if text else "")

    def block(self):
        writer = self

        class _Block:
            def __enter__(self):
                writer.indent += 1

            def __exit__(self, *exc):
                writer.indent -= 1

        return _Block()


def recordables(program: Program) -> list[str]:
    names = []
    for p in program.populations.values():
        names.append(f"{p.name}.r")
        if p.role != "input":
            names.append(f"{p.name}.x")
        names += [f"{p.name}.{c}" for c in p.compartments]
    return names


@dataclass
class ProductGroup:
    """Dense projections delivered by one BLAS product: a complete grid targets x sources.

    Their magnitudes live as blocks of one matrix ``M`` (rows: the targets' neurons, columns:
    the sources' neurons); each projection's ``weights.dense`` is a view of its block, so the
    weights API, checkpoints and ``sim.weights[...] = W`` read and write ``M`` itself. With one
    source the product reads the source's rates and the sign is applied per projection in the
    target's update; with several, each source's rates (from the slot of its own delay) are
    first copied into one column block ``G``, times its sign * gain, and ``M @ G`` arrives signed
    and summed. The product runs just before the first of its targets is updated: every source
    is final by then (delay >= 1: a past step; delay 0: the step order puts a source before each
    target it reaches without delay, and in a complete grid it reaches them all).
    """

    ident: str
    delays: dict[str, int]  # source -> the delay of all its projections in the group
    targets: list[tuple[str, str | None]]  # (population, compartment), in program order
    sources: list[str]
    cells: dict[tuple[tuple[str, str | None], str], object]  # (target key, source) -> ProjectionPlan
    row: dict[tuple[str, str | None], int] = field(default_factory=dict)  # first row of each target key
    col: dict[str, int] = field(default_factory=dict)  # first column of each source
    shape: tuple[int, int] = (0, 0)

    @property
    def projections(self) -> list:
        return list(self.cells.values())

    @property
    def signed(self) -> bool:
        """Several sources: the product sums them, so the rates are copied in with their signs."""
        return len(self.sources) > 1

    def from_source(self, name: str):
        """A projection of the group from ``name``: all of them share its sign * gain (when signed)."""
        return next(q for (_, source), q in self.cells.items() if source == name)


def product_groups(program: Program) -> list[ProductGroup]:
    """Stack the non-plastic dense projections into as few BLAS products as possible.

    All of them are one product if they form a complete grid targets x sources in which each
    source has one delay and one sign * gain (the signed copy of its rates serves every target).
    Otherwise the same is tried for each delay, and where a delay's projections are no complete
    grid, each source that reaches two or more targets gets one product. Plastic projections
    keep their own arrays (their rules update them in place).
    """
    eligible = [q for q in program.projections.values() if not q.weights.is_sparse and q.rule is None
                and q.carry != "error"]
    order = {name: p.index for name, p in program.populations.items()}
    groups: list[ProductGroup] = []

    def grid(qs) -> bool:
        cells = {((q.target, q.compartment), q.source) for q in qs}
        targets = {k for k, _ in cells}
        sources = {s for _, s in cells}
        if len(qs) < 2 or len(cells) != len(qs) or len(cells) != len(targets) * len(sources):
            return False
        if len(sources) == 1:
            return len({q.delay for q in qs}) == 1
        return all(len({(q.delay, q.factor) for q in qs if q.source == s}) == 1 for s in sources)

    def make(qs) -> None:
        cells = {((q.target, q.compartment), q.source): q for q in qs}
        targets = sorted({key for key, _ in cells}, key=lambda k: (order[k[0]], k[1] or ""))
        sources = sorted({s for _, s in cells}, key=order.__getitem__)
        delays = {q.source: q.delay for q in qs}
        group = ProductGroup(f"g{len(groups)}", delays, targets, sources, cells)
        rows = 0
        for key in targets:
            group.row[key] = rows
            rows += program.populations[key[0]].size
        cols = 0
        for src in sources:
            group.col[src] = cols
            cols += program.populations[src].size
        group.shape = (rows, cols)
        groups.append(group)

    if grid(eligible):
        make(eligible)
        return groups
    by_delay: dict[int, list] = {}
    for q in eligible:
        by_delay.setdefault(q.delay, []).append(q)
    for delay in sorted(by_delay):
        qs = by_delay[delay]
        if grid(qs):
            make(qs)
            continue
        for src in sorted({q.source for q in qs}, key=order.__getitem__):
            single = [q for q in qs if q.source == src]
            if grid(single):
                make(single)
    return groups


def stack_weights(program: Program, groups: list[ProductGroup]) -> dict[str, np.ndarray]:
    """Build each group's matrix from its projections' weights and make those weights views of it."""
    out = {}
    for g in groups:
        m = np.zeros(g.shape, dtype=program.dtype)
        for (key, src), q in g.cells.items():
            r0, c0 = g.row[key], g.col[src]
            block = m[r0:r0 + q.weights.shape[0], c0:c0 + q.weights.shape[1]]
            block[...] = q.weights.dense
            q.weights.dense = block
        out[g.ident] = m
    return out


def generate(program: Program, batch: int, groups: list[ProductGroup] | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The kernel's source and its arguments as (argument name, what it is).

    Each population update and each rule is its own small ``@njit`` function, called from the
    driver loop ``run_chunk``: LLVM's optimisation time grows faster than linearly with the size
    of a function, and a population large enough for threads gets ``prange`` on its own.
    """
    dtype = np.dtype(program.dtype).name
    args: list[tuple[str, str]] = [("steps", "steps"), ("n0", "n0"), ("status", "status"), ("learn", "learn"),
                                   ("trial_end", "trial_end"), ("gate", "gate")]
    consts: list[str] = []
    pops = list(program.populations.values())

    def const(name: str, value: float, comment: str = "") -> str:
        consts.append(f"{name} = np.{dtype}({float(value)!r}){'  # ' + comment_text(comment) if comment else ''}")
        return name

    for p in pops:
        i = p.ident
        if p.role == "input":
            args.append((f"in_{i}", f"input:{p.name}"))
        else:
            args.append((f"x_{i}", f"x:{p.name}"))
        args.append((f"r_{i}", f"r:{p.name}"))
        if p.role != "input" and p.noise:
            args.append((f"noise_{i}", f"noise:{p.name}"))
        if isinstance(p.bias, np.ndarray):
            args.append((f"bias_{i}", f"bias:{p.name}"))
        for c in p.compartments:
            args.append((f"c_{i}_{ident_part(c)}", f"compartment:{p.name}.{c}"))
        if p.name in program.error_sources:
            args.append((f"e_{i}", f"error:{p.name}"))
    groups = product_groups(program) if groups is None else groups
    grouped = {q.name: g for g in groups for q in g.projections}
    for q in program.projections.values():
        if q.weights.is_sparse:
            args += [(f"{q.ident}_indptr", f"indptr:{q.name}"), (f"{q.ident}_indices", f"indices:{q.name}"),
                     (f"{q.ident}_data", f"data:{q.name}")]
        elif q.name not in grouped:
            args.append((q.ident, f"dense:{q.name}"))
    for g in groups:
        args.append((f"M_{g.ident}", f"group:{g.ident}"))
    emitters = [RuleEmitter(program, q, const) for q in program.learners]
    for emitter in emitters:
        args += emitter.args()
    driven = {name for phase in program.phases for name in phase.nudge + phase.clamp}
    for name in sorted({q.target for q in program.learners if reads_target(q)} | driven | set(program.error_sources),
                       key=lambda n: program.populations[n].index):
        args.append((f"tgt_{program.populations[name].ident}", f"target:{name}"))
    if program.phases:
        args.append(("phase", "phase"))
        args += [(f"pv{k}", f"phasevalue:{k}") for k in range(len(program.phase_values))]
    for q in program.projections.values():
        if q.tie is not None:
            args += [(f"tw_{q.ident}", f"dense:{q.name}")]
            of = program.projections[q.tie[0]]
            if (f"tw_{of.ident}", f"dense:{of.name}") not in args:
                args += [(f"tw_{of.ident}", f"dense:{of.name}")]
    if any(reads_reward(q) for q in program.learners):
        args.append(("rew", "reward"))
    if any(reads_reward(q, "reward_baseline") for q in program.learners):
        args.append(("rbar", "reward_baseline"))
    record_args = {}
    for k, name in enumerate(recordables(program)):
        record_args[name] = f"rec{k}"
        args.append((f"rec{k}", f"record:{name}"))

    w = _Writer()
    source_name = Path(str(program.file)).name  # not the path: the code is keyed by its text
    # the first two lines hold no user text (Python reads a 'coding:' comment there)
    w(f'"""Generated by eigraph {__version__} (content hash {docstring_text(program.content_hash)}).')
    w("")
    w(f"Model file: {docstring_text(source_name)}")
    w("")
    w("eigraph regenerates this file; edit the model instead. State arrays are neurons x batch;")
    w("r_* are ring buffers of rates: r[n % history] is the rate after n steps.")
    w('"""')
    w("import numpy as np")
    w("from numba import njit, prange")
    if simd.supported(batch, program.dtype) and any(q.weights.is_sparse for q in program.projections.values()):
        # the loop's IR lives in simd.py, outside this text: its hash keeps the kernel cache honest
        widths = sorted({width for _, width in simd.pieces(batch)}, reverse=True)
        w(f"from eigraph.backends.simd import {', '.join(f'csr_row_{x}' for x in widths)}  "
          f"# simd.py {simd.SOURCE_HASH}")
    w("")
    w(f"ZERO = np.{dtype}(0.0)")
    w(f"ONE = np.{dtype}(1.0)")
    body = _Writer()
    body.indent = 1
    for p in pops:
        if p.role == "input":
            continue
        const(f"ALPHA_{p.ident}", p.alpha, f"dt / tau of {p.name}")
        if not isinstance(p.bias, np.ndarray):
            const(f"BIAS_{p.ident}", p.bias, f"bias of {p.name}")
        if p.noise:
            const(f"NOISE_{p.ident}", math.sqrt(2 * p.alpha) * p.noise, f"sqrt(2 dt / tau) * noise of {p.name}")
        for c, gain in p.compartment_gains.items():
            const(f"GAIN_{p.ident}_{ident_part(c)}", gain, f"{c}_gain of {p.name}")
    for q in program.projections.values():
        const(f"F_{q.ident}", q.factor, f"sign * gain of {q.name}")
        if q.tie is not None:
            const(f"TIE_{q.ident}", q.tie[1], f"scale of {q.name}, tied to {q.tie[0]}")
    for phase in program.phases:
        k = phase.index
        if phase.couple:
            const(f"CG_{k}", phase.couple_gain, f"couple_gain of phase {phase.name}")
            if phase.couple_clip is not None:
                const(f"CLO_{k}", phase.couple_clip[0], f"couple_clip of phase {phase.name}")
                const(f"CHI_{k}", phase.couple_clip[1], f"couple_clip of phase {phase.name}")
        if phase.nudge:
            const(f"BETA_{k}", phase.beta, f"beta of phase {phase.name}")
    # the batch is fixed when the simulator is made: a constant lets LLVM unroll and vectorise
    # every loop over it (the kernel's cache key, the hash of this text, includes it)
    consts.append(f"B = {int(batch)}  # batch")
    for q in program.projections.values():
        if not q.weights.is_sparse and q.name not in grouped:
            body(f"d_{q.ident} = np.empty(({program.populations[q.target].size}, B), dtype=np.{dtype})"
                 f"  # product of {comment_text(q.name)}")
    for g in groups:
        body(f"D_{g.ident} = np.empty(({g.shape[0]}, B), dtype=np.{dtype})"
             f"  # product of {comment_text(_group_name(g))}")
        if g.signed:
            parity = "2, " if _fused(program, g) else ""
            body(f"G_{g.ident} = np.empty(({parity}{g.shape[1]}, B), dtype=np.{dtype})  # signed rates into "
                 f"{g.ident}{' (by step parity)' if parity else ''}")
    for p in pops:
        for group in _sparse_groups(program, p):
            body(f"s_{group[0].ident} = np.empty(({p.size}, B), dtype=np.{dtype})"
                 f"  # rows of {comment_text(', '.join(q.name for q in group))}")
    if emitters:
        const("DT", program.dt or 1.0, "the time step in seconds, for traces")
        const("INV_B", 1.0 / batch, "1 / batch")
        for emitter in emitters:
            for line in emitter.scratch():
                body(line)
    functions: list[tuple[str, list[str], list[str], bool, bool]] = []
    available = [name for name, _ in args] + ["t", "n", "cur", "nxt"]
    for q in program.projections.values():
        available.append(f"{'s' if q.weights.is_sparse else 'd'}_{q.ident}")  # s_: first of its group
    for g in groups:
        available += [f"D_{g.ident}", f"G_{g.ident}"]
    for emitter in emitters:
        available += [line.split(" = ", 1)[0] for line in emitter.scratch()]

    def call(name: str, emit, parallel: bool, fast: bool = False) -> None:
        """Emit ``emit(writer)`` as the function ``name`` and a call to it in the time loop."""
        sub = _Writer()
        sub.indent = 1
        emit(sub)
        sub("return 0")
        used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(sub.lines)))
        params = [a for a in available if a in used]
        functions.append((name, params, sub.lines, parallel, fast))
        body(f"if {name}({', '.join(params)}):")
        body("    return")

    emitted: set[str] = set()
    body("for t in range(steps):")
    with body.block():
        body("n = n0 + t")
        body("cur = n % 2")
        body("nxt = 1 - cur")
        for op in program.ops:
            if op.kind == "input":
                p = program.populations[op.name]
                body(f"# input {comment_text(p.name)}: the task's input at step n{_where(p.span)}")
                body(f"r_{p.ident}[(n + 1) % {p.history}] = in_{p.ident}[t]")
            elif op.kind == "integrate":
                p = program.populations[op.name]
                for g in groups:
                    if g.ident not in emitted and any(key[0] == p.name for key in g.targets):
                        emitted.add(g.ident)
                        body(f"# one product: {comment_text(_group_name(g))}")
                        call(f"product_{g.ident}", lambda w_, g=g: _product(w_, program, g), False, fast=True)
                rows = sum(q.weights.nnz for q in program.incoming(p.name) if q.weights.is_sparse)
                parallel = p.size * batch >= PARALLEL_MIN_ELEMENTS or (
                    rows * batch >= PARALLEL_MIN_SYNAPSE_WORK and _threads() > 1)
                body(f"# integrate {comment_text(p.name)}{_where(p.span)}")
                call(f"integrate_{p.ident}",
                     lambda w_, p=p, par=parallel: _integrate(w_, program, p, "prange" if par else "range", batch,
                                                                 groups),
                     parallel,
                     fast=True)
            elif op.kind == "learn":
                emitter = next(e for e in emitters if e.q.name == op.name)
                # on step: where the gate is open (the steps whose target counts, in eigraph run)
                timing = "gate[t] != 0" if emitter.rule.timing == "step" else "trial_end != 0 and t == steps - 1"
                q = emitter.q
                size = (1 if q.source is None else program.populations[q.source].size) * \
                    program.populations[q.target].size
                parallel = emitter.analysis.factorised and size >= PARALLEL_MIN_ELEMENTS
                emitter.parallel = parallel
                body(f"# rule {comment_text(emitter.rule.name)} on {comment_text(q.name)}{_where(q.span)}")
                gate = ""
                if q.learn_phases is not None:
                    names = ", ".join(program.phases[k].name for k in q.learn_phases)
                    gate = " and (" + " or ".join(f"phase == {k}" for k in q.learn_phases) + ")"
                    body(f"# learns in phase {comment_text(names)} only")
                body(f"if learn != 0{gate}:")
                with body.block():
                    call(f"learn_{q.ident}", lambda w_, e=emitter, tm=timing: e.emit(w_, tm), parallel, fast=True)
                    for tied in program.ties_of(q.name):
                        body(f"# {comment_text(tied.name)} is tied: {tied.tie[1]!r} x the transpose, after every "
                             "update")
                        body(f"if {timing}:")
                        with body.block():
                            call(f"tie_{tied.ident}", lambda w_, t_=tied, o_=q: _tie(w_, t_, o_), False, fast=True)
            elif op.kind == "update":
                pass  # emitted with its rule: each rule reads only its own weights
            elif op.kind == "record":
                body("# record")
                for p in pops:
                    names = [f"{p.name}.r"] + ([f"{p.name}.x"] if p.role != "input" else [])
                    names += [f"{p.name}.{c}" for c in p.compartments]
                    for name in names:
                        rec = record_args[name]
                        what = name.rpartition(".")[2]
                        if what == "r":
                            source = f"r_{p.ident}[(n + 1) % {p.history}]"
                        elif what == "x":
                            source = f"x_{p.ident}[nxt]"
                        else:
                            source = f"c_{p.ident}_{ident_part(what)}"
                        body(f"if {rec}.shape[0] > 0:")
                        body(f"    {rec}[t] = {source}")
    body("return")

    w("")
    for line in consts:
        w(line)
    for name, params, lines, parallel, fast in functions:
        w("")
        w("")
        flags = "cache=True, nogil=True, error_model='numpy'" + (", parallel=True" if parallel else "") + (
            f", fastmath={FASTMATH}" if fast else "")
        w(f"@njit({flags})")
        w(f"def {name}({', '.join(params)}):")
        w.lines += lines
    w("")
    w("")
    flags = "cache=True, nogil=True, error_model='numpy'"
    w(f"@njit({flags})")
    w("def run_chunk(")
    for name, what in args:
        w(f"    {name},  # {comment_text(what)}")
    w("):")
    w.lines += body.lines
    source = "\n".join(w.lines) + "\n"
    verify_kernel_source(source, f"for {source_name}")
    return source, args


def _threads() -> int:
    """Numba's thread count: with one thread a prange loop only adds the cost of outlining it."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def _slot(delay: int, history: int) -> str:
    """The ring-buffer slot holding the rates a projection of this delay reads at step n."""
    return {0: f"(n + 1) % {history}", 1: f"n % {history}"}.get(delay, f"(n + 1 - {delay}) % {history}")


def _group_name(g: ProductGroup) -> str:
    def key(k):
        return k[0] + (f".{k[1]}" if k[1] else "")
    delays = sorted(set(g.delays.values()))
    return (f"{', '.join(g.sources)} -> {', '.join(key(k) for k in g.targets)} "
            f"(delay {'/'.join(str(d) for d in delays)})")


def _fused(program: Program, g: ProductGroup) -> list[str]:
    """Sources of a signed group whose update writes its signed rates straight into ``G``.

    A delay-1 source's rates at step n+1 are the ones it computes at step n, so its update can
    store ``sign * gain * rate`` into the block the product reads next step (``G[(n + 1) % 2]``)
    instead of a copy pass before each product. Inputs (no update loop) and softmax populations
    (rates in a second pass) are copied; so is everything on the first step of a call, since
    ``G`` is scratch.
    """
    if not g.signed:
        return []
    return [s for s in g.sources if g.delays[s] == 1 and program.populations[s].role != "input"
            and program.populations[s].activation != "softmax"]


def _product(body: _Writer, program: Program, g: ProductGroup) -> None:
    body(f"# {len(g.cells)} dense projections: {comment_text(', '.join(q.name for q in g.projections))}")
    if not g.signed:
        src = program.populations[g.sources[0]]
        body(f"np.dot(M_{g.ident}, r_{src.ident}[{_slot(g.delays[src.name], src.history)}], D_{g.ident})")
        return
    fused = _fused(program, g)
    block = f"G_{g.ident}[n % 2]" if fused else f"G_{g.ident}"
    if fused:
        body(f"G = {block}  # this step's block; {comment_text(', '.join(fused))} wrote theirs in their last update")
        block = "G"
    for name in g.sources:
        src = program.populations[name]
        col = f"{g.col[name]} + " if g.col[name] else ""
        if name in fused:
            body("if t == 0:  # G is scratch: the first step of a call copies")
        with body.block() if name in fused else contextlib.nullcontext():
            body(f"src = r_{src.ident}[{_slot(g.delays[name], src.history)}]  # {comment_text(name)}, "
                 f"delay {g.delays[name]}, times sign * gain")
            body(f"for j in range({src.size}):")
            body("    for b in range(B):")
            body(f"        {block}[{col}j, b] = F_{g.from_source(name).ident} * src[j, b]")
    body(f"np.dot(M_{g.ident}, {block}, D_{g.ident})")


def _integrate(body: _Writer, program: Program, p: PopulationPlan, loop: str, batch: int,
               groups: list[ProductGroup]) -> None:
    i = p.ident
    incoming = program.incoming(p.name)
    body(f"# {comment_text(p.name)}: {p.size} neurons, {comment_text(p.activation)}{_where(p.span)}")
    terms: dict[str | None, list[str]] = {}
    grouped = {q.name: g for g in groups for q in g.projections}
    for g in groups:
        for key in g.targets:
            if key[0] != p.name:
                continue
            product = f"D_{g.ident}[{g.row[key]} + i, b]" if g.row[key] else f"D_{g.ident}[i, b]"
            if g.signed:
                terms.setdefault(key[1], []).append(product)
            else:
                terms.setdefault(key[1], []).append(f"F_{g.cells[(key, g.sources[0])].ident} * {product}")
    for q in incoming:
        source = program.populations[q.source]
        slot = _slot(q.delay, source.history)
        buffer = "e" if q.carry == "error" else "r"  # carry = error: the source's error, target - r
        where = f".{q.compartment}" if q.compartment else ""
        label = comment_text(q.name + (where if not q.name.endswith(where) else ""))
        if q.name in grouped:
            body(f"# {label}: dense, delay {q.delay}, "
                 f"in product {grouped[q.name].ident}{_where(q.span)}")
        elif q.weights.is_sparse:
            body(f"src_{q.ident} = {buffer}_{source.ident}[{slot}]"
                 f"  # {comment_text(q.name)}: csr, delay {q.delay}{_where(q.span)}")
        else:
            body(f"np.dot({q.ident}, {buffer}_{source.ident}[{slot}], d_{q.ident})"
                 f"  # {label}: dense, delay {q.delay}{_where(q.span)}")
            terms.setdefault(q.compartment, []).append(f"F_{q.ident} * d_{q.ident}[i, b]")
    sparse = _sparse_groups(program, p)
    for group in sparse:  # sparse rows arrive signed: F is applied per synapse
        terms.setdefault(group[0].compartment, []).append(f"s_{group[0].ident}[i, b]")
    body("chk = 0.0")
    body(f"for i in {loop}({p.size}):")
    with body.block():
        for group in sparse:
            if simd.supported(batch, program.dtype):
                _csr_rows_simd(body, group, batch)
            else:
                _csr_rows(body, group)
        body("for b in range(B):")
        with body.block():
            soma = " + ".join(terms.get(None, [])) or "ZERO"
            body(f"inp = {soma}")
            for c in p.compartments:
                body(f"comp = {' + '.join(terms.get(c, [])) or 'ZERO'}")
                body(f"c_{i}_{ident_part(c)}[i, b] = comp")
                if c in p.compartment_gains:
                    body(f"inp += GAIN_{i}_{ident_part(c)} * comp")
            clamped = []
            for phase in program.phases:
                for c in phase.couples(p.name):
                    k = phase.index
                    body(f"if phase == {k}:  # phase {comment_text(phase.name)} couples {comment_text(c)} to the soma")
                    with body.block():
                        value = f"c_{i}_{ident_part(c)}[i, b]"
                        if phase.couple_from is not None:
                            pv = program.phase_values.index((p.name, c, phase.couple_from))
                            value = f"({value} - pv{pv}[i, b])"
                        if phase.couple_clip is not None:
                            value = f"min(max({value}, CLO_{k}), CHI_{k})"
                        body(f"inp += CG_{k} * {value}")
                if p.name in phase.nudge:
                    k = phase.index
                    body(f"if phase == {k}:  # phase {comment_text(phase.name)} nudges toward the target")
                    body(f"    inp += BETA_{k} * (tgt_{i}[t, i, b] - r_{i}[n % {p.history}, i, b])")
                if p.name in phase.clamp:
                    clamped.append(phase.index)
            bias = f"bias_{i}[i]" if isinstance(p.bias, np.ndarray) else f"BIAS_{i}"
            body(f"xo = x_{i}[cur, i, b]")
            noise = f" + NOISE_{i} * noise_{i}[t, i, b]" if p.noise else ""
            body(f"xn = xo + ALPHA_{i} * (-xo + inp + {bias}){noise}")
            clamp = " or ".join(f"phase == {k}" for k in clamped)
            if clamped:
                body(f"if {clamp}:  # clamped: the state and the rate are the target")
                body(f"    xn = tgt_{i}[t, i, b]")
            body(f"x_{i}[nxt, i, b] = xn")
            if p.activation != "softmax":
                rate = _ACTIVATIONS[p.activation].format(v="xn")
                body(f"rn = {rate}")
                if clamped:
                    body(f"if {clamp}:")
                    body("    rn = xn")
                body(f"r_{i}[(n + 1) % {p.history}, i, b] = rn")
                for g in groups:
                    if p.name in _fused(program, g):
                        col = f"{g.col[p.name]} + " if g.col[p.name] else ""
                        body(f"G_{g.ident}[(n + 1) % 2, {col}i, b] = F_{g.from_source(p.name).ident} * rn"
                             f"  # for product {g.ident}")
                body("chk += xn - xn  # 0 unless NaN or infinite (a finite x has a finite rate)")
            else:
                body("chk += xn - xn")
    if p.activation == "softmax":
        body(f"for b in range(B):  # softmax over the neurons of {comment_text(p.name)}")
        with body.block():
            body(f"top = x_{i}[nxt, 0, b]")
            body(f"for i in range(1, {p.size}):")
            body(f"    top = max(top, x_{i}[nxt, i, b])")
            body("total = 0.0")
            body(f"for i in range({p.size}):")
            body(f"    e = np.exp(x_{i}[nxt, i, b] - top)")
            body(f"    r_{i}[(n + 1) % {p.history}, i, b] = e")
            body("    total += e")
            body(f"for i in range({p.size}):")
            body(f"    r_{i}[(n + 1) % {p.history}, i, b] /= total")
    if p.name in program.error_sources:
        slot = f"(n + 1) % {p.history}"
        body(f"# the error of {comment_text(p.name)} for carry = error: target - r, 0 on steps without a target")
        body(f"if tgt_{i}.shape[0] > 0 and gate[t] != 0:")
        body(f"    for i in range({p.size}):")
        body("        for b in range(B):")
        body(f"            e_{i}[{slot}, i, b] = tgt_{i}[t, i, b] - r_{i}[{slot}, i, b]")
        body("else:")
        body(f"    for i in range({p.size}):")
        body("        for b in range(B):")
        body(f"            e_{i}[{slot}, i, b] = ZERO")
    body("if chk != 0.0:")
    body("    status[0] = n")
    body(f"    status[1] = {p.index}")
    body("    return 1")


def _tie(body: _Writer, tied, of) -> None:
    """W_tied = scale * W_of^T, after an update of ``of``."""
    shape = tied.weights.shape
    body(f"# {comment_text(tied.name)} = {tied.tie[1]!r} x transpose({comment_text(of.name)})")
    body(f"for i in range({shape[0]}):")
    body(f"    for j in range({shape[1]}):")
    body(f"        tw_{tied.ident}[i, j] = TIE_{tied.ident} * tw_{of.ident}[j, i]")


UNROLL = 4  # synapses per pass over a sparse row's accumulator


def _sparse_groups(program: Program, p: PopulationPlan) -> list[list]:
    """The CSR projections into ``p``, grouped by compartment: each group sums into one row."""
    groups: dict[str | None, list] = {}
    for q in program.incoming(p.name):
        if q.weights.is_sparse:
            groups.setdefault(q.compartment, []).append(q)
    return list(groups.values())


def _csr_rows(body: _Writer, group: list) -> None:
    """Row i of the CSR projections of ``group`` summed into ``s_<first>[i]``, signs included.

    UNROLL synapses per pass over the accumulator row: one synapse per pass loads and stores the
    whole row (the batch) for each multiply-add; four per pass cut that traffic fourfold
    (tools/bench.py, N=1024, B=64, p=0.1: 150 -> 90 ms). The projections into one compartment
    share the row, so it is cleared and written back once.
    """
    body(f"row = s_{group[0].ident}[i]  # row i of {comment_text(', '.join(q.name for q in group))}")
    body("for b in range(B):")
    body("    row[b] = ZERO")
    for q in group:
        w_, ind, data, f = q.ident, f"{q.ident}_indices", f"{q.ident}_data", f"F_{q.ident}"
        body(f"k = {w_}_indptr[i]  # {comment_text(q.name)}")
        body(f"end = {w_}_indptr[i + 1]")
        body(f"while k + {UNROLL} <= end:")
        with body.block():
            body("; ".join(f"wk{u} = {f} * {data}[k + {u}]" for u in range(UNROLL)))
            body("; ".join(f"sk{u} = src_{w_}[{ind}[k + {u}]]" for u in range(UNROLL)))
            body("for b in range(B):")
            body("    row[b] += " + " + ".join(f"wk{u} * sk{u}[b]" for u in range(UNROLL)))
            body(f"k += {UNROLL}")
        body("while k < end:")
        with body.block():
            body(f"wk0 = {f} * {data}[k]")
            body(f"sk0 = src_{w_}[{ind}[k]]")
            body("for b in range(B):")
            body("    row[b] += wk0 * sk0[b]")
            body("k += 1")


def _csr_rows_simd(body: _Writer, group: list, batch: int) -> None:
    """As :func:`_csr_rows`, with the hand-written loop of eigraph/backends/simd.py: the batch
    stays in vector registers over a row's synapses (N=1024, B=64, p=0.1: 92 -> 58 ms). A batch
    wider than 64 is covered in pieces of at most 64 (each a pass over the row's synapses)."""
    body(f"row = s_{group[0].ident}[i]  # row i of {comment_text(', '.join(q.name for q in group))}")
    for n, q in enumerate(group):
        w_ = q.ident
        for first, width in simd.pieces(batch):  # batch elements first .. first + width - 1
            body(f"csr_row_{width}(row, src_{w_}, {w_}_indices, {w_}_data, {w_}_indptr[i], {w_}_indptr[i + 1], "
                 f"F_{w_}, {0 if n == 0 else 1}, {first})  # {comment_text(q.name)}{': add' if n else ''}")


class NumbaBackend:
    name = "numba"

    def __init__(self, program: Program, batch: int):
        self.program = program
        groups = product_groups(program)
        self.groups = stack_weights(program, groups)
        # (projection, its block): a stacked projection whose array was replaced instead of
        # written in place (``stored(name).dense = new``, or another simulator stacking the same
        # Program) is copied back into this kernel's block before each run
        self._views = [(q, q.weights.dense) for g in groups for q in g.projections]
        self.source_text, self.args = generate(program, batch, groups)
        self.parallel = "parallel=True" in self.source_text
        dense = sum(q.weights.shape[0] * q.weights.shape[1] for q in program.projections.values()
                    if not q.weights.is_sparse or q.rule is not None)
        # prange next to spinning BLAS threads is 30x slower (runtime/threads.py); small products
        # lose more to waking BLAS threads than they gain
        self.blas_one_thread = self.parallel or dense * batch < BLAS_THREADS_MIN_WORK
        key = hashlib.sha256(self.source_text.encode()).hexdigest()[:24]  # the code itself (Brian2's key)
        self.key = key
        self.module, self.path = load_module(self.source_text, key, "numba")
        self.kernel = self.module.run_chunk
        self._names = {p.index: p.name for p in program.populations.values()}

    def source(self) -> str:
        return self.source_text

    def warm_up(self, sim) -> None:
        """Compile now (a run of 0 steps), holding the cache lock so racing processes compile once."""
        from eigraph.compile.cache import cache_root

        with file_lock(cache_root() / "numba" / f"eigraph_{self.key}.lock"):
            self.run(sim, 0, self._empty_inputs(sim), self._empty_noise(sim), {}, {}, None, False, False)

    def _empty_inputs(self, sim):
        return {p.name: np.zeros((0, p.size, sim.batch), dtype=self.program.dtype)
                for p in self.program.populations.values() if p.role == "input"}

    def _empty_noise(self, sim):
        return {p.name: np.zeros((0, p.size, sim.batch), dtype=self.program.dtype)
                for p in self.program.populations.values() if p.noise and p.role != "input"}

    def _mask(self, name: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_masks", {})
        if name not in cache:
            cache[name] = np.ascontiguousarray(self.program.projections[name].weights.mask, dtype=np.uint8)
        return cache[name]

    def _arguments(self, sim, steps, inputs, noise, records, targets, reward, learn, trial_end,
                   baseline=None, gate=None) -> list:
        program = self.program
        status = np.full(2, -1, dtype=np.int64)
        out = []
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = self._parsed = [what.partition(":")[::2] for _name, what in self.args]
        empty = self.__dict__.setdefault("_empty", {})

        def placeholder(key, shape):  # 0-length arrays for what this run does not use; never written
            if key not in empty:
                empty[key] = np.zeros(shape(), dtype=program.dtype)
            return empty[key]

        for kind, target in parsed:
            if kind == "steps":
                out.append(steps)
            elif kind == "n0":
                out.append(sim.n)
            elif kind == "status":
                out.append(status)
            elif kind == "learn":
                out.append(1 if learn else 0)
            elif kind == "trial_end":
                out.append(1 if trial_end else 0)
            elif kind == "gate":  # one flag per step; open on every step unless given
                if gate is None:
                    ones = self.__dict__.setdefault("_open", {})
                    if steps not in ones:
                        if len(ones) > 32:
                            ones.clear()
                        ones[steps] = np.ones(steps, dtype=np.uint8)
                    out.append(ones[steps])
                else:
                    out.append(np.ascontiguousarray(gate, dtype=np.uint8))
            elif kind == "trace":
                out.append(sim.traces[target])
            elif kind == "phase":
                out.append(sim.phase)
            elif kind == "phasevalue":
                out.append(sim.phase_values[program.phase_values[int(target)]])
            elif kind == "mask":
                out.append(self._mask(target))
            elif kind == "target":
                if target in targets:
                    out.append(targets[target])
                elif learn and any(q.target == target and reads_target(q) and program.learns_in(q, sim.phase)
                                   for q in program.learners):
                    q = next(q for q in program.learners if q.target == target and reads_target(q))
                    raise InputError(f"rule {q.rule.name} on {q.name} reads 'target', but no targets were given "
                                     f"for '{target}': pass run(..., targets=...)")
                else:
                    out.append(placeholder(("target", target), lambda t=target: (0, program.populations[t].size, sim.batch)))
            elif kind == "reward":
                if reward is not None:
                    out.append(reward)
                elif learn and any(reads_reward(q) and program.learns_in(q, sim.phase) for q in program.learners):
                    q = next(q for q in program.learners if reads_reward(q))
                    raise InputError(f"rule {q.rule.name} on {q.name} reads 'reward', but no reward was given: "
                                     "pass run(..., reward=...)")
                else:
                    out.append(placeholder("reward", lambda: (0, sim.batch)))
            elif kind == "reward_baseline":
                if baseline is not None:
                    out.append(baseline)
                elif learn and any(reads_reward(q, kind) and program.learns_in(q, sim.phase) for q in program.learners):
                    q = next(q for q in program.learners if reads_reward(q, kind))
                    raise InputError(f"rule {q.rule.name} on {q.name} reads 'reward_baseline', but none was given: "
                                     "pass run(..., reward_baseline=...)")
                else:
                    out.append(placeholder("reward_baseline", lambda: (0, sim.batch)))
            elif kind == "input":
                out.append(inputs[target])
            elif kind == "x":
                out.append(sim.x[target])
            elif kind == "r":
                out.append(sim.r[target])
            elif kind == "noise":
                out.append(noise[target])
            elif kind == "draws":  # the rule's uniform draws (Simulator._draws); none when it does not learn
                if f"rule:{target}" in noise:
                    out.append(noise[f"rule:{target}"])
                else:
                    q = program.learner(target)
                    out.append(placeholder(("draws", target), lambda q=q: (
                        0, draw_count(q.rule.statements), program.populations[q.target].size, sim.batch)))
            elif kind == "bias":
                out.append(program.populations[target].bias)
            elif kind == "biasw":  # a learned bias as the (N, 1) weights of an always-on unit: the same array
                out.append(program.biases[target].weights.dense)
            elif kind == "compartment":
                out.append(sim.compartment[target])
            elif kind == "error":
                out.append(sim.error[target])
            elif kind == "group":
                out.append(self.groups[target])
            elif kind in ("indptr", "indices", "data", "dense"):
                w = program.projections[target].weights
                out.append(getattr(w, kind))
            elif kind == "record":
                if target in records:
                    out.append(records[target])
                else:
                    out.append(placeholder(("record", target), lambda t=target: (0,) + sim.read(t).shape))
        return out, status

    def run(self, sim, steps: int, inputs: dict, noise: dict, records: dict, targets=None, reward=None,
            learn: bool = True, trial_end: bool = True, baseline=None, gate=None):
        for q, view in self._views:
            if q.weights.dense is not view:
                if q.weights.dense is None or q.weights.dense.shape != view.shape:
                    raise InputError(f"weights of {q.name} were replaced by an array of shape "
                                     f"{None if q.weights.dense is None else q.weights.dense.shape}; "
                                     f"expected {view.shape} (post x pre)")
                view[...] = q.weights.dense
                q.weights.dense = view
        arguments, status = self._arguments(sim, steps, inputs, noise, records, targets or {}, reward, learn,
                                            trial_end, baseline, gate)
        with blas_threads(1) if self.blas_one_thread else contextlib.nullcontext():
            self.kernel(*arguments)
        if status[0] >= 0:
            code = int(status[1])
            if code >= 1000:
                projection = next(q.name for q in [*self.program.projections.values(), *self.program.biases.values()]
                                  if q.index == code - 1000)
                return int(status[0]), ("rule", projection)
            return int(status[0]), self._names[code]
        sim.n += steps
        return None
