"""Selection of the most active fraction of a population and seeded random draws in rules (issue 11).

- ``top_fraction(x, f)``: 1 where x > 0 and among the ceil(f * N) largest of the post population
  in that batch element (ties: the lower index first), else 0; by hand with ties, f = 0, f = 1,
  negative values (``top_fraction(-x, f)``) and two batch elements;
- ``bernoulli(p)`` / ``uniform()``: per post neuron, batch element and step; the mean is p (p
  clipped to [0, 1]); the same seed gives the same draws, another projection or seed others; a
  run cut into calls, a checkpoint and resume, and runs that do not learn leave the stream as it was;
- Numba agrees with the NumPy reference step by step on a model using both, with selections in
  a trace, a temporary, a factorised and a per-synapse ``dw``, over values with many ties;
- validate: R611 (an argument that reads pre or w), R612 (the fraction), R613 (outside a rule's
  equations), N111 (arguments), U511 (units), each at its file, line and column, with a hint.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import validate_finding

import eigraph
from eigraph.compile.rules import select_top


def _load(tmp_path: Path, text: str, name: str = "m.ei"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return eigraph.load(path)


# top_fraction by hand ------------------------------------------------------------------------------
SELECT = """\
network s { seed = 1; precision = float64 }
celltype Lin : excitatory { tau = 1 steps; activation = linear }
population x : input(5)
population one : input(1)
population H : Lin(5)
rule pick(f = 1) {
    dw = top_fraction(post, f) * pre
}
rule pick_negative(f = 1) {
    dw = top_fraction(-post, f) * pre
}
x -> H : one_to_one, init = constant(1)
one -> H : dense, init = constant(0), learn = pick(f = 0), name = "f0"
one -> H : dense, init = constant(0), learn = pick(f = 0.4), name = "f04"
one -> H : dense, init = constant(0), learn = pick(f = 1), name = "f1"
one -> H : dense, init = constant(0), learn = pick_negative(f = 0.4), name = "neg"
one -> H : dense, init = constant(0), learn = pick(f = 0.9), name = "f09"
"""


def test_top_fraction_by_hand(tmp_path):
    """One step: post = x. The weight change is the batch mean of selection x pre, with pre = 1 in
    the first batch element and 10 in the second, so w = (s0 + 10 s1) / 2 shows both selections.
    (Numba: test_numba_agrees_with_the_reference_step_by_step, ties included.)"""
    model = _load(tmp_path, SELECT)
    sim = model.compile(backend="numpy", batch=2)
    x = np.array([[[0.9, 0.3, 0.9, 0.9, -0.5], [-0.7, -0.7, -0.2, -0.7, 0.1]]])  # (step, batch, neuron)
    sim.run({"x": x, "one": np.array([[[1.0], [10.0]]])})
    np.testing.assert_allclose(sim.read("H.r").T, x[0])

    def w(s0, s1):
        return (np.array(s0, float) + 10 * np.array(s1, float)) / 2

    # f = 0: ceil(0) = 0 neurons
    np.testing.assert_array_equal(sim.weights["f0"][:, 0], w([0] * 5, [0] * 5))
    # f = 0.4: ceil(2.0) = 2. Sample 0: 0.9 at 0, 2 and 3 tie, the lower indices 0 and 2 win;
    # sample 1: the 2 largest are 0.1 (index 4) and -0.2 (index 2), only 0.1 is > 0
    np.testing.assert_array_equal(sim.weights["f04"][:, 0], w([1, 0, 1, 0, 0], [0, 0, 0, 0, 1]))
    # f = 1: every neuron above 0
    np.testing.assert_array_equal(sim.weights["f1"][:, 0], w([1, 1, 1, 1, 0], [0, 0, 0, 0, 1]))
    # the most negative: top_fraction(-post, 0.4). Sample 0: only -0.5 (index 4) is below 0;
    # sample 1: -0.7 at 0, 1 and 3 tie: indices 0 and 1
    np.testing.assert_array_equal(sim.weights["neg"][:, 0], w([0, 0, 0, 0, 1], [1, 1, 0, 0, 0]))
    # f = 0.9: ceil(4.5) = 5 of 5, as f = 1
    np.testing.assert_array_equal(sim.weights["f09"][:, 0], sim.weights["f1"][:, 0])


def test_select_top_reference():
    """The reference selection on its own: a column per batch element, ties by lower index."""
    values = np.array([[3.0, 0.0], [1.0, -1.0], [3.0, -1.0], [2.0, 0.5]])
    np.testing.assert_array_equal(select_top(values, 2), [[1, 0], [0, 0], [1, 0], [0, 1]])
    np.testing.assert_array_equal(select_top(values, 3), [[1, 0], [0, 0], [1, 0], [1, 1]])
    np.testing.assert_array_equal(select_top(values, 0), np.zeros((4, 2)))
    np.testing.assert_array_equal(select_top(values, 4), values > 0)
    np.testing.assert_array_equal(select_top(-values, 1), [[0, 0], [0, 1], [0, 0], [0, 0]])


# draws --------------------------------------------------------------------------------------------
DRAWS = """\
network d { seed = 5; precision = float64 }
celltype Lin : excitatory { tau = 1 steps; activation = linear }
population x : input(6)
population one : input(1)
population H : Lin(6)
rule coin(eta = 1) {
    dw = eta * bernoulli(post)
}
rule dice(eta = 1) {
    dw = eta * uniform()
}
x -> H : one_to_one, init = constant(1)
one -> H : dense, init = constant(0), learn = coin(), name = "coin"
one -> H : dense, init = constant(0), learn = coin(), name = "coin2"
one -> H : dense, init = constant(0), learn = dice(), name = "dice"
"""
P = np.array([-0.5, 0.0, 0.2, 0.5, 1.0, 1.5])  # clipped to [0, 0, 0.2, 0.5, 1, 1]


def _drive(steps: int, batch: int) -> dict:
    # one = 0: the learned weights deliver nothing, so post = x = P at every step
    return {"x": np.broadcast_to(P, (steps, batch, 6)).copy(), "one": np.zeros((steps, batch, 1))}


def test_bernoulli_and_uniform_statistics(tmp_path):
    model = _load(tmp_path, DRAWS)
    sim = model.compile(backend="numpy", batch=8)
    steps = 250  # 2000 draws per neuron: the standard error of a mean is at most 0.011
    sim.run(_drive(steps, 8))
    mean = sim.weights["coin"][:, 0] / steps
    assert mean[0] == 0 and mean[1] == 0  # p <= 0 never
    assert mean[4] == 1 and mean[5] == 1  # p >= 1 always
    np.testing.assert_allclose(mean[2:4], [0.2, 0.5], atol=0.045)
    np.testing.assert_allclose(sim.weights["dice"][:, 0] / steps, 0.5, atol=0.03)  # uniform in [0, 1)
    # one step, batch 1: each weight is one draw
    one = model.compile(backend="numpy", batch=1)
    one.run(_drive(1, 1))
    u = one.weights["dice"][:, 0]
    assert ((u >= 0) & (u < 1)).all() and len(set(u)) == 6


def test_draws_are_seeded_and_reproducible(tmp_path, tmp_path_factory):
    model = _load(tmp_path, DRAWS)
    drive = _drive(10, 2)
    a = model.compile(backend="numpy", batch=2)
    a.run(drive)
    first = {name: a.weights[name] for name in ("coin", "coin2", "dice")}
    b = model.compile(backend="numpy", batch=2)  # the same seed: the same draws
    b.run(drive)
    for name, value in first.items():
        np.testing.assert_array_equal(b.weights[name], value)
    assert not np.array_equal(first["coin"], first["coin2"])  # the same rule, another projection
    a.reset(weights=True)  # the streams restart
    a.run(drive)
    np.testing.assert_array_equal(a.weights["coin"], first["coin"])
    other = model.compile(backend="numpy", batch=2, seed=6)
    other.run(drive)
    assert not np.array_equal(other.weights["dice"], first["dice"])
    # cut into calls, with a run that does not learn between them and a checkpoint: the same numbers
    cut = model.compile(backend="numpy", batch=2)
    cut.run({k: v[:4] for k, v in drive.items()})
    cut.run({k: v[:3] for k, v in drive.items()}, learn=False)  # draws none
    path = tmp_path_factory.mktemp("ckpt") / "state.npz"
    cut.save(path)
    cut.run({k: v[4:] for k, v in drive.items()})
    np.testing.assert_array_equal(cut.weights["dice"], first["dice"])
    resumed = model.compile(backend="numpy", batch=2)
    resumed.load(path)
    resumed.run({k: v[4:] for k, v in drive.items()})
    np.testing.assert_array_equal(resumed.weights["dice"], first["dice"])
    np.testing.assert_array_equal(resumed.weights["coin"], first["coin"])


# Numba against the reference ------------------------------------------------------------------------
BOTH = """\
network both { seed = 7; precision = float64; dt = 1 ms }
celltype Pyr : excitatory { tau = 2 steps; activation = relu; compartments = [apical] }
population x : input(4)
population a : input(6)
population H : Pyr(6)
rule mixed(eta = 0.05, f = 0.5, tau = 3 ms) {
    h' = (top_fraction(post.apical, f) - h) / tau
    s = top_fraction(bernoulli(post) + h, f) + top_fraction(-post.apical, 0.25)
    dw = eta * (s * pre - uniform() * w)
}
rule synaptic(eta = 0.05) {
    z = bernoulli(clip(post, 0, 1)) * w
    dw = eta * top_fraction(post - mean(post), 0.34) * (pre - post)^2 - eta * z * uniform()
}
x -> H : dense, init = uniform(0, 0.6), learn = mixed()
a -> H.apical : one_to_one, init = constant(1)
x -> H : sparse(p = 0.6), init = uniform(0, 0.4), learn = synaptic(), name = "syn"
"""


def test_numba_agrees_with_the_reference_step_by_step(tmp_path):
    model = _load(tmp_path, BOTH)
    rng = np.random.default_rng(3)
    steps, batch = 5, 3
    x = rng.uniform(0, 1.5, (steps, batch, 4))
    a = rng.integers(-2, 3, (steps, batch, 6)) / 2  # apical inputs of -1 to 1 in halves: many ties
    sims = {backend: model.compile(backend=backend, batch=batch) for backend in ("numpy", "numba")}
    assert not sims["numba"].program.projections["syn"].rule.analysis.factorised  # per synapse
    assert sims["numba"].program.projections["x->H"].rule.analysis.factorised
    for t in range(steps):
        for sim in sims.values():
            sim.run({"x": x[t:t + 1], "a": a[t:t + 1]})
        for name in ("x->H", "syn"):
            np.testing.assert_allclose(sims["numba"].weights[name], sims["numpy"].weights[name], atol=1e-12,
                                       err_msg=f"{name} at step {t}")
        np.testing.assert_allclose(sims["numba"].traces["x->H:h"], sims["numpy"].traces["x->H:h"], atol=1e-12)
    assert np.abs(sims["numpy"].weights["syn"] - model.compile(backend="numpy", batch=batch).weights["syn"]).max() > 0


# validate -----------------------------------------------------------------------------------------
CHECKED = """\
network v { seed = 1; dt = 1 ms }
celltype Pyr : excitatory { compartments = [apical] }
population x : input(4)
population H : Pyr(6)
rule r(eta = 0.1, f = 0.5) {
    s = top_fraction(post, f)
    dw = eta * s * pre
}
x -> H : dense, learn = r()
"""


@pytest.mark.parametrize("change, code, where", [
    (("top_fraction(post, f)", "top_fraction(pre, f)"), "R611", (6, 22)),
    (("top_fraction(post, f)", "top_fraction(post * w, f)"), "R611", (6, 22)),
    (("    s = top_fraction(post, f)", "    e = pre * post\n    s = top_fraction(e, f)"), "R611", (7, 22)),
    (("top_fraction(post, f)", "bernoulli(pre)"), "R611", (6, 19)),
    (("top_fraction(post, f)", "top_fraction(post, 1.5)"), "R612", (6, 28)),
    (("top_fraction(post, f)", "top_fraction(post, post)"), "R612", (6, 28)),
    (("learn = r()", "learn = r(f = 2)"), "R612", (9, 25)),
    (("rule r(eta = 0.1, f = 0.5) {", "rule r(eta = 0.1, f = 0.5) {\n    m' = -m / 10 ms\n    m(0) = bernoulli(0.5)"),
     "R613", (7, 12)),
    (("population H : Pyr(6)", "population H : Pyr(6, bias = top_fraction(1, 1))"), "R613", (4, 30)),
    (("top_fraction(post, f)", "top_fraction(post)"), "N111", (6, 9)),
    (("top_fraction(post, f)", "uniform(0, 1)"), "N111", (6, 9)),
    (("top_fraction(post, f)", "bernoulli(post, 0.5)"), "N111", (6, 9)),
    (("top_fraction(post, f)", "bernoulli(10 ms)"), "U511", (6, 19)),
    (("top_fraction(post, f)", "top_fraction(post, f) * bernoulli(post) + uniform()"), None, None),
])
def test_findings(tmp_path, capsys, change, code, where):
    text = CHECKED.replace(*change)
    assert text != CHECKED
    validate_finding(tmp_path, capsys, text, code, where)
