"""Learning rules give the same weights and traces on the Numba backend as on the NumPy
reference.

Every built-in rule and a set of user rules (a per-synapse trace, temporaries, an ``on trial``
rule, ``mean()``, ``clip``, ``heaviside``, ``exp``, ``post.x``, ``t`` / ``dt``, and statements that
read a trace before its equation) sit on their own projection of one "zoo" model. The zoo is
built three times: dense in float64, ``sparse(p)`` in float32 and ``fixed_in(k)`` in float64,
each run with batch 4 for 100 steps. The generated kernel fixes the batch size (``B`` is a
constant), so every batch size is one more compile of the whole zoo (about a minute each on CI);
batch 4 is the one run: a batch > 1 is what makes batch means (``dw`` and ``: shared`` traces
averaged over the batch, ``mean()``) differ from the single sample, and no generated code depends
on the batch being 1 (the hand-simulated rules of test_learning.py run at batch 1 and 3). A wide
model makes the rule updates large enough for ``prange``.

During every run a callback checks after each step that Dale's law, bounds and normalisation
hold exactly (see ``constraint_violations``), and the tests check that each rule did change its
weights, so that agreement is not agreement on nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

import eigraph

STEPS = 100
BATCH = 4  # see the module docstring
TOLERANCE = {np.dtype("float32"): dict(rtol=2e-4, atol=2e-5), np.dtype("float64"): dict(rtol=1e-9, atol=1e-12)}

# ------------------------------------------------------------------------------------------------
# Loading models written by the tests. They are loaded by a path relative to their folder, so
# the generated Numba source (which names the file) is the same on every run and the compiled
# kernels are found in the disk cache next time.
# ------------------------------------------------------------------------------------------------
_MODELS: dict[tuple[str, str], object] = {}


@pytest.fixture(scope="session")
def learn_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("learning_models")


def load_text(folder: Path, name: str, text: str):
    key = (name, text)
    if key not in _MODELS:
        (folder / name).write_text(text, encoding="utf-8")
        with contextlib.chdir(folder):
            _MODELS[key] = eigraph.load(name)
    return _MODELS[key]


# ------------------------------------------------------------------------------------------------
# Constraints, checked after every step of every run in this file (and in test_learning.py)
# ------------------------------------------------------------------------------------------------
def constraint_violations(sim) -> list[str]:
    """What breaks the constraints in the stored weights right now: magnitudes from a signed
    source below 0 (exactly), weights outside ``bounds`` (exactly, for projections without
    ``normalize``, which is applied after the bounds), rows whose L1 sum is not ``normalize``
    (within float rounding) where the row is not all zero, and weights where a dense projection
    has no synapse (its mask)."""
    program = sim.program
    out = []
    eps = np.finfo(program.dtype).eps
    for q in program.projections.values():
        w = sim.weights.stored(q.name)
        values = w.values()  # the synapses that exist (a masked dense matrix holds zeros elsewhere)
        if program.dale and q.sign != 0 and not (values >= 0).all():
            out.append(f"{q.name}: magnitude {values.min()!r} < 0 under Dale's law")
        if q.bounds and not q.normalize:
            lo, hi = (program.dtype.type(b) for b in q.bounds)
            if not ((values >= lo).all() and (values <= hi).all()):
                out.append(f"{q.name}: weights in [{values.min()!r}, {values.max()!r}] outside {list(q.bounds)}")
        if not w.is_sparse and w.mask is not None and (w.dense[~w.mask] != 0).any():
            out.append(f"{q.name}: a weight where there is no synapse")
        if q.normalize:
            dense = np.abs(w.to_dense().astype(np.float64))
            sums = dense.sum(axis=1)
            nonzero = sums > 0
            if not np.allclose(sums[nonzero], q.normalize, rtol=8 * eps * max(1, dense.shape[1]), atol=0):
                out.append(f"{q.name}: row sums {sums[nonzero]} != normalize {q.normalize}")
    return out


class ConstraintWatch:
    """``run(..., every=1, callback=watch)``: records every violation with its step."""

    def __init__(self):
        self.violations: list[str] = []
        self.calls = 0

    def __call__(self, sim) -> None:
        self.calls += 1
        self.violations += [f"after step {sim.n}: {v}" for v in constraint_violations(sim)]


# ------------------------------------------------------------------------------------------------
# The zoo: one projection per rule
# ------------------------------------------------------------------------------------------------
ZOO_HEAD = """\
network zoo_{tag} {{ dt = 1 ms; seed = 7; precision = {precision} }}

celltype Pyr : excitatory {{ tau = 5 ms; compartments = [apical]; apical_gain = 0.5 }}
celltype U   : unsigned input {{ activation = linear }}

population inp : input(6)
population top : input(4)
population u   : U(5)
population E   : Pyr(8)
population I   : I(5)
population out : readout(3)
population lin : readout(4)
population aux : readout(3)
population pc  : readout(2)
population ord : readout(2)

# a per-synapse trace (with an initial value): the rule does not factorise
rule syn_trace(eta = 0.05, tau_e = 15 ms) {{
    e' = (pre * post - e) / tau_e
    e(0) = 0.1
    dw = eta * e * (1 - w)
}}
# temporaries, one per synapse and one per post neuron
rule with_temp(eta = 0.05) {{
    s = tanh(pre * post - 0.1)
    g = post - 0.3
    dw = eta * s * g - eta * 0.1 * w
}}
# traces every step, the weights once per run() call
rule per_trial(eta = 0.02, tau = 10 ms) on trial {{
    m' = (post - m) / tau
    dw = eta * pre * (post - m)
}}
rule funcs(eta = 0.05) {{
    dw = eta * clip(pre - mean(pre), -0.5, 0.5) * heaviside(post - mean(post)) * exp(-w)
}}
rule misc(eta = 0.01) {{
    a = sqrt(abs(pre)) * sigmoid(post.x) + log(1 + relu(post))
    dw = eta * min(max(a, 0.1), 2) * sigmoid(t / dt / 50) - eta * w * pre
}}
# dw reads the new a (written before it) and the old b and q (written after it)
rule ordered(eta = 0.05, tau = 4 ms) {{
    a' = (pre * post - a) / tau
    a(0) = 0.5
    dw = eta * (a - b) * q
    b' = (pre - b) / tau
    q' = (post - q) / tau
    q(0) = 1
}}
# the same, factorised, with a shared trace
rule ordered_f(eta = 0.05, tau = 4 ms) {{
    dw = eta * b * q
    b' = (pre - b) / tau
    q' = (post^2 - q) / tau : shared
    q(0) = 1
}}

"""

# rule (the test id) -> (projection name, declaration with {conn} for the connectivity)
ZOO = {
    "hebb": ("inp->E", "inp -> E : {conn}, learn = hebb(eta = 0.05), bounds = [0, 0.8]"),
    "dendritic_error": ("top->E.apical", "top -> E.apical : {conn}, learn = dendritic_error(eta = 0.02)"),
    "covariance": ("E->E", "E -> E : {conn}, init = uniform(0, 0.15), "
                           "learn = covariance(eta = 0.01, tau = 20 ms), bounds = [0, 0.25]"),
    "bcm": ("E->I", "E -> I : {conn}, learn = bcm(eta = 0.05, tau_theta = 10 ms, y0 = 1), normalize = 1.5"),
    "vogels": ("I->E", "I -> E : {conn}, learn = vogels(eta = 0.05, rho0 = 0.5)"),
    "anti_hebb": ("I->I", "I -> I : {conn}, learn = anti_hebb(eta = 0.1)"),
    "delta": ("E->out", "E -> out : {conn}, learn = delta(eta = 0.05)"),
    "delta_from_inhibitory": ("I->out", "I -> out : {conn}, learn = delta(eta = 0.05)"),  # sign = -1
    "reward_hebb": ("inp->out", "inp -> out : {conn}, learn = reward_hebb(eta = 0.05, tau_e = 20 ms)"),
    "oja": ("u->pc", "u -> pc : {conn}, learn = oja(eta = 0.05)"),
    "user_syn_trace": ("inp->lin", "inp -> lin : {conn}, learn = syn_trace"),
    "user_temporaries": ("u->aux", "u -> aux : {conn}, learn = with_temp, bounds = [-0.5, 0.5]"),
    "user_on_trial": ("E->lin", "E -> lin : {conn}, learn = per_trial"),
    "user_functions": ("u->out", "u -> out : {conn}, learn = funcs"),
    "user_misc": ("E->aux", "E -> aux : {conn}, learn = misc"),
    "user_ordered": ("inp->ord", "inp -> ord : {conn}, learn = ordered, bounds = [0, 1]"),
    "user_ordered_factorised": ("I->ord", "I -> ord : {conn}, learn = ordered_f, bounds = [0, 1]"),
    "hebb_norm": ("top->lin", "top -> lin : {conn}, learn = hebb_norm(eta = 0.05), normalize = 1"),
    "hebb_norm_clip": ("top->aux", "top -> aux : {conn}, learn = hebb_norm_clip(eta = 0.05), normalize = 1"),
    "supervised_bcm": ("top->pc", "top -> pc : {conn}, learn = supervised_bcm(eta = 0.05, k = 0.5, tau_theta = 10 ms)"),
}
ZOO_TAIL = "\nrun { task = data(file = \"samples.npz\"); inputs = [inp, top, u]; targets = out }\n"

# build -> (connectivity, precision, rules). Sparse(p) and fixed_in(k) are both stored as CSR
# and run the same kernels, so the fixed_in build carries a subset (each rule is one more Numba
# function to compile): every kind of rule code, on a different sparsity structure.
ALL = tuple(ZOO)
BUILDS = {
    "dense-f64": ("dense", "float64", ALL),
    "sparse-f32": ("sparse(p = 0.6)", "float32", ALL),
    "fixed_in-f64": ("fixed_in(k = 3)", "float64", (
        "hebb", "covariance", "bcm", "delta", "delta_from_inhibitory", "reward_hebb", "oja",
        "user_syn_trace", "user_temporaries", "user_on_trial", "user_ordered")),
}
CASES = [pytest.param(rule, build, id=f"{rule}-{build}") for build in BUILDS for rule in BUILDS[build][2]]


def zoo_text(build: str) -> str:
    conn, precision, rules = BUILDS[build]
    tag = build.replace("-", "_")
    lines = [ZOO[rule][1].format(conn=conn) for rule in rules]
    return ZOO_HEAD.format(tag=tag, precision=precision) + "\n".join(lines) + "\n" + ZOO_TAIL


def zoo_model(folder: Path, build: str):
    return load_text(folder, f"zoo_{build.replace('-', '_')}.ei", zoo_text(build))


def zoo_feed(batch: int, steps: int = STEPS, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    inputs = {"inp": rng.random((steps, batch, 6)), "top": rng.random((steps, batch, 4)),
              "u": rng.random((steps, batch, 5)) - 0.5}
    return {"inputs": inputs, "targets": {"out": rng.random((steps, batch, 3))},
            "reward": rng.standard_normal((steps, batch))}


_ZOO_RUNS: dict[tuple[str, int], dict] = {}


def zoo_runs(folder: Path, build: str, batch: int) -> dict:
    """Both backends, 100 steps, constraints watched after every step. Cached per build and batch."""
    key = (build, batch)
    if key not in _ZOO_RUNS:
        model = zoo_model(folder, build)
        result = {}
        for backend in ("numpy", "numba"):
            sim = model.compile(backend=backend, batch=batch)
            initial = {name: sim.weights[name] for name in sim.weights}
            watch = ConstraintWatch()
            sim.run(**zoo_feed(batch), every=1, callback=watch)
            result[backend] = {
                "initial": initial,
                "weights": {name: sim.weights[name] for name in sim.weights},
                "traces": {name: value.copy() for name, value in sim.traces.items()},
                "watch": watch,
                "dtype": np.dtype(sim.program.dtype),
                "factorised": {q.name: q.rule.analysis.factorised for q in sim.program.plastic},
            }
        _ZOO_RUNS[key] = result
    return _ZOO_RUNS[key]


@pytest.mark.parametrize("rule, build", CASES)
def test_rule_matches_reference(learn_folder, rule, build):
    runs = zoo_runs(learn_folder, build, BATCH)
    projection = ZOO[rule][0]
    ref, fast = runs["numpy"], runs["numba"]
    tol = TOLERANCE[ref["dtype"]]
    changed = np.abs(ref["weights"][projection] - ref["initial"][projection]).max()
    assert changed > 1e-4, f"{rule} on {projection} did not change its weights in {STEPS} steps: the test is vacuous"
    np.testing.assert_allclose(fast["weights"][projection], ref["weights"][projection], **tol,
                               err_msg=f"weights of {projection} ({rule}) differ between numba and numpy")
    traces = [name for name in ref["traces"] if name.startswith(projection + ":")]
    assert traces == [name for name in fast["traces"] if name.startswith(projection + ":")]
    for name in traces:
        assert fast["traces"][name].shape == ref["traces"][name].shape, name
        np.testing.assert_allclose(fast["traces"][name], ref["traces"][name], **tol,
                                   err_msg=f"trace {name} differs between numba and numpy")


@pytest.mark.parametrize("build", list(BUILDS))
def test_constraints_hold_after_every_step(learn_folder, build):
    runs = zoo_runs(learn_folder, build, BATCH)
    for backend in ("numpy", "numba"):
        watch = runs[backend]["watch"]
        assert watch.calls == STEPS
        assert not watch.violations, f"{backend}: " + "; ".join(watch.violations[:5])


def test_zoo_covers_both_compilation_paths(learn_folder):
    runs = zoo_runs(learn_folder, "dense-f64", BATCH)
    factorised = runs["numpy"]["factorised"]
    assert factorised[ZOO["hebb"][0]] and factorised[ZOO["user_ordered_factorised"][0]]
    for rule in ("user_syn_trace", "user_temporaries", "user_functions", "user_misc", "user_ordered", "reward_hebb"):
        assert not factorised[ZOO[rule][0]], f"{rule} was expected to need the per-synapse kernel"


# Two-phase rules read X@PHASE, which needs a model with phases: they are checked on both backends
# against their equations and step by step in tests/test_phases.py and tests/test_eiann_rules.py.
TWO_PHASE_TESTS = ("test_phases.py", "test_eiann_rules.py")


def test_every_builtin_rule_is_in_the_zoo():
    from eigraph.expr import ast as ex
    from eigraph.frontend.dsl import parse_document

    prelude = (Path(eigraph.__file__).parent / "model" / "prelude.ei").read_text(encoding="utf-8")
    doc, _ = parse_document(prelude, "prelude.ei")
    two_phase = {r.name for r in doc.rules
                 if any(isinstance(n, ex.Name) and n.phase for s in r.body for n in ex.walk(s.value))}
    builtin = {r.name for r in doc.rules}
    # rules that read a carry = error compartment run, numba against the reference step by step and
    # on hand-computed numbers, in their own file (their feedback projection is not in the zoo);
    # node_perturbation reads reward_baseline, which the zoo does not give: both backends on
    # hand-computed numbers in test_reward.py
    own = {"rflo": "test_rflo.py", "eprop": "test_rflo.py", "node_perturbation": "test_reward.py"}
    for name, file in own.items():
        assert f"{name}(" in (Path(__file__).parent / file).read_text(encoding="utf-8"), (name, file)
    missing = sorted(builtin - two_phase - set(ZOO) - set(own))
    assert not missing, f"built-in rules missing from the zoo: {missing}"
    tests = "".join((Path(__file__).parent / name).read_text(encoding="utf-8") for name in TWO_PHASE_TESTS)
    untested = sorted(name for name in two_phase if f"{name}(" not in tests and f"= {name}" not in tests)
    assert not untested, f"two-phase rules no test runs: {untested}"


# ------------------------------------------------------------------------------------------------
# Rule updates on the parallel code path (prange)
# ------------------------------------------------------------------------------------------------
WIDE = """\
network wide { dt = 1 ms; seed = 21; precision = float32 }

celltype U : unsigned input { activation = linear }

population u : U(64)
population e : input(64)
population y : readout(128)

rule centred(eta = 0.002) {
    dw = eta * pre * (post - mean(post))
}

u -> y : dense, init = normal(0, 0.05), learn = oja(eta = 0.002)
e -> y : dense, init = uniform(0, 0.02), learn = covariance(eta = 0.01, tau = 5 ms), bounds = [0, 0.05]
u -> y : dense, init = normal(0, 0.05), name = "centred", learn = centred, normalize = 4
e -> y : sparse(p = 0.5), init = uniform(0, 0.02), name = "sparse_hebb", learn = hebb(eta = 0.002), bounds = [0, 0.03]
e -> y : dense, init = uniform(0, 0.02), name = "anti", learn = anti_hebb(eta = 0.01)
"""


def test_wide_rules_use_prange_and_match_reference(learn_folder, monkeypatch):
    from eigraph.backends import numba_gen

    # the threshold for threads is a tuning constant (1M synapses by default); lower it so that
    # these 64 x 128 rule updates take the parallel code path
    monkeypatch.setattr(numba_gen, "PARALLEL_MIN_ELEMENTS", 64 * 128)
    model = load_text(learn_folder, "wide.ei", WIDE)
    batch, steps = 4, 60
    rng = np.random.default_rng(3)
    inputs = {"u": rng.standard_normal((steps, batch, 64)), "e": rng.random((steps, batch, 64))}
    result = {}
    for backend in ("numpy", "numba"):
        sim = model.compile(backend=backend, batch=batch)
        if backend == "numba":
            source = sim.backend.source()
            for q in sim.program.plastic:
                assert 64 * 128 >= numba_gen.PARALLEL_MIN_ELEMENTS
                function = source.split(f"def learn_{q.ident}(", 1)[1].split("\ndef ", 1)[0]
                assert "prange(128)" in function, f"the rule update of {q.name} does not use prange"
        initial = {name: sim.weights[name] for name in sim.weights}
        watch = ConstraintWatch()
        sim.run(inputs, every=1, callback=watch)
        assert not watch.violations, f"{backend}: " + "; ".join(watch.violations[:5])
        result[backend] = ({name: sim.weights[name] for name in sim.weights}, initial,
                           {k: v.copy() for k, v in sim.traces.items()})
    (ref, initial, ref_traces), (fast, _, fast_traces) = result["numpy"], result["numba"]
    for name in ref:
        assert np.abs(ref[name] - initial[name]).max() > 1e-4, f"{name} did not learn"
        np.testing.assert_allclose(fast[name], ref[name], **TOLERANCE[np.dtype("float32")], err_msg=name)
    for name in ref_traces:
        np.testing.assert_allclose(fast_traces[name], ref_traces[name], **TOLERANCE[np.dtype("float32")],
                                   err_msg=name)
