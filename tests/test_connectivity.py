"""Connectivity and initial weights: realised statistics (sparse density within 3 sigma of p,
fixed_in exact, no autapses unless asked), the braintools E/I pattern of models/ei_network.yaml,
seeded reproducibility (across compiles and backends; another seed gives other weights) and the
network's spectral radius.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES, run_batch
from test_runtime_backends import CUSTOM, custom

from eigraph.compile.lower import effective_recurrent_matrix, spectral_radius

STATS = """\
network stats { dt = 1 ms; seed = SEED; precision = float32 }

population ext : input(150)
population E   : E(400)
population I   : I(100)

ext -> E : sparse(p = 0.05), init = uniform(0.5, 1)
E   -> E : sparse(p = 0.1), init = uniform(0.5, 1)
E   -> I : fixed_in(k = 37), init = uniform(0.5, 1)
I   -> E : fixed_in(k = 99), init = uniform(0.5, 1)
I   -> I : fixed_in(k = 99), init = uniform(0.5, 1)
E   -> E : dense, init = uniform(0.5, 1), name = "E_dense"
I   -> I : dense, init = uniform(0.5, 1), autapses = true, name = "I_dense_auto"
E   -> E : sparse(p = 0.3), init = uniform(0.5, 1), autapses = true, name = "E_sparse_auto"
E   -> E : sparse(p = 1), init = uniform(0.5, 1), name = "E_full"
I   -> I : sparse(p = 1), init = uniform(0.5, 1), autapses = true, name = "I_full_auto"
I   -> I : fixed_in(k = 100), init = uniform(0.5, 1), autapses = true, name = "I_fixed_auto"
I   -> I : one_to_one, init = uniform(0.5, 1), name = "I_one"
"""


@pytest.fixture(scope="module")
def stats(ei):
    return ei.load("stats.ei", STATS.replace("SEED", "5")).compile(backend="numpy")


def structure(sim, name) -> np.ndarray:
    """Where the projection has synapses (post x pre, bool), from its storage."""
    w = sim.weights.stored(name)
    present = np.zeros(w.shape, dtype=bool)
    if w.is_sparse:
        rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        present[rows, w.indices] = True
        assert len(set(zip(rows.tolist(), w.indices.tolist()))) == w.nnz, f"{name}: duplicate synapses"
    elif w.mask is not None:
        present = w.mask.copy()
    else:
        present[...] = True
    return present


def within_3_sigma(count: int, trials: int, p: float) -> bool:
    return abs(count - trials * p) <= 3 * np.sqrt(trials * p * (1 - p))


@pytest.mark.parametrize("name, p, self_projection", [("ext->E", 0.05, False), ("E->E", 0.1, True)])
def test_sparse_density_within_3_sigma(stats, name, p, self_projection):
    present = structure(stats, name)
    n_post, n_pre = present.shape
    pairs = n_post * (n_pre - 1) if self_projection else n_post * n_pre
    assert within_3_sigma(int(present.sum()), pairs, p), (present.sum(), pairs * p)
    # the weights are exactly the synapses (init > 0 everywhere)
    assert ((stats.weights[name] > 0) == present).all()


def test_sparse_density_over_seeds(ei):
    """Over 20 seeds the realised densities scatter like Binomial(pairs, p): mean within 3 sigma
    of p over all seeds, and every seed within 4 sigma."""
    counts = []
    for seed in range(20):
        sim = ei.load(f"stats_{seed}.ei", STATS.replace("SEED", str(seed + 100))).compile(backend="numpy")
        counts.append(int(structure(sim, "E->E").sum()))
    pairs = 400 * 399
    assert within_3_sigma(sum(counts), 20 * pairs, 0.1)
    sigma = np.sqrt(pairs * 0.1 * 0.9)
    assert all(abs(c - pairs * 0.1) < 4 * sigma for c in counts)
    assert len(set(counts)) > 1


@pytest.mark.parametrize("name, k", [("E->I", 37), ("I->E", 99), ("I->I", 99), ("I_fixed_auto", 100)])
def test_fixed_in_is_exact(stats, name, k):
    present = structure(stats, name)
    assert (present.sum(axis=1) == k).all()
    assert ((stats.weights[name] > 0).sum(axis=1) == k).all()


@pytest.mark.parametrize("name", ["E->E", "I->I", "E_dense", "E_full"])
def test_no_autapses_unless_asked(stats, name):
    present = structure(stats, name)
    assert not np.diag(present).any()
    assert (np.diag(stats.weights[name]) == 0).all()


def test_full_connectivity_without_autapses(stats):
    off_diagonal = ~np.eye(400, dtype=bool)
    np.testing.assert_array_equal(structure(stats, "E_dense"), off_diagonal)
    np.testing.assert_array_equal(structure(stats, "E_full"), off_diagonal)
    np.testing.assert_array_equal(structure(stats, "I->I"), ~np.eye(100, dtype=bool))  # k = N - 1


@pytest.mark.parametrize("name", ["I_dense_auto", "I_full_auto", "I_fixed_auto"])
def test_autapses_when_asked(stats, name):
    assert structure(stats, name).all()
    assert (stats.weights[name] > 0).all()


def test_autapses_sparse_density(stats):
    present = structure(stats, "E_sparse_auto")
    assert within_3_sigma(int(present.sum()), 400 * 400, 0.3)
    assert np.diag(present).any()  # self-synapses occur, with probability p like any other
    assert within_3_sigma(int(np.diag(present).sum()), 400, 0.3)


def test_one_to_one(stats):
    np.testing.assert_array_equal(structure(stats, "I_one"), np.eye(100, dtype=bool))


def test_mask_and_weights_files(ei):
    """mask(file): synapses exactly where the mask is set; weights(file): exactly the file's values."""
    model = custom(ei, "connectivity.ei")
    sim = model.compile(backend="numpy")
    arrays = CUSTOM["connectivity.ei"][1]()
    for name, file in [("inp->E", "mask_sparse.npy"), ("I->E", "mask_dense.npy")]:
        np.testing.assert_array_equal(structure(sim, name), arrays[file], err_msg=name)
        assert ((sim.weights[name] > 0) == arrays[file]).all()
    for name, file in [("inp->I", "w_in.npy"), ("E->out", "w_out.npy")]:
        np.testing.assert_array_equal(sim.weights[name], arrays[file].astype(np.float32), err_msg=name)
    # storage: a sparse mask as CSR, a dense one as a masked dense matrix
    assert sim.weights.stored("inp->E").is_sparse
    assert not sim.weights.stored("I->E").is_sparse and sim.weights.stored("I->E").mask is not None


# ----------------------------------------------------------------------------------------------
# braintools' ExcitatoryInhibitory pattern (models/ei_network.yaml)
# ----------------------------------------------------------------------------------------------

BRAINTOOLS = {  # projection: (probability, magnitude, delay in steps, sign)
    "ext->E": (0.1, 0.1, 0, 1), "ext->I": (0.1, 0.1, 0, 1),
    "E->E": (0.1, 0.01, 3, 1), "E->I": (0.1, 0.01, 3, 1),
    "I->E": (0.2, 0.008, 2, -1), "I->I": (0.2, 0.008, 2, -1),
}


@pytest.mark.parametrize("name", list(BRAINTOOLS))
def test_braintools_pattern(ei, name):
    sim = ei.example("ei_network.yaml").compile(backend="numpy")
    p, magnitude, delay, sign = BRAINTOOLS[name]
    plan = sim.program.projections[name]
    assert (plan.delay, plan.sign, plan.factor) == (delay, sign, sign)
    present = structure(sim, name)
    n_post, n_pre = present.shape
    self_projection = plan.source == plan.target
    pairs = n_post * (n_pre - 1) if self_projection else n_post * n_pre
    # the realised probability, overall and per target neuron (Binomial counts per row)
    assert within_3_sigma(int(present.sum()), pairs, p)
    per_row = present.sum(axis=1)
    pool = n_pre - 1 if self_projection else n_pre
    assert per_row.var() == pytest.approx(pool * p * (1 - p), rel=0.3)
    if self_projection:
        assert not np.diag(present).any()
    # every synapse has the braintools magnitude; the sign comes from the cell type
    np.testing.assert_allclose(sim.weights[name][present], magnitude, rtol=1e-6)
    assert (sim.weights[name][~present] == 0).all()
    # the realised in-degree is what braintools' sampling gives: p * pool on average
    assert per_row.mean() == pytest.approx(p * pool, rel=3 * np.sqrt((1 - p) / (p * pool * n_post)) + 1e-9)


# ----------------------------------------------------------------------------------------------
# Reproducibility
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLES + ["connectivity.ei", "activations.ei"])
def test_same_seed_same_weights_on_every_backend_and_compile(ei, name):
    model = custom(ei, name) if name in CUSTOM else ei.example(name)
    a = model.compile(backend="numpy")
    b = model.compile(backend="numpy", batch=3, seed=99)  # the noise seed does not touch the weights
    # the batch the other tests compile this model at (one Numba compile per model and batch)
    c = model.compile(backend="numba", batch=2 if name in CUSTOM else run_batch(model))
    assert list(a.weights) == list(b.weights) == list(c.weights)
    for key in a.weights:
        np.testing.assert_array_equal(b.weights[key], a.weights[key], err_msg=key)
        np.testing.assert_array_equal(c.weights[key], a.weights[key], err_msg=key)
    for p in a.program.populations.values():  # biases drawn from distributions too
        np.testing.assert_array_equal(c.program.populations[p.name].bias, p.bias)


def test_other_seed_other_weights(ei):
    one = ei.load("stats.ei", STATS.replace("SEED", "5")).compile(backend="numpy")
    other = ei.load("stats_other.ei", STATS.replace("SEED", "6")).compile(backend="numpy")
    fixed_structure = {"I_one", "I_dense_auto", "I_full_auto", "I_fixed_auto", "E_dense", "E_full", "I->I"}
    for key in one.weights:
        if key not in fixed_structure:  # random structure: other synapses
            assert not np.array_equal(structure(one, key), structure(other, key)), key
        assert not np.array_equal(one.weights[key], other.weights[key]), key


def test_adding_a_projection_keeps_the_others(ei):
    """Each projection draws from its own stream (seed, name)."""
    base = ei.load("stats.ei", STATS.replace("SEED", "5")).compile(backend="numpy")
    extended = ei.load("stats_plus.ei", STATS.replace("SEED", "5") + "E -> I : dense, name = \"extra\"\n")
    extended = extended.compile(backend="numpy")
    for key in base.weights:
        np.testing.assert_array_equal(extended.weights[key], base.weights[key], err_msg=key)


# ----------------------------------------------------------------------------------------------
# Spectral radius
# ----------------------------------------------------------------------------------------------

RADIUS = """\
network radius { dt = 1 ms; seed = 21; precision = PRECISION RADIUS }

population inp : input(5)
population E   : E(60)
population I   : I(15) { activation = tanh }
population out : readout(2)

inp -> E   : dense
inp -> I   : sparse(p = 0.5)
E   -> E   : sparse(p = 0.2), init = gamma(2, 0.05)
E   -> I   : dense, init = uniform(0, 0.1), gain = 2
I   -> E   : fixed_in(k = 5), init = halfnormal(0.3)
I   -> I   : dense, init = lognormal(-3, 0.5), autapses = true, delay = 3 steps
E   -> out : dense
"""


def effective_matrix(sim) -> np.ndarray:
    """sign * gain * W over the hidden populations, from the public weights."""
    hidden = [n for n, p in sim.program.populations.items() if p.role == "hidden"]
    offsets = np.cumsum([0] + [sim.program.populations[n].size for n in hidden])
    where = {n: slice(offsets[i], offsets[i + 1]) for i, n in enumerate(hidden)}
    matrix = np.zeros((offsets[-1], offsets[-1]))
    for name, q in sim.program.projections.items():
        if q.source in where and q.target in where:
            matrix[where[q.target], where[q.source]] += q.factor * sim.weights[name].astype(np.float64)
    return matrix


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_spectral_radius_is_achieved(ei, precision):
    text = RADIUS.replace("PRECISION", precision)
    plain = ei.load(f"radius_plain_{precision}.ei", text.replace("RADIUS", "")).compile(backend="numpy")
    scaled = ei.load(f"radius_{precision}.ei", text.replace("RADIUS", "; spectral_radius = 1.3"))
    scaled = scaled.compile(backend="numpy")
    assert spectral_radius(scaled.program) == pytest.approx(1.3, rel=1e-6)
    radius = np.abs(np.linalg.eigvals(effective_matrix(scaled))).max()
    assert radius == pytest.approx(1.3, rel=1e-6)
    matrix, _ = effective_recurrent_matrix(scaled.program)
    np.testing.assert_allclose(matrix, effective_matrix(scaled), rtol=1e-12)
    # only the recurrent projections among hidden populations are rescaled, all by one factor
    factor = 1.3 / np.abs(np.linalg.eigvals(effective_matrix(plain))).max()
    rtol = 1e-12 if precision == "float64" else 1e-6
    for name, q in scaled.program.projections.items():
        recurrent = q.source in ("E", "I") and q.target in ("E", "I")
        expected = plain.weights[name] * (factor if recurrent else 1)
        np.testing.assert_allclose(scaled.weights[name], expected, rtol=rtol, err_msg=name)


def test_spectral_radius_of_the_decision_model(ei):
    # the kernel test_same_seed_same_weights_on_every_backend_and_compile compiled
    model = ei.example("decision.ei")
    sim = model.compile(backend="numba", batch=run_batch(model))
    assert np.abs(np.linalg.eigvals(effective_matrix(sim))).max() == pytest.approx(1.5, rel=1e-6)
