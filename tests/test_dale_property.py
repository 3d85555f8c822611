"""Dale's law holds in every run (LANGUAGE.md section 5): stored weights of projections from
signed populations are magnitudes (>= 0), so the effective weight sign * gain * W is never
negative from an excitatory population and never positive from an inhibitory one: after
initialisation, after the spectral-radius rescaling, and after learning (the compiler clips
magnitudes at 0 after every update, then applies bounds, then normalize). Assigning negative
magnitudes through ``sim.weights`` is refused.

Property-based: hypothesis writes random small models (random E and I populations, a readout
that may feed back with a sign override, projections with random connectivity, init, gain,
delay, learning rule, bounds and normalize, sometimes a spectral radius, sometimes a projection
tied to another's transpose, which must equal scale x that transpose after every step).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eigraph
from eigraph.runtime.errors import InputError, SimulationError

ACTIVATIONS = ["relu", "tanh", "sigmoid", "softplus", "linear", "clip01", "softmax"]
POSITIVE_INITS = [
    lambda d: f"constant({d(st.floats(0, 2)):.4g})",
    lambda d: f"uniform(0, {d(st.floats(0.01, 1)):.4g})",
    lambda d: f"halfnormal({d(st.floats(0.01, 1)):.4g})",
    lambda d: f"lognormal({d(st.floats(-3, 0)):.4g}, {d(st.floats(0.1, 1)):.4g})",
    lambda d: f"gamma({d(st.floats(0.5, 3)):.4g}, {d(st.floats(0.01, 0.3)):.4g})",
    lambda d: "halfnormal(1 / sqrt(fan_in + 1))",
    lambda d: None,  # the default init of a signed projection
]
RULES = [  # large learning rates: without the clip at 0 many magnitudes would turn negative
    lambda d: f"anti_hebb(eta = {d(st.floats(0.01, 1)):.4g})",
    lambda d: f"vogels(eta = {d(st.floats(0.01, 1)):.4g}, rho0 = {d(st.floats(0, 5)):.4g})",
    lambda d: f"hebb(eta = {d(st.floats(0.001, 0.1)):.4g})",
    lambda d: f"oja(eta = {d(st.floats(0.01, 1)):.4g})",
    lambda d: f"bcm(eta = {d(st.floats(0.01, 1)):.4g}, tau_theta = 5 ms)",
    lambda d: f"covariance(eta = {d(st.floats(0.01, 1)):.4g}, tau = 3 ms)",
    lambda d: f"reward_hebb(eta = {d(st.floats(0.01, 1)):.4g}, tau_e = 2 ms)",
]


@st.composite
def random_models(draw):
    """(model text, {population: sign}, {projection: source}) for a random small E/I network."""
    signs = {"inp": 1}
    lines = [f"network random {{ dt = 1 ms; seed = {draw(st.integers(0, 1000))}; precision = float32"
             + (f"; spectral_radius = {draw(st.floats(0.1, 3)):.3g}" if draw(st.booleans()) else "") + " }",
             f"population inp : input({draw(st.integers(1, 4))})"]
    sizes = {}
    hidden = [f"E{i}" for i in range(draw(st.integers(1, 3)))] + [f"I{i}" for i in range(draw(st.integers(1, 2)))]
    for name in hidden:
        sizes[name] = draw(st.integers(1, 6))
        signs[name] = 1 if name[0] == "E" else -1
        lines.append(f"population {name} : {name[0]}({sizes[name]}) {{ activation = {draw(st.sampled_from(ACTIVATIONS))}; "
                     f"tau = {draw(st.integers(2, 20))} ms }}")
    readout_sign = draw(st.sampled_from([None, "excitatory", "inhibitory"]))
    sizes["out"] = draw(st.integers(1, 3))
    lines.append(f"population out : readout({sizes['out']})" + (f" {{ sign = {readout_sign} }}" if readout_sign else ""))
    signs["out"] = {None: 0, "excitatory": 1, "inhibitory": -1}[readout_sign]
    sizes["inp"] = int(lines[1].split("(")[1].rstrip(")"))

    order = ["inp"] + hidden + ["out"]  # zero delays only go forwards in this order: no zero-delay cycle
    pairs = [("inp", t) for t in hidden] + [(s, t) for s in hidden for t in hidden] + [(s, "out") for s in hidden]
    if readout_sign:
        pairs += [("out", t) for t in hidden]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=8))
    # a guaranteed recurrent loop with a positive eigenvalue, so a spectral radius can be set
    chosen = [("E0", "E0")] + chosen
    projections = []
    for index, (source, target) in enumerate(chosen):
        n_pre, n_post = sizes[source], sizes[target]
        self_projection = source == target
        autapses = index == 0 or (self_projection and draw(st.booleans()))
        pool = n_pre - (1 if self_projection and not autapses else 0)
        kinds = ["dense", "sparse", "fixed_in"] + (["one_to_one"] if n_pre == n_post else [])
        kind = "dense" if index == 0 else draw(st.sampled_from(kinds))
        if kind == "sparse":
            conn = f"sparse(p = {draw(st.floats(0, 1)):.3g})"
        elif kind == "fixed_in":
            conn = f"fixed_in(k = {draw(st.integers(0, max(pool, 0)))})"
        else:
            conn = kind
        keys = [conn]
        init = "uniform(0.5, 1)" if index == 0 else draw(st.sampled_from(POSITIVE_INITS))(draw)
        if init:
            keys.append(f"init = {init}")
        if draw(st.booleans()):
            keys.append(f"gain = {draw(st.floats(0.05, 5)):.3g}")
        if order.index(source) < order.index(target) and source != "out" and draw(st.booleans()):
            keys.append("delay = 0 steps")
        elif source == "out" or draw(st.booleans()):
            keys.append(f"delay = {draw(st.integers(1, 3))} steps")
        if index and draw(st.booleans()):
            keys.append(f"learn = {draw(st.sampled_from(RULES))(draw)}")
            if draw(st.booleans()):
                lo = draw(st.floats(0, 0.5))
                keys.append(f"bounds = [{lo:.3g}, {lo + draw(st.floats(0.1, 2)):.3g}]")
            if draw(st.booleans()):
                keys.append(f"normalize = {draw(st.floats(0.1, 3)):.3g}")
        if self_projection and autapses:
            keys.append("autapses = true")
        keys.append(f'name = "p{index}"')
        projections.append(f"{source} -> {target} : " + ", ".join(keys))
    sources = {f"p{i}": s for i, (s, _t) in enumerate(chosen)}
    # sometimes a projection tied to the transpose of a dense one between two hidden populations
    dense = [(i, s, t) for i, (s, t) in enumerate(chosen) if s != t and s in hidden and t in hidden
             and projections[i].split(" : ")[1].startswith("dense")]
    if dense and draw(st.booleans()):
        index, source, target = draw(st.sampled_from(dense))
        scale = draw(st.floats(0, 2))
        projections.append(f'{target} -> {source} : transpose("p{index}", scale = {scale:.3g}), name = "t{index}"')
        sources[f"t{index}"] = target
    lines += projections
    return "\n".join(lines) + "\n", signs, sources


def assert_dale(sim, signs, sources, when):
    for name, source in sources.items():
        q = sim.program.projections[name]
        assert q.sign == signs[source], f"{name}: sign {q.sign}, source {source} ({when})"
        magnitudes = sim.weights[name]
        # a rule that ran away leaves inf/NaN weights behind (see test_runtime_errors): Dale is
        # about the sign of the numbers that are numbers
        magnitudes = magnitudes[np.isfinite(magnitudes)]
        effective = q.factor * magnitudes.astype(np.float64)
        if signs[source] != 0:
            assert (magnitudes >= 0).all(), f"{name}: negative magnitudes {when}"
            assert q.gain > 0
        if signs[source] > 0:
            assert (effective >= 0).all(), f"{name} from excitatory {source}: negative effective weight {when}"
        elif signs[source] < 0:
            assert (effective <= 0).all(), f"{name} from inhibitory {source}: positive effective weight {when}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_models(), st.integers(1, 3), st.randoms(use_true_random=False))
def test_dale_holds_in_every_run(tmp_path_factory, case, batch, rnd):
    text, signs, sources = case
    folder = tmp_path_factory.getbasetemp() / "dale"
    folder.mkdir(exist_ok=True)
    (folder / "random.ei").write_text(text)
    model = eigraph.load(folder / "random.ei")
    assert not model.errors, text
    sim = model.compile(backend="numpy", batch=batch)
    assert_dale(sim, signs, sources, "after init" + (" and the spectral-radius rescaling" if "spectral" in text else ""))
    if "spectral_radius" in text:
        from eigraph.compile.lower import spectral_radius

        target = float(text.split("spectral_radius = ")[1].split()[0])
        assert spectral_radius(sim.program) == pytest.approx(target, rel=1e-4)

    steps = 15
    rng = np.random.default_rng(rnd.randint(0, 2**32 - 1))
    inputs = rng.random((steps, batch, sim.program.populations["inp"].size)) * 2
    reward = rng.standard_normal((steps, batch))
    ties = [(q.name, q.tie) for q in sim.program.projections.values() if q.tie is not None]

    def tied(s, where="after a step"):  # a tied projection is scale x the transpose, after every update
        for name, (of, scale) in ties:
            np.testing.assert_allclose(s.weights[name], np.float32(scale) * s.weights[of].T, rtol=1e-6,
                                       err_msg=f"{name} ({where})")

    tied(sim, "after init")
    try:
        sim.run(inputs, reward=reward, every=1, callback=tied)
    except SimulationError:
        pass  # a runaway network or rule: the weights before the failing step must still obey Dale
    assert_dale(sim, signs, sources, f"after {sim.n} steps of learning")

    # the API refuses negative magnitudes, and takes non-negative ones
    for name, source in sources.items():
        if sim.program.projections[name].tie is not None:
            continue  # set through the projection it is tied to (refused directly: test_phases.py)
        w = sim.weights[name]
        if not np.isfinite(w).all():
            continue
        if signs[source] != 0 and w.any():
            negative = -w
            with pytest.raises(InputError, match=name):
                sim.weights[name] = negative
            np.testing.assert_array_equal(sim.weights[name], w)  # unchanged by the refused assignment
        sim.weights[name] = w / 2
        np.testing.assert_allclose(sim.weights[name], w / 2)
    assert_dale(sim, signs, sources, "after assignments")
    tied(sim, "after assignments")


ANTI = """\
network anti { dt = 1 ms; seed = 8; precision = float32 }

population inp : input(4)
population E   : E(6) { tau = 5 ms }
population I   : I(4) { tau = 5 ms }

inp -> E : dense, init = uniform(0, 1), learn = anti_hebb(eta = 0.2)
E   -> I : sparse(p = 0.7), init = uniform(0, 1), learn = anti_hebb(eta = 0.2)
I   -> E : dense, init = uniform(0, 1), learn = vogels(eta = 0.5, rho0 = 10)
E   -> E : fixed_in(k = 3), init = uniform(0, 0.5), learn = anti_hebb(eta = 0.5), bounds = [0, 0.4]
I   -> I : dense, init = uniform(0, 0.5), learn = vogels(eta = 0.5, rho0 = 10), normalize = 0.3
"""


def test_clip_at_zero_on_every_backend(ei, backend):
    """Rules that drive magnitudes below 0: they stop at exactly 0 (then bounds, then normalize),
    the same on every backend."""
    model = ei.load("anti.ei", ANTI)
    sim = model.compile(backend=backend, batch=2)
    reference = model.compile(backend="numpy", batch=2)
    inputs = np.random.default_rng(9).random((40, 2, 4)) + 0.5
    out = sim.run(inputs, record=["E.r", "I.r"])
    expected = reference.run(inputs, record=["E.r", "I.r"])
    signs = {"inp": 1, "E": 1, "I": -1}
    assert_dale(sim, signs, {name: q.source for name, q in sim.program.projections.items()}, "after learning")
    for name in ("inp->E", "E->I", "I->E"):
        w = sim.weights[name]
        assert (w == 0).sum() > w.size // 4, f"{name}: the rule should have driven many magnitudes to 0"
    assert sim.weights["E->E"].max() <= np.float32(0.4)
    rows = sim.weights["I->I"].sum(axis=1)
    assert np.allclose(rows[rows > 0], 0.3, rtol=1e-5)
    for key in expected:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-4, atol=1e-5)
    for name in sim.weights:
        np.testing.assert_allclose(sim.weights[name], reference.weights[name], rtol=1e-4, atol=1e-6)


DALE_OFF = """\
network free { dt = 1 ms; seed = 1; dale = off }
population inp : input(2)
population E : E(3) { tau = 2 ms }
inp -> E : dense, init = normal(0, 1)
E -> E : dense, init = constant(0.1), learn = anti_hebb(eta = 0.5)
"""


def test_dale_off_lets_weights_take_any_sign(ei, backend):
    model = ei.load("dale_off.ei", DALE_OFF)
    assert any(d.code.startswith("D") for d in model.warnings)  # the Dale findings became warnings
    sim = model.compile(backend=backend)
    assert (sim.weights["inp->E"] < 0).any()  # normal init is kept as drawn
    sim.run(np.ones((20, 1, 2)) * 3)
    assert (sim.weights["E->E"] < 0).any()  # learning is not clipped at 0


def test_dale_off_accepts_negative_assigned_weights(ei):
    sim = ei.load("dale_off.ei", DALE_OFF).compile(backend="numpy")
    sim.weights["E->E"] = -np.ones((3, 3)) + np.eye(3)
    assert (sim.weights["E->E"] < 0).any()
