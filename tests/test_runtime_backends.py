"""One shared suite, run on every backend (the ``backend`` fixture): each backend matches the
NumPy reference step for step, on every example model and on small models made to cover the
language (every activation, compartments with and without a gain, delays 0/1/3, every
connectivity, float64, batch 1 and > 1, the parallel Numba kernel, biases drawn from a
distribution, noise, every built-in rule plus custom and on-trial rules). Noise is drawn by the
simulator and shared, so it must agree too; learning is on (with random targets and rewards),
and a second test runs the examples with learn=False so a difference in the dynamics alone is
easy to place.

Runs are also deterministic (same model, seed and backend: the same numbers, bit for bit),
independent of how a run is split into calls, and survive a save / load round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES, run_batch
from conftest import MODELS as ROOT_MODELS

import eigraph
from eigraph.backends import numba_gen
from eigraph.runtime import simulator as simulator_module
from eigraph.runtime.errors import InputError

# The threshold for threads is a tuning constant (1M elements by default, so that threads never
# fight the BLAS products of small models); these tests lower it to exercise the parallel code.
PARALLEL_MIN_ELEMENTS = 32768


@pytest.fixture
def parallel_threshold(monkeypatch):
    monkeypatch.setattr(numba_gen, "PARALLEL_MIN_ELEMENTS", PARALLEL_MIN_ELEMENTS)
    monkeypatch.setattr(numba_gen, "PARALLEL_MIN_SYNAPSE_WORK", 1 << 18)  # BIG: 1.6M at batch 16, 0.1M at 1


STEPS = 40
TOLERANCE = {np.dtype("float32"): dict(rtol=1e-4, atol=1e-5), np.dtype("float64"): dict(rtol=1e-9, atol=1e-12)}

# ----------------------------------------------------------------------------------------------
# Custom models. Each is small (a Numba compile is a few seconds, then cached on disk).
# ----------------------------------------------------------------------------------------------

ACTIVATIONS = """\
# every activation; biases as numbers and drawn from distributions; x0; noise; gains; delay 0
network activations { dt = 1 ms; seed = 11; precision = float32 }

celltype Pyr : excitatory { tau = 5 ms }
celltype Int : inhibitory { tau = 4 ms; activation = relu }

population inp  : input(4)
population Relu : Pyr(6) { activation = relu; noise = 0.2; bias = uniform(-0.2, 0.5) }
population Tanh : Pyr(5) { activation = tanh; x0 = 0.3 }
population Sig  : Pyr(5) { activation = sigmoid; bias = normal(0, 0.5) }
population Soft : Pyr(5) { activation = softplus; noise = 0.1; x0 = -0.5 }
population Lin  : Pyr(4) { activation = linear; bias = -0.1 }
population Clip : Pyr(5) { activation = clip01; bias = 0.2; noise = 0.3 }
population Smax : Pyr(6) { activation = softmax; noise = 0.5 }
population Inh  : Int(5) { noise = 0.1; bias = halfnormal(0.2) }
population out  : readout(3)

inp  -> Relu : dense
inp  -> Tanh : dense
inp  -> Lin  : dense
Relu -> Sig  : dense
Tanh -> Soft : dense, delay = 0 steps
Sig  -> Clip : dense
Soft -> Smax : dense, init = uniform(0, 2)
Clip -> Relu : dense
Lin  -> Tanh : dense, gain = 0.5
Smax -> Inh  : dense
Relu -> Inh  : dense
Inh  -> Relu : dense, gain = 2
Inh  -> Lin  : dense
Inh  -> Inh  : dense
Smax -> out  : dense, delay = 0 steps
Lin  -> out  : dense
"""

COMPARTMENTS = """\
# compartments with a gain (apical), without one (basal, and Pyr0's apical), a gain of 0
network compartments { dt = 1 ms; seed = 12; precision = float32 }

celltype Pyr  : excitatory { tau = 10 ms; compartments = [apical, basal]; apical_gain = 0.5 }
celltype Pyr0 : excitatory { tau = 10 ms; compartments = [apical] }
celltype PyrZ : excitatory { tau = 10 ms; compartments = [apical]; apical_gain = 0; noise = 0.1 }

population inp : input(5)
population top : input(3)
population E   : Pyr(8) { noise = 0.1 }
population F   : Pyr0(6)
population Z   : PyrZ(4)
population I   : I(4)

inp -> E          : dense
top -> E.apical   : dense
inp -> E.basal    : sparse(p = 0.5)
I   -> E.apical   : dense
E   -> F          : dense
top -> F.apical   : dense, init = uniform(0, 1)
E   -> Z          : dense
F   -> Z.apical   : dense, delay = 0 steps
Z   -> E.basal    : dense
E   -> I          : dense
I   -> E          : dense
"""

DELAYS = """\
# delays of 0, 1 (the default) and 3 steps, from inputs and between hidden populations
network delays { dt = 1 ms; seed = 13; precision = PRECISION }

population inp : input(3)
population A   : E(6) { tau = 2 ms; noise = 0.1 }
population B   : E(5) { tau = 3 ms; activation = tanh }
population C   : I(4) { tau = 2 ms }
population out : readout(2)

inp -> A   : dense
inp -> B   : dense, delay = 3 steps
A   -> B   : dense, delay = 0 steps
A   -> A   : dense, delay = 3 steps, init = halfnormal(0.3)
B   -> C   : sparse(p = 0.5), delay = 1 steps
C   -> A   : dense, delay = 3 ms
C   -> B   : dense
B   -> out : dense, delay = 0 steps
A   -> out : dense, delay = 3 steps
"""

CONNECTIVITY = """\
# dense (with and without autapses), sparse, fixed_in, one_to_one, mask (stored dense and as
# CSR), weights files (dense and CSR), two named projections between the same pair
network connectivity { dt = 1 ms; seed = 14; precision = float32 }

population inp : input(6)
population E   : E(10) { tau = 3 ms; noise = 0.05 }
population I   : I(6) { tau = 2 ms }
population out : readout(3)

inp -> E   : mask("mask_sparse.npy"), init = uniform(0, 0.5)
inp -> I   : weights("w_in.npy")
E   -> E   : sparse(p = 0.3)
E   -> E   : dense, autapses = true, init = halfnormal(0.05), name = "E_dense"
E   -> I   : fixed_in(k = 4)
I   -> E   : mask("mask_dense.npy")
I   -> I   : one_to_one, init = constant(0.2)
I   -> I   : dense, name = "I_dense", init = uniform(0, 0.1)
E   -> out : weights("w_out.npy"), delay = 0 steps
I   -> out : dense
"""


def connectivity_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    mask_sparse = rng.random((10, 6)) < 0.3
    mask_sparse[0, 0] = True
    mask_dense = rng.random((10, 6)) < 0.8
    mask_dense[0, 0] = False
    w_out = np.where(rng.random((3, 10)) < 0.3, rng.random((3, 10)), 0.0)
    w_out[0, 0] = 0.5
    return {"mask_sparse.npy": mask_sparse, "mask_dense.npy": mask_dense, "w_in.npy": rng.random((6, 6)) * 0.5,
            "w_out.npy": w_out}


PLASTICITY = """\
# plasticity: every built-in rule, a custom rule with a shared trace, an on-trial rule, bounds,
# normalize, rules on dense, CSR and masked projections
network plasticity { dt = 1 ms; seed = 16; precision = float32 }

celltype Pyr : excitatory { tau = 5 ms; compartments = [apical] }

population inp : input(4)
population E   : Pyr(6) { noise = 0.05 }
population I   : I(3) { tau = 4 ms }
population out : readout(2)
population fb  : readout(2) { sign = inhibitory }

inp -> E        : dense, learn = bcm(eta = 0.01, tau_theta = 20 ms)
inp -> E.apical : sparse(p = 0.5), init = uniform(0, 0.5)
E   -> E        : sparse(p = 0.5), learn = covariance(eta = 0.01, tau = 10 ms), bounds = [0, 0.5]
E   -> I        : fixed_in(k = 3), learn = hebb(eta = 0.01), normalize = 1
I   -> E        : dense, learn = vogels(eta = 0.01, rho0 = 0.2)
I   -> I        : one_to_one, learn = oja(eta = 0.05)
E   -> out      : dense, learn = delta(eta = 0.05)
inp -> out      : dense, learn = reward_hebb(eta = 0.05, tau_e = 5 ms)
E   -> E        : dense, name = "E_dend", init = uniform(0, 0.1), learn = dendritic_error(eta = 0.01)
I   -> I        : dense, name = "I_anti", init = uniform(0, 0.2), learn = anti_hebb(eta = 0.02)
E   -> fb       : dense, delay = 0 steps, learn = fancy
fb  -> E        : dense, init = uniform(0, 0.1)
inp -> I        : dense, learn = averaged(eta = 0.02)

rule fancy(eta = 0.01, tau_a = 10 ms) {
    a' = (post.x - a) / tau_a : shared
    a(0) = 0.5
    g = clip(pre - mean(pre), -1, 1) * heaviside(post - a)
    dw = eta * (g * sigmoid(post) - 0.1 * w * abs(post)) + eta * 0.001 * (exp(-t / tau_a) + sqrt(dt / tau_a))
}

rule averaged(eta = 0.01, tau_m = 5 ms) on trial {
    m' = (pre * post - m) / tau_m
    dw = eta * (m - 0.1 * max(w, 0.05)) + eta * 0.01 * relu(mean(post) - 0.2)
}

run { inputs = inp; targets = out }
"""

BIG = """\
# large enough that the Numba kernel runs its parallel version (neurons x batch >= 32768)
network big { dt = 1 ms; seed = 15; precision = float32 }

population inp : input(8)
population E   : E(2048) { tau = 10 ms; noise = 0.1; bias = uniform(0, 0.1) }
population I   : I(256) { tau = 5 ms; activation = sigmoid }
population out : readout(4)

inp -> E   : sparse(p = 0.5), init = uniform(0, 0.5)
E   -> E   : sparse(p = 0.01)
E   -> I   : fixed_in(k = 50)
I   -> E   : sparse(p = 0.1), init = halfnormal(0.1)
I   -> I   : dense
E   -> out : dense, init = uniform(0, 0.01)
"""
BIG_BATCH = 16  # 2048 x 16 = 32768 = PARALLEL_MIN_ELEMENTS

CUSTOM = {
    "activations.ei": (ACTIVATIONS, None),
    "compartments.ei": (COMPARTMENTS, None),
    "delays.ei": (DELAYS.replace("PRECISION", "float32"), None),
    "delays64.ei": (DELAYS.replace("PRECISION", "float64"), None),
    "connectivity.ei": (CONNECTIVITY, connectivity_arrays),
    "plasticity.ei": (PLASTICITY, None),
}


def custom(ei, name):
    text, arrays = CUSTOM[name]
    return ei.load(name, text, arrays() if arrays else None)


def get_model(ei, name):
    return custom(ei, name) if name in CUSTOM else ei.example(name)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def part(feed: dict, a: int, b: int) -> dict:
    """Steps a..b of the keyword arguments made by ``ei.feed``."""
    out = {"inputs": {k: v[a:b] for k, v in feed["inputs"].items()}, "steps": b - a}
    if "targets" in feed:
        out["targets"] = {k: v[a:b] for k, v in feed["targets"].items()}
        out["reward"] = feed["reward"][a:b]
    return out


def run_both(ei, model, backend, batch, steps=STEPS, seed=None, record=None, split=None, learn=True):
    """Run the NumPy reference and ``backend`` on the same inputs, targets, reward and noise seed."""
    reference = model.compile(backend="numpy", batch=batch, seed=seed)
    sim = model.compile(backend=backend, batch=batch, seed=seed)
    record = record or ei.recordables(reference)
    feed = ei.feed(reference, steps, seed=batch)
    extra = {} if learn else {"learn": False}
    expected = reference.run(**feed, record=record, **extra)
    if split is None:
        got = sim.run(**feed, record=record, **extra)
    else:  # the backend runs in two calls
        first = sim.run(**part(feed, 0, split), record=record, **extra)
        second = sim.run(**part(feed, split, steps), record=record, **extra)
        got = {k: np.concatenate([first[k], second[k]]) for k in record}
    return reference, sim, expected, got


def assert_match(expected, got, dtype, exact=False):
    assert set(expected) == set(got)
    for name in expected:
        e, g = expected[name], got[name]
        assert e.shape == g.shape, name
        assert g.dtype == dtype, name
        assert np.isfinite(g).all(), name
        if exact:
            np.testing.assert_array_equal(g, e, err_msg=name)
        else:
            tol = TOLERANCE[np.dtype(dtype)]
            for t in range(e.shape[0]):  # step for step: report the first step that differs
                np.testing.assert_allclose(g[t], e[t], err_msg=f"{name} at step {t}", **tol)


# ----------------------------------------------------------------------------------------------
# Every backend matches the reference
# ----------------------------------------------------------------------------------------------

# The generated kernel fixes the batch size (``B`` is a constant), so each (model, batch) pair is a
# Numba compile of its own (5-35 s on CI). No generated code depends on the batch being 1 (the
# loops run over ``range(B)``), and only float32 batches that are a multiple of 8 take the SIMD
# sparse rows (tests/test_simd.py). So each model runs at one batch, the one the other tests
# compile it at, and one kernel per model serves them all: the example models at the batch of
# their run block (``run_batch``: 20, 16, 10, 8 and 1, the kernels ``eigraph run`` compiles in
# tests/test_run.py and test_learning.py), the custom models at BATCH (the batch of every other
# test in this file), and delays.ei (which the batch-1 tests here use) at batch 1 too.
BATCH = 2
MATCH_CASES = [pytest.param(name, None, id=name) for name in EXAMPLES] + [
    pytest.param(name, BATCH, id=f"{name}-{BATCH}") for name in CUSTOM] + [
    pytest.param("delays.ei", 1, id="delays.ei-1")]


@pytest.mark.parametrize("name, batch", MATCH_CASES)
def test_backend_matches_reference(ei, backend, name, batch):
    model = get_model(ei, name)
    batch = batch or run_batch(model)
    reference, sim, expected, got = run_both(ei, model, backend, batch)
    assert sim.n == reference.n == STEPS
    # the numpy backend against itself: a second run must agree bit for bit
    assert_match(expected, got, reference.program.dtype, exact=(backend == "numpy"))
    # the final state and weights too (plastic projections learned on the way)
    tol = TOLERANCE[np.dtype(reference.program.dtype)]
    for key, value in reference.state.items():
        np.testing.assert_allclose(sim.state[key], value, err_msg=key, **tol)
    for key in reference.weights:
        np.testing.assert_allclose(sim.weights[key], reference.weights[key], err_msg=key, **tol)


@pytest.mark.parametrize("name", EXAMPLES)
def test_backend_matches_reference_without_learning(ei, backend, name):
    """The dynamics alone (learn=False), so that a difference is easy to place."""
    model = get_model(ei, name)
    reference, sim, expected, got = run_both(ei, model, backend, run_batch(model), learn=False)
    assert_match(expected, got, reference.program.dtype, exact=(backend == "numpy"))
    for key in reference.weights:
        np.testing.assert_array_equal(sim.weights[key], reference.weights[key], err_msg=key)


def test_examples_are_all_covered():
    assert {"decision.ei", "ei_network.yaml", "eiann_digits.ei", "multiarea.ei", "ngc_forecast.ei",
            "oja_pca.ei", "vogels_balance.ei"} <= set(EXAMPLES)


def test_custom_models_cover_the_language(ei):
    """The custom models really hold what they claim (so the suite above tests it)."""
    models = [custom(ei, name) for name in CUSTOM]
    programs = [m.compile(backend="numpy").program for m in models]
    populations = [p for prog in programs for p in prog.populations.values()]
    projections = [q for prog in programs for q in prog.projections.values()]
    assert {p.activation for p in populations if p.role == "hidden"} == {
        "relu", "tanh", "sigmoid", "softplus", "linear", "clip01", "softmax"}
    assert any(p.compartment_gains for p in populations)
    assert any(p.compartments and not p.compartment_gains for p in populations)
    assert {q.delay for q in projections} >= {0, 1, 3}
    assert any(isinstance(p.bias, np.ndarray) for p in populations)
    assert any(p.noise for p in populations)
    assert {np.dtype(prog.dtype).name for prog in programs} == {"float32", "float64"}
    storage = {(q.weights.is_sparse, q.weights.mask is not None) for q in projections}
    assert storage == {(True, False), (False, True), (False, False)}  # CSR, masked dense, dense
    kinds = {edge["connectivity"]["kind"] for m in models for _, _, edge in m.graph.edges(data=True)}
    assert kinds == {"dense", "sparse", "fixed_in", "one_to_one", "mask", "weights"}
    rules = {q.rule.name for q in projections if getattr(q, "rule", None)}
    assert rules >= {"hebb", "oja", "bcm", "covariance", "vogels", "delta", "anti_hebb", "reward_hebb",
                     "dendritic_error"}
    assert {q.rule.timing for q in projections if getattr(q, "rule", None)} == {"step", "trial"}
    assert any(p.role == "readout" and p.sign for p in populations)  # a signed readout feeding back


@pytest.mark.parametrize("batch", [1, BATCH])
def test_backend_matches_reference_in_two_calls(ei, backend, batch):
    """Running 40 steps as 17 + 23 continues exactly (state, ring buffers, noise stream)."""
    model = custom(ei, "delays.ei")
    reference, sim, expected, got = run_both(ei, model, backend, batch, split=17)
    assert_match(expected, got, reference.program.dtype, exact=(backend == "numpy"))


def test_parallel_kernel_matches_reference(ei, backend, parallel_threshold):
    model = ei.load("big.ei", BIG)
    reference, sim, expected, got = run_both(ei, model, backend, BIG_BATCH, steps=30,
                                             record=["E.r", "E.x", "I.r", "I.x", "out.r", "out.x"])
    if backend == "numba":
        assert sim.backend.parallel, "the big model must exercise the parallel Numba kernel"
        # at batch 1 the same model stays serial (the generated source is what the backend
        # compiles; generating it is enough to see that, without compiling a second big kernel)
        assert "parallel=True" in sim.backend.source()
        assert "parallel=True" not in numba_gen.generate(sim.program, 1)[0]
    assert_match(expected, got, reference.program.dtype, exact=(backend == "numpy"))


@pytest.mark.parametrize("name", ["activations.ei", "compartments.ei", "connectivity.ei"])
def test_parallel_kernel_matches_reference_on_custom_models(ei, backend, name, parallel_threshold):
    """The small models with a batch so large that the parallel kernel runs (every activation,
    sparse rows, masks and compartments inside prange). plasticity.ei is left out: its parallel
    kernel takes ~45 s to compile cold; tests/test_learning_backends.py covers parallel rule updates."""
    model = custom(ei, name)
    largest = max(p.size for p in model.compile(backend="numpy").program.populations.values())
    batch = -(-PARALLEL_MIN_ELEMENTS // largest)
    reference, sim, expected, got = run_both(ei, model, backend, batch, steps=15)
    if backend == "numba":
        assert sim.backend.parallel
    assert_match(expected, got, reference.program.dtype, exact=(backend == "numpy"))
    for key in reference.weights:
        np.testing.assert_allclose(sim.weights[key], reference.weights[key], err_msg=key,
                                   **TOLERANCE[np.dtype(reference.program.dtype)])


def test_seed_argument_changes_noise_only(ei, backend):
    model = custom(ei, "activations.ei")
    a = model.compile(backend=backend, batch=2, seed=1)
    b = model.compile(backend=backend, batch=2, seed=2)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
    inputs = ei.inputs(a, 10)
    ra, rb = a.run(inputs, record=["Relu.x", "Tanh.x"]), b.run(inputs, record=["Relu.x", "Tanh.x"])
    assert not np.array_equal(ra["Relu.x"], rb["Relu.x"])  # noisy
    np.testing.assert_array_equal(ra["Tanh.x"][:1], rb["Tanh.x"][:1])  # noiseless, before noise reaches it


def test_reset_restarts_the_noise_stream_and_leaves_a_callers_generator_alone(ei):
    model = custom(ei, "activations.ei")
    sim = model.compile(backend="numpy", batch=2)
    inputs = ei.inputs(sim, 6)
    first = sim.run(inputs, record=["Relu.x"])["Relu.x"]
    sim.reset()
    np.testing.assert_array_equal(sim.run(inputs, record=["Relu.x"])["Relu.x"], first)  # the stream restarts
    sim.seed = 5
    sim.reset()
    assert not np.array_equal(sim.run(inputs, record=["Relu.x"])["Relu.x"], first)  # a new seed, a new stream
    mine = np.random.default_rng(123)
    state = mine.bit_generator.state
    sim.noise_rng = mine
    sim.reset()
    assert sim.noise_rng is not mine and mine.bit_generator.state == state  # replaced, not rewound


# ----------------------------------------------------------------------------------------------
# Determinism: the same model, seed and backend give the same numbers on every run
# ----------------------------------------------------------------------------------------------

def test_same_model_seed_backend_same_numbers(ei, backend):
    model = custom(ei, "activations.ei")
    runs = []
    for _ in range(2):
        sim = model.compile(backend=backend, batch=2)
        runs.append(sim.run(ei.inputs(sim, 25, seed=3), record=ei.recordables(sim)))
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)
    # reset restarts the noise stream: the same numbers again
    sim.reset()
    again = sim.run(ei.inputs(sim, 25, seed=3), record=ei.recordables(sim))
    for key in runs[0]:
        np.testing.assert_array_equal(again[key], runs[0][key], err_msg=key)


def test_split_runs_equal_one_run(ei, backend):
    """One run of 30 steps equals runs of 1, 11, 0 and 18 steps (two noisy populations)."""
    model = custom(ei, "compartments.ei")
    one = model.compile(backend=backend, batch=2)
    inputs = ei.inputs(one, 30, seed=4)
    whole = one.run(inputs, record=ei.recordables(one))
    parts = model.compile(backend=backend, batch=2)
    pieces = [parts.run({k: v[a:b] for k, v in inputs.items()}, record=ei.recordables(parts))
              for a, b in [(0, 1), (1, 12), (12, 12), (12, 30)]]
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([p[key] for p in pieces]), whole[key], err_msg=key)


def test_noise_chunks_do_not_change_the_run(ei, backend, monkeypatch):
    """Noise is drawn in chunks of steps; the chunk size must not change the numbers."""
    model = custom(ei, "activations.ei")
    whole = model.compile(backend=backend, batch=2)
    inputs = ei.inputs(whole, 30, seed=5)
    expected = whole.run(inputs, record=ei.recordables(whole))
    chunked = model.compile(backend=backend, batch=2)
    noisy = sum(p.size for p in chunked.program.populations.values() if p.noise and p.role != "input")
    monkeypatch.setattr(simulator_module, "NOISE_CHUNK_BYTES", noisy * 2 * 4 * 7)  # 7 steps a chunk
    got = chunked.run(inputs, record=ei.recordables(chunked))
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_every_does_not_change_the_run(ei, backend):
    """Taking weight snapshots every few steps is an observation: it must not change the run."""
    model = custom(ei, "activations.ei")
    plain = model.compile(backend=backend, batch=2)
    inputs = ei.inputs(plain, 12, seed=5)
    expected = plain.run(inputs, record=["Relu.x", "Smax.r"])
    observed = model.compile(backend=backend, batch=2)
    got = observed.run(inputs, record=["Relu.x", "Smax.r", "Relu->Sig.w"], every=4)
    assert got["Relu->Sig.w"].shape[0] == 3
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_inputs_without_batch_axis_for_batch_1(ei, backend):
    model = custom(ei, "delays.ei")
    sim_a, sim_b = model.compile(backend=backend), model.compile(backend=backend)
    x = np.random.default_rng(0).random((12, 3))
    a = sim_a.run(x)
    b = sim_b.run(x[:, None, :])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].shape[:2] == (12, 1)


def test_steps_without_inputs_means_zero_input(ei, backend):
    model = custom(ei, "delays.ei")
    a, b = model.compile(backend=backend, batch=2), model.compile(backend=backend, batch=2)
    ra = a.run(steps=10)
    rb = b.run({"inp": np.zeros((10, 2, 3))})
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key])


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["activations.ei", "connectivity.ei", "delays.ei", "plasticity.ei"])
def test_save_load_round_trip(ei, backend, name, tmp_path):
    """run, save, run more; load (into a fresh simulator and into the same one), run more again:
    identical outputs, noise, learned weights and rule traces included."""
    model = custom(ei, name)
    sim = model.compile(backend=backend, batch=2)
    first = ei.feed(sim, 13, seed=6)  # inputs (and targets and reward for the plastic model)
    more = ei.feed(sim, 17, seed=7)
    sim.run(**first)
    sim.weights[next(iter(sim.weights))] = sim.weights[next(iter(sim.weights))] * 0.5  # a changed weight
    path = tmp_path / "state.npz"
    sim.save(path)
    record = ei.recordables(sim)
    after = sim.run(**more, record=record)
    state_after = sim.state

    fresh = model.compile(backend=backend, batch=2)
    fresh.load(path)
    assert fresh.n == 13
    again = fresh.run(**more, record=record)
    sim.load(path)
    assert sim.n == 13
    third = sim.run(**more, record=record)
    for key in after:
        np.testing.assert_array_equal(again[key], after[key], err_msg=key)
        np.testing.assert_array_equal(third[key], after[key], err_msg=key)
    for key, value in state_after.items():
        np.testing.assert_array_equal(fresh.state[key], value, err_msg=key)
    for w in sim.weights:
        np.testing.assert_array_equal(fresh.weights[w], sim.weights[w])


def test_save_on_one_backend_load_on_another(ei, tmp_path):
    model = custom(ei, "activations.ei")
    a = model.compile(backend="numpy", batch=2)
    a.run(ei.inputs(a, 9, seed=8))
    a.save(tmp_path / "s.npz")
    more = ei.inputs(a, 11, seed=9)
    expected = a.run(more, record=ei.recordables(a))
    b = model.compile(backend="numba", batch=2)
    b.load(tmp_path / "s.npz")
    got = b.run(more, record=ei.recordables(b))
    assert_match(expected, got, a.program.dtype)


def test_load_into_a_different_model_raises(ei, backend, tmp_path):
    a = custom(ei, "activations.ei").compile(backend=backend, batch=2)
    a.run(steps=3)
    a.save(tmp_path / "s.npz")
    other = custom(ei, "delays.ei").compile(backend=backend, batch=2)
    with pytest.raises(InputError, match="different model"):
        other.load(tmp_path / "s.npz")
    assert other.n == 0
    # the batch is checked by Simulator.load before any backend sees the file: a NumPy simulator
    # of another batch proves it (a Numba one would be one more compile of activations.ei)
    other_batch = custom(ei, "activations.ei").compile(backend="numpy", batch=3)
    with pytest.raises(InputError, match="batch"):
        other_batch.load(tmp_path / "s.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="not an eigraph"):
        a.load(tmp_path / "plain.npz")


def test_load_into_model_with_other_seed_raises(ei, backend, tmp_path):
    """Another network seed gives other weights and another noise: a different model."""
    a = ei.load("seeded1.ei", SEEDED.replace("SEED", "1")).compile(backend=backend)
    a.save(tmp_path / "s.npz")
    b = ei.load("seeded2.ei", SEEDED.replace("SEED", "2")).compile(backend=backend)
    with pytest.raises(InputError):
        b.load(tmp_path / "s.npz")


SEEDED = """\
network seeded { dt = 1 ms; seed = SEED }
population inp : input(3)
population E : E(5) { noise = 0.1 }
inp -> E : sparse(p = 0.5)
E -> E : dense
"""


def test_reset_weights_restores_initial_weights(ei, backend):
    model = custom(ei, "connectivity.ei")
    sim = model.compile(backend=backend, batch=2)
    initial = {k: sim.weights[k] for k in sim.weights}
    inputs = ei.inputs(sim, 10, seed=10)
    first = sim.run(inputs)
    sim.weights["E->I"] = sim.weights["E->I"] * 3
    sim.reset()
    np.testing.assert_array_equal(sim.weights["E->I"], initial["E->I"] * np.float32(3))
    changed = sim.run(inputs)
    assert not np.array_equal(changed["I.r"], first["I.r"])
    sim.reset(weights=True)
    for k in initial:
        np.testing.assert_array_equal(sim.weights[k], initial[k])
    restored = sim.run(inputs)
    for k in first:
        np.testing.assert_array_equal(restored[k], first[k])


def test_kernel_source_does_not_depend_on_the_model_path(tmp_path):
    from eigraph.backends.numba_gen import generate

    text = (ROOT_MODELS / "ngc_forecast.ei").read_text()
    programs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ngc_forecast.ei").write_text(text)
        programs.append(eigraph.load(tmp_path / folder / "ngc_forecast.ei").compile(backend="numpy").program)
    assert programs[0].content_hash == programs[1].content_hash
    assert generate(programs[0], 4)[0] == generate(programs[1], 4)[0]
