"""The Numba backend: generates readable Python source for the whole run and compiles it.

One ``@njit`` function holds the time loop. Dense projections are BLAS products
(``np.dot(W, r)``, state stored neurons x batch); a sparse projection's rows are accumulated
inside the same loop that updates the target population, so the summed input, the Euler step,
the activation and the NaN check are one pass over the target's neurons. Comments in the
generated code point back to the model's lines. Constants are module globals, which Numba
folds into the machine code.
"""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np

from eigraph import __version__
from eigraph.backends.numba_rules import RuleEmitter, reads_reward, reads_target
from eigraph.compile.cache import file_lock, load_module
from eigraph.compile.program import PopulationPlan, Program
from eigraph.runtime.errors import InputError

# Threads for element-wise loops only pay off when a loop is far larger than the BLAS products
# around it: a parallel region each step next to threaded BLAS was measured 10-30x slower on a
# busy 2-core machine (tools/bench.py), while the whole update pass at N=1024, B=64 is ~25 us.
PARALLEL_MIN_ELEMENTS = 1 << 20  # neurons x batch of a population, or synapses of a rule
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
    name = str(span.file).rsplit("/", 1)[-1]
    return f"  [{name}:{span.line}]"


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.indent = 0

    def __call__(self, text: str = "") -> None:
        self.lines.append(("    " * self.indent + text) if text else "")

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


def generate(program: Program, batch: int) -> tuple[str, list[tuple[str, str]]]:
    """The kernel's source and its arguments as (argument name, what it is).

    Each population update and each rule is its own small ``@njit`` function, called from the
    driver loop ``run_chunk``: LLVM's optimisation time grows faster than linearly with the size
    of a function, and a population large enough for threads gets ``prange`` on its own.
    """
    dtype = np.dtype(program.dtype).name
    args: list[tuple[str, str]] = [("steps", "steps"), ("n0", "n0"), ("status", "status"), ("learn", "learn"),
                                   ("trial_end", "trial_end")]
    consts: list[str] = []
    pops = list(program.populations.values())

    def const(name: str, value: float, comment: str = "") -> str:
        consts.append(f"{name} = np.{dtype}({float(value)!r}){'  # ' + comment if comment else ''}")
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
            args.append((f"c_{i}_{c}", f"compartment:{p.name}.{c}"))
    for q in program.projections.values():
        if q.weights.is_sparse:
            args += [(f"{q.ident}_indptr", f"indptr:{q.name}"), (f"{q.ident}_indices", f"indices:{q.name}"),
                     (f"{q.ident}_data", f"data:{q.name}")]
        else:
            args.append((q.ident, f"dense:{q.name}"))
    emitters = [RuleEmitter(program, q, const) for q in program.plastic]
    for emitter in emitters:
        args += emitter.args()
    for name in sorted({q.target for q in program.plastic if reads_target(q)}, key=lambda n: program.populations[n].index):
        args.append((f"tgt_{program.populations[name].ident}", f"target:{name}"))
    if any(reads_reward(q) for q in program.plastic):
        args.append(("rew", "reward"))
    record_args = {}
    for k, name in enumerate(recordables(program)):
        record_args[name] = f"rec{k}"
        args.append((f"rec{k}", f"record:{name}"))

    w = _Writer()
    source_name = str(program.file).replace("\\", "/").rsplit("/", 1)[-1]  # not the path: the code is keyed by its text
    w(f'"""Generated by eigraph {__version__} from {source_name} (content hash {program.content_hash}).')
    w("")
    w("eigraph regenerates this file; edit the model instead. State arrays are neurons x batch;")
    w("r_* are ring buffers of rates: r[n % history] is the rate after n steps.")
    w('"""')
    w("import numpy as np")
    w("from numba import njit, prange")
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
            const(f"GAIN_{p.ident}_{c}", gain, f"{c}_gain of {p.name}")
    for q in program.projections.values():
        const(f"F_{q.ident}", q.factor, f"sign * gain of {q.name}")
    body(f"B = r_{pops[0].ident}.shape[2]  # batch" if pops else "B = 1")
    for q in program.projections.values():
        kind = "s" if q.weights.is_sparse else "d"
        body(f"{kind}_{q.ident} = np.empty(({program.populations[q.target].size}, B), dtype=np.{dtype})"
             f"  # {'rows of' if kind == 's' else 'product of'} {q.name}")
    if emitters:
        const("DT", program.dt or 1.0, "the time step in seconds, for traces")
        body(f"INV_B = np.{dtype}(1.0 / B)")
        for emitter in emitters:
            for line in emitter.scratch():
                body(line)
    functions: list[tuple[str, list[str], list[str], bool, bool]] = []
    available = [name for name, _ in args] + ["t", "n", "cur", "nxt", "B", "INV_B"]
    for q in program.projections.values():
        available.append(f"{'s' if q.weights.is_sparse else 'd'}_{q.ident}")
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

    body("for t in range(steps):")
    with body.block():
        body("n = n0 + t")
        body("cur = n % 2")
        body("nxt = 1 - cur")
        for op in program.ops:
            if op.kind == "input":
                p = program.populations[op.name]
                body(f"# input {p.name}: the task's input at step n{_where(p.span)}")
                body(f"r_{p.ident}[(n + 1) % {p.history}] = in_{p.ident}[t]")
            elif op.kind == "integrate":
                p = program.populations[op.name]
                parallel = p.size * batch >= PARALLEL_MIN_ELEMENTS
                body(f"# integrate {p.name}{_where(p.span)}")
                call(f"integrate_{p.ident}",
                     lambda w_, p=p, par=parallel: _integrate(w_, program, p, "prange" if par else "range"), parallel,
                     fast=True)
            elif op.kind == "learn":
                emitter = next(e for e in emitters if e.q.name == op.name)
                timing = "True" if emitter.rule.timing == "step" else "trial_end != 0 and t == steps - 1"
                q = emitter.q
                size = program.populations[q.source].size * program.populations[q.target].size
                parallel = emitter.analysis.factorised and size >= PARALLEL_MIN_ELEMENTS
                emitter.parallel = parallel
                body(f"# rule {emitter.rule.name} on {q.name}{_where(q.span)}")
                body("if learn != 0:")
                with body.block():
                    call(f"learn_{q.ident}", lambda w_, e=emitter, tm=timing: e.emit(w_, tm), parallel, fast=True)
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
                            source = f"c_{p.ident}_{what}"
                        body(f"if {rec}.shape[0] > 0:")
                        body(f"    {rec}[t] = {source}")
    body("return")

    w("")
    w("\n".join(consts))
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
        w(f"    {name},  # {what}")
    w("):")
    w.lines += body.lines
    return "\n".join(w.lines) + "\n", args


def _integrate(body: _Writer, program: Program, p: PopulationPlan, loop: str) -> None:
    i = p.ident
    incoming = program.incoming(p.name)
    body(f"# {p.name}: {p.size} neurons, {p.activation}{_where(p.span)}")
    terms: dict[str | None, list[str]] = {}
    sparse = []
    for q in incoming:
        source = program.populations[q.source]
        slot = {0: f"(n + 1) % {source.history}", 1: f"n % {source.history}"}.get(
            q.delay, f"(n + 1 - {q.delay}) % {source.history}")
        where = f".{q.compartment}" if q.compartment else ""
        if q.weights.is_sparse:
            body(f"src_{q.ident} = r_{source.ident}[{slot}]  # {q.name}: csr, delay {q.delay}{_where(q.span)}")
            sparse.append(q)
            terms.setdefault(q.compartment, []).append(f"F_{q.ident} * s_{q.ident}[i, b]")
        else:
            body(f"np.dot({q.ident}, r_{source.ident}[{slot}], d_{q.ident})"
                 f"  # {q.name}{where if not q.name.endswith(where) else ''}: dense, delay {q.delay}{_where(q.span)}")
            terms.setdefault(q.compartment, []).append(f"F_{q.ident} * d_{q.ident}[i, b]")
    body("chk = 0.0")
    body(f"for i in {loop}({p.size}):")
    with body.block():
        for q in sparse:
            body(f"row = s_{q.ident}[i]  # row i of {q.name}")
            body("for b in range(B):")
            body("    row[b] = ZERO")
            body(f"for k in range({q.ident}_indptr[i], {q.ident}_indptr[i + 1]):")
            body(f"    wk = {q.ident}_data[k]")
            body(f"    src = src_{q.ident}[{q.ident}_indices[k]]")
            body("    for b in range(B):")
            body("        row[b] += wk * src[b]")
        body("for b in range(B):")
        with body.block():
            soma = " + ".join(terms.get(None, [])) or "ZERO"
            body(f"inp = {soma}")
            for c in p.compartments:
                body(f"comp = {' + '.join(terms.get(c, [])) or 'ZERO'}")
                body(f"c_{i}_{c}[i, b] = comp")
                if c in p.compartment_gains:
                    body(f"inp += GAIN_{i}_{c} * comp")
            bias = f"bias_{i}[i]" if isinstance(p.bias, np.ndarray) else f"BIAS_{i}"
            body(f"xo = x_{i}[cur, i, b]")
            noise = f" + NOISE_{i} * noise_{i}[t, i, b]" if p.noise else ""
            body(f"xn = xo + ALPHA_{i} * (-xo + inp + {bias}){noise}")
            body(f"x_{i}[nxt, i, b] = xn")
            if p.activation != "softmax":
                rate = _ACTIVATIONS[p.activation].format(v="xn")
                body(f"rn = {rate}")
                body(f"r_{i}[(n + 1) % {p.history}, i, b] = rn")
                body("chk += xn - xn  # 0 unless NaN or infinite (a finite x has a finite rate)")
            else:
                body("chk += xn - xn")
    if p.activation == "softmax":
        body(f"for b in range(B):  # softmax over the neurons of {p.name}")
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
    body("if chk != 0.0:")
    body("    status[0] = n")
    body(f"    status[1] = {p.index}")
    body("    return 1")


class NumbaBackend:
    name = "numba"

    def __init__(self, program: Program, batch: int):
        self.program = program
        self.source_text, self.args = generate(program, batch)
        self.parallel = "parallel=True" in self.source_text
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

    def _arguments(self, sim, steps, inputs, noise, records, targets, reward, learn, trial_end) -> list:
        program = self.program
        status = np.full(2, -1, dtype=np.int64)
        out = []
        for _name, what in self.args:
            kind, _, target = what.partition(":")
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
            elif kind == "trace":
                out.append(sim.traces[target])
            elif kind == "mask":
                out.append(self._mask(target))
            elif kind == "target":
                if target in targets:
                    out.append(targets[target])
                elif learn:
                    q = next(q for q in program.plastic if q.target == target and reads_target(q))
                    raise InputError(f"rule {q.rule.name} on {q.name} reads 'target', but no targets were given "
                                     f"for '{target}': pass run(..., targets=...)")
                else:
                    out.append(np.zeros((0, program.populations[target].size, sim.batch), dtype=program.dtype))
            elif kind == "reward":
                if reward is not None:
                    out.append(reward)
                elif learn:
                    q = next(q for q in program.plastic if reads_reward(q))
                    raise InputError(f"rule {q.rule.name} on {q.name} reads 'reward', but no reward was given: "
                                     "pass run(..., reward=...)")
                else:
                    out.append(np.zeros((0, sim.batch), dtype=program.dtype))
            elif kind == "input":
                out.append(inputs[target])
            elif kind == "x":
                out.append(sim.x[target])
            elif kind == "r":
                out.append(sim.r[target])
            elif kind == "noise":
                out.append(noise[target])
            elif kind == "bias":
                out.append(program.populations[target].bias)
            elif kind == "compartment":
                out.append(sim.compartment[target])
            elif kind in ("indptr", "indices", "data", "dense"):
                w = program.projections[target].weights
                out.append(getattr(w, kind))
            elif kind == "record":
                if target in records:
                    out.append(records[target])
                else:
                    shape = sim.read(target).shape
                    out.append(np.zeros((0,) + shape, dtype=program.dtype))
        return out, status

    def run(self, sim, steps: int, inputs: dict, noise: dict, records: dict, targets=None, reward=None,
            learn: bool = True, trial_end: bool = True):
        arguments, status = self._arguments(sim, steps, inputs, noise, records, targets or {}, reward, learn,
                                            trial_end)
        self.kernel(*arguments)
        if status[0] >= 0:
            code = int(status[1])
            if code >= 1000:
                projection = next(q.name for q in self.program.projections.values() if q.index == code - 1000)
                return int(status[0]), ("rule", projection)
            return int(status[0]), self._names[code]
        sim.n += steps
        return None
