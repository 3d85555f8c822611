"""Learning rules: what they learn, what one step of a rule means, the constraints after every
update, and the errors around them.

- Science: Oja finds the first principal component; a BCM neuron becomes selective to one of
  two orthogonal patterns; Vogels' inhibitory plasticity brings models/vogels_balance.ei to its
  target rate from above and from below; the delta rule finds the least-squares solution.
- Semantics: a small model is simulated by hand, here, from the documented rule semantics
  (docs/runtime.md "Learning rules": ``pre`` = r_src[n + 1 - delay], ``post`` = r[n + 1],
  statements in written order, traces Euler-integrated with dt, ``: shared`` traces and ``dw``
  averaged over the batch, then the Dale clip), and both backends must match it.
- Constraints: after every step, magnitudes from signed sources are >= 0, bounds hold and rows
  are normalised, under rules that push the weights out of range.
- Errors: ``eigraph validate`` places rule errors inside the rule body; a rule that produces
  NaN stops the run naming the rule, projection and step; a rule that reads ``target`` without
  targets raises InputError; ``learn=False``; weights recorded every K steps.

Backend equality for every rule is in test_learning_backends.py. Every test that takes the
``backend`` fixture runs on the NumPy reference and on Numba.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from test_learning_backends import ConstraintWatch, load_text

import eigraph
from eigraph.cli import main as cli_main
from eigraph.runtime.errors import InputError, SimulationError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@pytest.fixture(params=["numpy", "numba"])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("learning")


def constrained_run(sim, *args, **kwargs):
    """``sim.run`` with the constraints checked after every step (every test in this file)."""
    watch = ConstraintWatch()
    out = sim.run(*args, every=1, callback=watch, **kwargs)
    assert watch.violations == [], "; ".join(watch.violations[:5])
    return out


# ================================================================================================
# Oja (1982): the first principal component
# ================================================================================================
OJA = """\
# 2 zero-mean Gaussian channels -> 1 linear readout (tau = 1 steps, delay 0); free-signed weights
network oja2d { seed = 1982; precision = float64 }

celltype Channel : unsigned input { activation = linear }

population x : Channel(2)
population y : readout(1)

x -> y : dense, init = normal(0, 0.5), learn = oja(eta = 1e-3)
"""


def test_oja_finds_first_principal_component(folder, backend):
    model = load_text(folder, "oja2d.ei", OJA)
    angle = 0.6  # e1 is not an axis
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    covariance = rotation @ np.diag([3.0, 1.0]) @ rotation.T
    e1 = rotation[:, 0]
    rng = np.random.default_rng(11)
    samples = rng.multivariate_normal([0, 0], covariance, size=12000)
    sim = model.compile(backend=backend)
    w0 = sim.weights["x->y"][0]
    constrained_run(sim, samples[:, None, :], record=[])
    w = sim.weights["x->y"][0]
    cosine = abs(w @ e1) / np.linalg.norm(w)
    print(f"\n[oja {backend}] w0 = {w0}, w = {w}, |cos(w, e1)| = {cosine:.5f}, |w| = {np.linalg.norm(w):.5f}")
    assert cosine > 0.99
    assert abs(np.linalg.norm(w) - 1) < 0.02


# ================================================================================================
# BCM (Bienenstock, Cooper & Munro 1982): selectivity to one of two orthogonal patterns
# ================================================================================================
BCM = """\
# one linear neuron (tau = 1 steps, delay 0) and 4 excitatory inputs; theta tracks post^2 over 20 ms
network bcm1 { dt = 1 ms; seed = 1981; precision = float64 }

population x : input(4)
population y : readout(1)

x -> y : dense, init = uniform(0.2, 0.3), learn = bcm(eta = 0.02, tau_theta = 20 ms, y0 = 1)
"""
PATTERNS = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])  # orthogonal


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bcm_neuron_becomes_selective(folder, backend, seed):
    model = load_text(folder, "bcm1.ei", BCM)
    sim = model.compile(backend=backend)
    rng = np.random.default_rng(seed)
    sim.weights["x->y"] = rng.uniform(0.2, 0.3, size=(1, 4))
    before = sim.run(PATTERNS[:, None, :], record=["y.r"], learn=False)["y.r"][:, 0, 0]
    shown = rng.integers(0, 2, size=4000)  # one random pattern per step
    constrained_run(sim, PATTERNS[shown][:, None, :], record=[])
    after = sim.run(PATTERNS[:, None, :], record=["y.r"], learn=False)["y.r"][:, 0, 0]
    strong, weak = after.max(), after.min()
    ratio = strong / weak if weak > 0 else np.inf
    print(f"\n[bcm {backend} seed {seed}] responses before {before}, after {after}, ratio {ratio:.3g}, "
          f"theta {sim.traces['x->y:theta']}")
    assert before.max() / before.min() < 1.5  # not selective at the start
    assert strong > 1.0  # it still responds to its pattern (BCM fixed point: 2 * y0)
    assert weak < 0.1 * strong


# ================================================================================================
# Vogels et al. (2011): inhibitory plasticity sets the E rate to rho0
# ================================================================================================
def load_example(name: str):
    with contextlib.chdir(MODELS):
        return eigraph.load(name)


def _set_inhibition(sim, value: float) -> None:
    stored = sim.weights.stored("I->E")
    dense = np.zeros(stored.shape)
    if stored.is_sparse:
        rows = np.repeat(np.arange(stored.shape[0]), np.diff(stored.indptr))
        dense[rows, stored.indices] = value
    else:
        dense[...] = value
    sim.weights["I->E"] = dense


_VOGELS: dict = {}


def _vogels_sim(backend: str):
    if backend not in _VOGELS:
        _VOGELS[backend] = load_example("vogels_balance.ei").compile(backend=backend)
    sim = _VOGELS[backend]
    sim.reset(weights=True)
    return sim


# The file's own eta (1e-5 per 1 ms step) converges within the test's budget: 0 -> balance in
# ~300 steps from above; from I->E = 0.12 (E silenced) in ~600 steps from below.
@pytest.mark.parametrize("start, inhibition", [("above", 0.0), ("below", 0.12)])
def test_vogels_drives_E_rate_to_rho0(start, inhibition):
    sim = _vogels_sim("numba")
    rho0 = sim.program.projections["I->E"].rule.params["rho0"]
    assert rho0 == 3
    _set_inhibition(sim, inhibition)
    rates = constrained_run(sim, steps=1200, record=["E.r"])["E.r"][:, 0, :].mean(axis=1)
    early, final = rates[20:50].mean(), rates[-200:].mean()
    print(f"\n[vogels from {start}] mean E rate at steps 20-50: {early:.3f}, over the last 200 steps: "
          f"{final:.4f} (rho0 = {rho0}); mean I->E weight {sim.weights.stored('I->E').data.mean():.4f}")
    if start == "above":
        assert early > 1.5 * rho0
    else:
        assert early < 0.5 * rho0
    assert abs(final - rho0) < 0.1 * rho0


def test_vogels_numpy_agrees_with_numba():
    """The long runs above use Numba; the reference agrees on the first 150 steps from below."""
    out = {}
    for backend in ("numpy", "numba"):
        sim = _vogels_sim(backend)
        _set_inhibition(sim, 0.05)
        rates = constrained_run(sim, steps=150, record=["E.r"])["E.r"]
        out[backend] = (rates, sim.weights["I->E"])
    np.testing.assert_allclose(out["numba"][0], out["numpy"][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["numba"][1], out["numpy"][1], rtol=1e-4, atol=1e-6)


# ================================================================================================
# Widrow-Hoff: the delta rule finds the least-squares solution
# ================================================================================================
DELTA = """\
# 4 free-signed features -> 2 linear readouts (tau = 1 steps, delay 0); targets given by the task
network lms_{name} {{ seed = 1960; precision = float64 }}

celltype Feature : unsigned input {{ activation = linear }}

population x : Feature(4)
population y : readout(2)

x -> y : dense, init = normal(0, 0.1), learn = delta(eta = {eta})

run {{ inputs = x; targets = y }}
"""


def _regression(seed: int = 4, samples: int = 64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(samples, 4)) + np.array([0.5, -0.3, 0.0, 0.2])
    W_true = np.array([[1.0, -0.5, 0.25, 2.0], [-1.5, 0.3, 0.8, 0.0]])
    Y = X @ W_true.T + 0.2 * rng.normal(size=(samples, 2))
    W_ls = np.linalg.lstsq(X, Y, rcond=None)[0].T  # post x pre
    return X, Y, W_ls


def test_delta_rule_full_batch_converges_to_lstsq(folder, backend):
    """All samples in the batch each step: dw is the exact gradient of the squared error."""
    X, Y, W_ls = _regression()
    model = load_text(folder, "lms_batch.ei", DELTA.format(name="batch", eta="0.1"))
    sim = model.compile(backend=backend, batch=len(X))
    steps = 400
    constrained_run(sim, np.broadcast_to(X, (steps,) + X.shape), targets=np.broadcast_to(Y, (steps,) + Y.shape),
                    record=[])
    error = np.linalg.norm(sim.weights["x->y"] - W_ls) / np.linalg.norm(W_ls)
    print(f"\n[delta full batch {backend}] relative error vs lstsq: {error:.3g}")
    assert error < 0.01


def test_delta_rule_online_converges_to_lstsq(folder, backend):
    """One random sample per step (batch 1), small eta: LMS."""
    X, Y, W_ls = _regression()
    model = load_text(folder, "lms_online.ei", DELTA.format(name="online", eta="5e-4"))
    sim = model.compile(backend=backend)
    order = np.random.default_rng(5).integers(0, len(X), size=30000)
    constrained_run(sim, X[order][:, None], targets=Y[order][:, None], record=[])
    error = np.linalg.norm(sim.weights["x->y"] - W_ls) / np.linalg.norm(W_ls)
    print(f"\n[delta online {backend}] relative error vs lstsq: {error:.3g}")
    assert error < 0.01


DELTA_INHIBITORY = """\
# 4 inhibitory channels -> 2 linear readouts: the effective weights are -W (W magnitudes >= 0),
# so delta must descend the gradient with the source's sign (dw = eta * sign * pre * (target - post))
network lms_inhibitory { seed = 1960; precision = float64 }

celltype Inh : inhibitory input { activation = linear }

population x : Inh(4)
population y : readout(2)

x -> y : dense, init = uniform(0.5, 1), learn = delta(eta = 0.1)

run { inputs = x; targets = y }
"""


def test_delta_rule_from_inhibitory_source_converges_to_lstsq(folder, backend):
    rng = np.random.default_rng(6)
    X = rng.uniform(0.1, 1.5, size=(64, 4))  # rates
    M_true = np.array([[1.0, 0.5, 1.5, 2.0], [0.3, 1.2, 0.8, 0.6]])  # magnitudes
    Y = -X @ M_true.T + 0.05 * rng.normal(size=(64, 2))
    M_ls = -np.linalg.lstsq(X, Y, rcond=None)[0].T  # the least-squares magnitudes
    assert (M_ls > 0).all()  # reachable under Dale's law
    sim = load_text(folder, "lms_inhibitory.ei", DELTA_INHIBITORY).compile(backend=backend, batch=len(X))
    steps = 1500
    constrained_run(sim, np.broadcast_to(X, (steps,) + X.shape), targets=np.broadcast_to(Y, (steps,) + Y.shape),
                    record=[])
    error = np.linalg.norm(sim.weights["x->y"] - M_ls) / np.linalg.norm(M_ls)
    print(f"\n[delta from inhibitory {backend}] relative error vs lstsq: {error:.3g}")
    assert error < 0.01


# ================================================================================================
# The semantics of one step of a rule, simulated by hand
# ================================================================================================
SEMANTICS = """\
network semantics { dt = 1 ms; seed = 3; precision = float64 }

population x : input(3)
population h : E(2) { tau = 4 ms; bias = 0.2 }
population y : readout(2)

# dw reads the new a (its equation comes first) and the old b and q (theirs come after)
rule ordered(eta = 0.05, tau = 4 ms) {
    a' = (pre * post - a) / tau
    a(0) = 0.5
    dw = eta * (a - b) * q
    b' = (pre - b) / tau
    q' = (post - q) / tau
    q(0) = 1
}
# factorised; q is shared over the batch
rule ordered_f(eta = 0.05, tau = 4 ms) {
    dw = eta * b * q
    b' = (pre - b) / tau
    q' = (post^2 - q) / tau : shared
    q(0) = 1
}

x -> h : dense, init = uniform(0.2, 0.6), learn = ordered
h -> y : dense, init = uniform(0.2, 0.6), delay = 2 steps, learn = ordered_f
x -> y : dense, init = uniform(0.2, 0.6), name = "xy", learn = hebb(eta = 0.02)
"""


def _semantics_by_hand(W, inputs, steps):
    """The documented semantics, step by step (batch last, as (N, B))."""
    dt, tau, eta, alpha, bias = 1e-3, 4e-3, 0.05, 0.25, 0.2
    W_xh, W_hy, W_xy = (W[k].copy() for k in ("x->h", "h->y", "xy"))
    B = inputs.shape[1]
    r_h = [np.zeros((2, B))]  # r_h[0] = relu(x0 = 0); earlier steps are at rest
    x_h = np.zeros((2, B))
    a, b1, q1 = np.full((2, 3, B), 0.5), np.zeros((3, B)), np.ones((2, B))
    b2, q2 = np.zeros((2, B)), np.ones(2)
    for n in range(steps):
        r_x = inputs[n].T  # r_x[n + 1]: the input presented at step n
        h_pre_delayed = r_h[max(n + 1 - 2, 0)]  # delay 2: r_h[n - 1]
        x_h = x_h + alpha * (-x_h + W_xh @ r_x + bias)
        r_h.append(np.maximum(x_h, 0))  # r_h[n + 1]
        y = W_hy @ h_pre_delayed + W_xy @ r_x  # readout, tau = 1 steps
        # x -> h: pre = r_x[n + 1], post = r_h[n + 1]
        pre, post = r_x, r_h[n + 1]
        a = a + dt * (pre[None] * post[:, None] - a) / tau
        dw_xh = (eta * (a - b1[None]) * q1[:, None]).mean(axis=-1)
        b1 = b1 + dt * (pre - b1) / tau
        q1 = q1 + dt * (post - q1) / tau
        # h -> y: pre = r_h[n + 1 - 2], post = y
        dw_hy = (eta * b2[None] * q2[:, None, None]).mean(axis=-1)
        b2 = b2 + dt * (h_pre_delayed - b2) / tau
        q2 = q2 + dt * ((y ** 2 - q2[:, None]) / tau).mean(axis=-1)
        # xy: hebb
        dw_xy = (0.02 * r_x[None] * y[:, None]).mean(axis=-1)
        # every rule saw the weights of the step; then W += dw and the Dale clip (signed sources)
        W_xh = np.maximum(W_xh + dw_xh, 0)
        W_hy = np.maximum(W_hy + dw_hy, 0)
        W_xy = np.maximum(W_xy + dw_xy, 0)
    weights = {"x->h": W_xh, "h->y": W_hy, "xy": W_xy}
    traces = {"x->h:a": a, "x->h:b": b1, "x->h:q": q1, "h->y:b": b2, "h->y:q": q2}
    return weights, traces, np.stack(r_h[1:])


@pytest.mark.parametrize("batch", [1, 3])
def test_rule_semantics_match_hand_simulation(folder, backend, batch):
    model = load_text(folder, "semantics.ei", SEMANTICS)
    sim = model.compile(backend=backend, batch=batch)
    steps = 40
    inputs = np.random.default_rng(8).random((steps, batch, 3))
    initial = {name: sim.weights[name] for name in sim.weights}
    out = constrained_run(sim, inputs, record=["h.r"])
    weights, traces, r_h = _semantics_by_hand(initial, inputs, steps)
    np.testing.assert_allclose(out["h.r"], r_h.transpose(0, 2, 1), rtol=1e-10, atol=1e-12)
    assert set(sim.traces) == set(traces)
    for name, value in traces.items():
        np.testing.assert_allclose(sim.traces[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    for name, value in weights.items():
        assert np.abs(value - initial[name]).max() > 1e-3, f"{name} did not learn"
        np.testing.assert_allclose(sim.weights[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


# ================================================================================================
# on trial: traces every step, weights once at the end of each run() call
# ================================================================================================
API = """\
network api { dt = 1 ms; seed = 4; precision = float32 }

population inp : input(4)
population E   : E(6) { tau = 5 ms; bias = 0.1 }
population out : readout(2)

rule per_trial(eta = 0.05, tau = 5 ms) on trial {
    m' = (post - m) / tau
    dw = eta * pre * (post - m)
}

inp -> E   : dense, learn = per_trial
E   -> E   : sparse(p = 0.5), learn = bcm(eta = 0.05, tau_theta = 10 ms), bounds = [0, 0.5]
E   -> out : dense, learn = delta(eta = 0.05)

run { inputs = inp; targets = out }
"""


def _api(folder, backend, batch=2):
    return load_text(folder, "api.ei", API).compile(backend=backend, batch=batch)


def _api_feed(steps, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"inputs": rng.random((steps, batch, 4)), "targets": rng.random((steps, batch, 2))}


def test_on_trial_rule_updates_once_per_run(folder, backend):
    sim = _api(folder, backend)
    w0 = sim.weights["inp->E"]
    seen = []
    sim.run(**_api_feed(10), every=1,
            callback=lambda s: seen.append((s.weights["inp->E"], s.traces["inp->E:m"].copy())))
    assert len(seen) == 10
    for k, (w, _m) in enumerate(seen[:-1]):
        np.testing.assert_array_equal(w, w0, err_msg=f"an on-trial rule changed the weights after step {k + 1}")
    assert np.abs(seen[-1][0] - w0).max() > 1e-4  # the update at the end of the call
    traces = [m for _w, m in seen]
    assert all(np.abs(b - a).max() > 0 for a, b in zip(traces, traces[1:]))  # traces move every step
    # each call is one trial
    w1 = sim.weights["inp->E"]
    sim.run(**_api_feed(5, seed=1))
    assert np.abs(sim.weights["inp->E"] - w1).max() > 1e-4


def test_on_trial_rule_backends_agree(folder):
    out = {}
    for backend in ("numpy", "numba"):
        sim = _api(folder, backend)
        for seed in range(3):  # three trials
            constrained_run(sim, **_api_feed(15, seed=seed), record=[])
        out[backend] = ({n: sim.weights[n] for n in sim.weights}, {n: v.copy() for n, v in sim.traces.items()})
    for name in out["numpy"][0]:
        np.testing.assert_allclose(out["numba"][0][name], out["numpy"][0][name], rtol=2e-4, atol=2e-5, err_msg=name)
    for name in out["numpy"][1]:
        np.testing.assert_allclose(out["numba"][1][name], out["numpy"][1][name], rtol=2e-4, atol=2e-5, err_msg=name)


# ================================================================================================
# learn=False, missing targets, weights recorded every K steps
# ================================================================================================
def test_learn_false_leaves_weights_and_traces_unchanged(folder, backend):
    sim = _api(folder, backend)
    weights = {n: sim.weights[n] for n in sim.weights}
    traces = {n: v.copy() for n, v in sim.traces.items()}
    out = sim.run(_api_feed(30)["inputs"], learn=False, record=["E.r"])  # no targets needed
    assert out["E.r"].std() > 0
    for name, value in weights.items():
        np.testing.assert_array_equal(sim.weights[name], value, err_msg=name)
    for name, value in traces.items():
        np.testing.assert_array_equal(sim.traces[name], value, err_msg=name)


def test_missing_targets_raise_input_error_naming_rule_and_population(folder, backend):
    sim = _api(folder, backend)
    with pytest.raises(InputError) as info:
        sim.run(_api_feed(5)["inputs"])
    message = str(info.value)
    assert "delta" in message and "'out'" in message and "targets" in message


@pytest.mark.parametrize("steps, every", [(50, 10), (45, 10), (7, 1)])
def test_weights_recorded_every_k_steps(folder, backend, steps, every):
    sim = _api(folder, backend)
    seen = {}

    def snapshot(s):
        seen[s.n] = {name: s.weights[name] for name in ("E->E", "E->out")}

    out = sim.run(**_api_feed(steps), record=["E->E.w", "E->out.w", "E.r"], every=every, callback=snapshot)
    times = sorted(seen)
    assert times == list(range(every, steps + 1, every))
    expected = len(times) + (steps % every != 0)  # and one at the end
    assert out["E->E.w"].shape == (expected, 6, 6)
    assert out["E->out.w"].shape == (expected, 2, 6)
    assert out["E.r"].shape == (steps, 2, 6)
    for k, n in enumerate(times):
        np.testing.assert_array_equal(out["E->E.w"][k], seen[n]["E->E"])
        np.testing.assert_array_equal(out["E->out.w"][k], seen[n]["E->out"])
    np.testing.assert_array_equal(out["E->out.w"][-1], sim.weights["E->out"])
    assert np.abs(out["E->out.w"][-1] - out["E->out.w"][0]).max() > 0


# ================================================================================================
# Constraints after every update, under rules that push the weights out of range
# ================================================================================================
CLAMP = """\
network clamp { dt = 1 ms; seed = 9; precision = float32 }

celltype U : unsigned input { activation = linear }

population x   : input(6)
population u   : U(5)
population E   : E(10) { tau = 2 ms; bias = 0.5 }
population I   : I(4) { tau = 2 ms; bias = 0.3 }
population out : readout(3)

# inputs u with a mean below 0.5 push their weights down, the others up
rule shove(eta = 0.5) {
    dw = eta * (pre - 0.5) * (1 + post * post)
}
# inputs x with a mean below 0.5 drive their magnitudes to the Dale clip, then rows are normalised
rule tilt(eta = 0.5) {
    dw = eta * (pre - 0.5)
}
rule shove_syn(eta = 0.5) {
    dw = eta * tanh(pre * post - 0.2 + w)
}

x -> E   : dense, learn = anti_hebb(eta = 0.5)
E -> I   : sparse(p = 0.5), learn = hebb(eta = 0.5), bounds = [0.05, 0.3]
I -> E   : fixed_in(k = 2), learn = vogels(eta = 0.5, rho0 = 0.2), normalize = 0.7
E -> E   : dense, learn = hebb(eta = 0.5), normalize = 2
u -> out : dense, learn = shove, bounds = [-0.2, 0.25]
E -> out : sparse(p = 0.6), learn = shove_syn, bounds = [0.1, 0.4]
x -> out : dense, learn = tilt, normalize = 1
"""


def test_constraints_hold_exactly_after_every_update(folder, backend):
    model = load_text(folder, "clamp.ei", CLAMP)
    sim = model.compile(backend=backend, batch=2)
    rng = np.random.default_rng(2)
    steps = 60
    inputs = {"x": rng.random((steps, 2, 6)) * np.linspace(0.2, 1.8, 6),
              "u": rng.random((steps, 2, 5)) * np.linspace(0.2, 1.8, 5)}
    constrained_run(sim, inputs, record=[])
    w = {name: sim.weights.stored(name) for name in sim.weights}
    values = {name: (s.data if s.is_sparse else s.dense) for name, s in w.items()}
    f32 = np.float32
    # each constraint was active, so the checks above were not vacuous
    assert (values["x->E"] == 0).any()  # Dale clip
    assert (values["E->I"] == f32(0.3)).any() or (values["E->I"] == f32(0.05)).any()
    assert (values["u->out"] == f32(-0.2)).any() or (values["u->out"] == f32(0.25)).any()
    assert (values["u->out"] < 0).any()  # unsigned source: no clip at 0
    assert (values["E->out"] == f32(0.4)).any() or (values["E->out"] == f32(0.1)).any()
    assert np.diag(sim.weights["E->E"]).max() == 0  # no autapses, even after normalisation
    assert (values["x->out"] == 0).any() and (values["x->out"].sum(axis=1) > 0).all()  # Dale clip, then normalize


DALE_OFF = """\
network free { dt = 1 ms; seed = 5; precision = float64; dale = off }

population x : input(3)
population y : readout(2)

x -> y : dense, learn = anti_hebb(eta = 0.5)
"""


def test_dale_off_lets_magnitudes_cross_zero(folder, backend):
    sim = load_text(folder, "dale_off.ei", DALE_OFF).compile(backend=backend)
    sim.run(np.ones((20, 1, 3)), record=[])
    assert (sim.weights["x->y"] < 0).any()


# ================================================================================================
# A rule that produces NaN stops the run
# ================================================================================================
EXPLODE = """\
network blowup { dt = 1 ms; seed = 1; precision = float64 }

population x : input(3)
population y : readout(2)

# sqrt of a negative number from step 5 on (t / dt = n + 1 = 6)
rule explode(eta = 0.1, tau = 10 ms) {
    z' = (pre * post - z) / tau
    dw = eta * (pre + z) * sqrt(5.5 - t / dt)
}

x -> y : dense, learn = explode, name = "feed"
"""


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_rule_producing_nan_stops_run(folder, backend):
    sim = load_text(folder, "explode.ei", EXPLODE).compile(backend=backend)
    with pytest.raises(SimulationError) as info:
        sim.run(np.ones((10, 1, 3)), record=["y.r"])
    message = str(info.value)
    assert "explode" in message and "feed" in message and "step 5" in message
    assert info.value.step == 5
    assert sim.n == 5
    assert info.value.records["y.r"].shape == (5, 1, 2)
    state = sim.state  # readable
    assert np.isfinite(state["y.r"]).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_rule_producing_nan_leaves_state_before_failing_step(folder, backend):
    """docs/runtime.md: after SimulationError the simulator's state is the one before the failing
    step: weights and traces too, not only the rates."""
    sim = load_text(folder, "explode.ei", EXPLODE).compile(backend=backend)
    seen = {}

    def snapshot(s):
        seen[s.n] = (s.weights["feed"], s.state["y.r"], s.traces["feed:z"].copy())

    with pytest.raises(SimulationError):
        sim.run(np.ones((10, 1, 3)), every=1, callback=snapshot)
    assert sim.n == 5
    np.testing.assert_array_equal(sim.weights["feed"], seen[5][0])
    np.testing.assert_array_equal(sim.state["y.r"], seen[5][1])
    np.testing.assert_array_equal(sim.traces["feed:z"], seen[5][2])
    # and the run can go on from there once the cause is removed (here: learn=False)
    sim.run(np.ones((3, 1, 3)), learn=False, record=[])
    assert sim.n == 8


# ================================================================================================
# eigraph validate: rule errors at their line and column inside the rule body
# ================================================================================================
BAD_RULES = {
    "unknown_symbol": ("""\
network m { dt = 1 ms }
population inp : input(2)
population out : readout(1)
rule grow(eta = 0.01) {
    e' = (pre * post - e) / 10 ms
    dw = eta * e * postt
}
inp -> out : dense, learn = grow
""", "N105", (6, 20)),
    "target_without_targets": ("""\
network m { dt = 1 ms }
population inp : input(2)
population out : readout(1)
rule chase(eta = 0.01) {
    err = target - post
    dw = eta * pre * err
}
inp -> out : dense, learn = chase
run {
    task   = decision
    inputs = inp
}
""", "C303", (5, 11)),
    "dw_twice": ("""\
network m { dt = 1 ms }
population inp : input(2)
population out : readout(1)
rule grow(eta = 0.01) {
    dw = eta * pre * post
    dw = eta * pre
}
inp -> out : dense, learn = grow
""", "R602", (6, 5)),
}


@pytest.mark.parametrize("case", list(BAD_RULES))
def test_validate_places_rule_errors_inside_the_body(tmp_path, capsys, case):
    text, code, (line, column) = BAD_RULES[case]
    path = tmp_path / f"{case}.ei"
    path.write_text(text, encoding="utf-8")
    capsys.readouterr()
    status = cli_main(["validate", "--format", "json", str(path)])
    payload = json.loads(capsys.readouterr().out)
    assert status == 1
    found = [(d["code"], d["span"]["line"], d["span"]["column"]) for d in payload["diagnostics"]]
    assert [f[0] for f in found] == [code], found  # rejected for this reason, and only this
    assert found[0][1:] == (line, column), \
        f"{code} at {found[0][1:]}, expected inside the rule body at {(line, column)}"
    with pytest.raises(eigraph.ModelError):
        eigraph.load(path)


def test_validate_reports_target_error_as_c303(tmp_path, capsys):
    """The part of the target case that works today: rejected, with C303 and the rule's name."""
    text, code, _ = BAD_RULES["target_without_targets"]
    path = tmp_path / "target.ei"
    path.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert cli_main(["validate", "--format", "json", str(path)]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert [d["code"] for d in payload["diagnostics"]] == [code]
    assert "chase" in payload["diagnostics"][0]["message"]


# ================================================================================================
# Learning state (weights and traces) is independent of how a run is cut and survives save/load
# ================================================================================================
def test_learning_state_survives_chunking_and_save_load(folder, backend, tmp_path):
    model = load_text(folder, "semantics.ei", SEMANTICS)
    # batch 3: the kernel test_rule_semantics_match_hand_simulation compiled (one compile per batch)
    inputs = np.random.default_rng(9).random((40, 3, 3))

    def state(sim):
        return ({n: sim.weights[n] for n in sim.weights}, {n: v.copy() for n, v in sim.traces.items()})

    straight = model.compile(backend=backend, batch=3)
    straight.run(inputs, record=[])
    expected = state(straight)

    sim = model.compile(backend=backend, batch=3)
    sim.run(inputs[:20], record=[])
    sim.save(tmp_path / "half.npz")
    sim.run(inputs[20:], record=[], every=7, callback=lambda s: None)
    resumed = model.compile(backend=backend, batch=3)
    resumed.load(tmp_path / "half.npz")
    resumed.run(inputs[20:], record=[])
    for got in (state(sim), state(resumed)):
        for name, value in expected[0].items():
            np.testing.assert_array_equal(got[0][name], value, err_msg=name)
        for name, value in expected[1].items():
            np.testing.assert_array_equal(got[1][name], value, err_msg=name)
    # reset(weights=True) restores the initial weights and traces
    sim.reset(weights=True)
    fresh = model.compile(backend=backend, batch=3)
    for name in fresh.weights:
        np.testing.assert_array_equal(sim.weights[name], fresh.weights[name], err_msg=name)
    for name, value in fresh.traces.items():
        np.testing.assert_array_equal(sim.traces[name], value, err_msg=name)
