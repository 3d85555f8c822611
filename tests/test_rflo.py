"""Learning signals for hidden neurons: ``post.fprime``, ``carry = error`` feedback projections, and
the prelude's ``rflo`` (Murray 2019) and ``eprop`` (Bellec et al. 2020) rules.

- A 2-unit tanh network with a 1-unit readout and an error feedback, 3 steps, every trace and weight
  worked out from the equations (plain floats, ``math.tanh``) and written out as numbers, on both
  backends.
- Numba against the NumPy reference, step by step, on a random E/I net (tanh E with a CSR E -> E,
  relu I) with rflo and eprop, batch 3, with steps without targets (the error is 0 there).
- ``post.fprime`` for every activation against its analytic derivative (NumPy; one Numba model).
- validate: R610 for rflo only above 64 MiB (the codes C304-C307 and N109 are models in tests/broken/).
- The YAML twin: ``carry: error`` round-trips.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eigraph.frontend.source import decode_source
from eigraph.model.load import check_source as _check_source
from eigraph.runtime.errors import InputError


def check_source(text: str, path: str):
    """The model and its diagnostics, as validate finds them (``model.diagnostics``)."""
    source, problems = decode_source(path, text.encode("utf-8"))
    assert source is not None, problems
    model, found = _check_source(source)
    assert model is not None, found
    model.diagnostics = found
    return model

# ------------------------------------------------------------------------------------------------
# rflo and eprop by hand
# ------------------------------------------------------------------------------------------------
HAND = """\
network hand { dt = 10 ms; precision = float64 }
celltype H : excitatory { tau = 20 ms; activation = tanh; compartments = [fb] }
population u   : input(1)
population h   : H(2)
population out : readout(1)
u -> h   : dense, learn = eprop(eta = 0.25, tau_e = 20 ms)
h -> h   : dense, autapses = true, learn = rflo(eta = 0.5, tau_e = 20 ms)
h -> out : dense
out -> h.fb : dense, init = normal(0, 1), carry = error
run { inputs = u; targets = out }
"""
W_IN = [[1.0], [0.5]]
W_REC = [[0.5, 0.2], [0.1, 0.4]]
W_OUT = [[1.0, 1.0]]
B_FB = [[1.0], [-0.5]]  # signed: an error feedback has no Dale sign
TARGETS = [0.5, 0.8, 0.3]


def by_hand():
    """The 3 steps from the equations, in plain floats (no eigraph, no arrays).

    Step n (n = 0, 1, 2) computes the state after n + 1 steps; x0 = 0, so r = tanh(0) = 0 and the
    error 0 at the start. With dt / tau = 10 / 20 = 0.5 and dt / tau_e = 0.5:
      fb_i    = B_i * err                       (delay 1: the error at the start of the step)
      x_i'    = x_i + 0.5 * (-x_i + Win_i * u + sum_j W_ij r_j),  r_i' = tanh(x_i')
      out'    = sum_j Wout_j r_j,  err' = target_n - out'   (readout: tau = 1 step, delay 1)
      fp_i    = 1 - tanh(x_i')^2
      p_ij   += 0.5 * (fp_i * r_j - p_ij)        rflo's trace on h -> h (pre: r, delay 1)
      W_ij   += 0.5 * fb_i * p_ij                dw = eta * sign * post.fb * p, sign = +1
      pbar   += 0.5 * (u - pbar)                 eprop's trace on u -> h (pre: u = 1, delay 0)
      Win_i  += 0.25 * fb_i * fp_i * pbar        dw = eta * sign * post.fb * post.fprime * pbar
    then the Dale clip at 0 (never reached here)."""
    x, r, err = [0.0, 0.0], [0.0, 0.0], 0.0
    w_in, w = [row[0] for row in W_IN], [row[:] for row in W_REC]
    p, pbar = [[0.0, 0.0], [0.0, 0.0]], 0.0
    steps = []
    for n in range(3):
        fb = [B_FB[i][0] * err for i in range(2)]
        x = [x[i] + 0.5 * (-x[i] + w_in[i] * 1.0 + w[i][0] * r[0] + w[i][1] * r[1]) for i in range(2)]
        out = W_OUT[0][0] * r[0] + W_OUT[0][1] * r[1]
        fp = [1 - math.tanh(v) ** 2 for v in x]
        p = [[p[i][j] + 0.5 * (fp[i] * r[j] - p[i][j]) for j in range(2)] for i in range(2)]
        w = [[max(w[i][j] + 0.5 * fb[i] * p[i][j], 0.0) for j in range(2)] for i in range(2)]
        pbar = pbar + 0.5 * (1.0 - pbar)
        w_in = [max(w_in[i] + 0.25 * fb[i] * fp[i] * pbar, 0.0) for i in range(2)]
        r, err = [math.tanh(v) for v in x], TARGETS[n] - out
        steps.append({"x": x, "fb": fb, "p": p, "W": w, "pbar": pbar, "Win": w_in, "out": out})
    return steps


# The same numbers written out (from by_hand, checked against it below): step 0 has no presynaptic
# rate and no error yet (the traces and weights move from step 1 on).
EXPECTED = [
    {"x": [0.5, 0.25], "fb": [0.0, 0.0], "p": [[0.0, 0.0], [0.0, 0.0]], "W": W_REC, "pbar": 0.5,
     "Win": [1.0, 0.5], "out": 0.0},
    {"x": [0.8900211555553733, 0.4470895903437423], "fb": [0.5, -0.25],
     "p": [[0.11412077737361002, 0.06048316472934985], [0.1903961128807571, 0.10090852624929363]],
     "W": [[0.5285301943434025, 0.21512079118233748], [0.07620048588990537, 0.38738643421883834]],
     "pbar": 0.75, "Win": [1.0463035085830248, 0.4613742201471046], "out": 0.7070358196637189},
    {"x": [1.2012836120897012, 0.5625916006451755], "fb": [0.09296418033628118, -0.04648209016814059],
     "p": [[0.16532463156116017, 0.09408328139947736], [0.3584191230853495, 0.2056715321898372]],
     "W": [[0.536214828774643, 0.21949397875166254], [0.06787045089128582, 0.3826064128667045]],
     "pbar": 0.875, "Win": [1.0524931049907418, 0.4538498883581135], "out": 1.1309078913094126},
]


def test_the_written_numbers_are_the_equations():
    for step, (got, want) in enumerate(zip(by_hand(), EXPECTED)):
        for key in want:
            np.testing.assert_allclose(np.array(got[key], dtype=float), np.array(want[key], dtype=float),
                                       rtol=1e-14, atol=1e-15, err_msg=f"step {step}: {key}")


def test_rflo_and_eprop_by_hand(ei, backend):
    model = ei.load("rflo_hand.ei", HAND)
    assert not model.errors, model.errors
    sim = model.compile(backend=backend, batch=1)
    sim.weights["u->h"] = np.array(W_IN)
    sim.weights["h->h"] = np.array(W_REC)
    sim.weights["h->out"] = np.array(W_OUT)
    sim.weights["out->h.fb"] = np.array(B_FB)
    for step, want in enumerate(EXPECTED):
        out = sim.run({"u": np.ones((1, 1, 1))}, targets={"out": np.full((1, 1, 1), TARGETS[step])},
                      record=["h.x", "h.fb", "out.r"])
        close = dict(rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out["h.x"][0, 0], want["x"], **close, err_msg=f"step {step}: x")
        np.testing.assert_allclose(out["h.fb"][0, 0], want["fb"], **close, err_msg=f"step {step}: fb")
        np.testing.assert_allclose(out["out.r"][0, 0], [want["out"]], **close, err_msg=f"step {step}: out")
        np.testing.assert_allclose(sim.traces["h->h:p"][..., 0], want["p"], **close, err_msg=f"step {step}: p")
        np.testing.assert_allclose(sim.weights["h->h"], want["W"], **close, err_msg=f"step {step}: W")
        np.testing.assert_allclose(sim.traces["u->h:pbar"][:, 0], [want["pbar"]], **close)
        np.testing.assert_allclose(sim.weights["u->h"][:, 0], want["Win"], **close, err_msg=f"step {step}: Win")
    # the error feedback's weights are fixed and keep their sign; the error is kept as r is
    np.testing.assert_array_equal(sim.weights["out->h.fb"], np.array(B_FB))
    np.testing.assert_allclose(sim.read("out.err")[:, 0], [TARGETS[2] - EXPECTED[2]["out"]], rtol=1e-12)


def test_learning_gated_per_step_by_hand(ei, backend):
    """``learn`` per step (how eigraph run trains where the target counts): the traces integrate on
    every step, the weights change and the error counts only on the steps marked. The 3 steps in
    one call with learn = [on, on, off]: the weights are those after step 1 (EXPECTED[1]), the
    traces those after step 2 (EXPECTED[2]: they ran on), and the error after step 2 is 0."""
    model = ei.load("rflo_hand.ei", HAND)
    sim = model.compile(backend=backend, batch=1)
    sim.weights["u->h"] = np.array(W_IN)
    sim.weights["h->h"] = np.array(W_REC)
    sim.weights["h->out"] = np.array(W_OUT)
    sim.weights["out->h.fb"] = np.array(B_FB)
    out = sim.run({"u": np.ones((3, 1, 1))}, targets={"out": np.array(TARGETS).reshape(3, 1, 1)},
                  learn=np.array([True, True, False]), record=["h.x", "h.fb"])
    close = dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["h.x"][:, 0], [e["x"] for e in EXPECTED], **close)
    np.testing.assert_allclose(out["h.fb"][:, 0], [e["fb"] for e in EXPECTED], **close)
    np.testing.assert_allclose(sim.weights["h->h"], EXPECTED[1]["W"], **close)
    np.testing.assert_allclose(sim.weights["u->h"][:, 0], EXPECTED[1]["Win"], **close)
    np.testing.assert_allclose(sim.traces["h->h:p"][..., 0], EXPECTED[2]["p"], **close)
    np.testing.assert_allclose(sim.traces["u->h:pbar"][:, 0], [EXPECTED[2]["pbar"]], **close)
    np.testing.assert_array_equal(sim.read("out.err"), 0.0)


def test_learn_per_step_must_be_one_flag_per_step(ei):
    sim = ei.load("rflo_hand.ei", HAND).compile(backend="numpy", batch=1)
    for bad in (np.ones(2, dtype=bool), np.array([0, 2, 1]), np.array([0.5, 1, 1])):
        with pytest.raises(InputError, match=r"learn must be True, False or one boolean per step \(3,\)"):
            sim.run({"u": np.ones((3, 1, 1))}, targets={"out": np.zeros((3, 1, 1))}, learn=bad)


def test_error_is_zero_without_a_target(ei):
    """On steps without targets the feedback carries 0, and no learning happens."""
    sim = ei.load("rflo_hand.ei", HAND).compile(backend="numpy", batch=1)
    sim.weights["h->out"] = np.array(W_OUT)
    sim.weights["out->h.fb"] = np.array(B_FB)
    sim.run({"u": np.ones((2, 1, 1))}, targets={"out": np.full((2, 1, 1), 0.5)})
    assert np.abs(sim.read("out.err")).max() > 0.1
    out = sim.run({"u": np.ones((2, 1, 1))}, learn=False, record=["h.fb"])
    assert np.abs(out["h.fb"][0]).max() > 0.1  # the error of the last step with a target, one step late
    np.testing.assert_array_equal(out["h.fb"][1], 0.0)
    np.testing.assert_array_equal(sim.read("out.err"), 0.0)


def test_program_lists_the_error_feedback(ei):
    sim = ei.load("rflo_hand.ei", HAND).compile(backend="numpy", batch=1)
    text = sim.program.describe()
    assert "out->h.fb: h.fb += 1 * W (dense, 2 synapses) @ err_out[n + 1 - 1]" in text
    assert "h->h: rule rflo on step (per-synapse kernel)" in text
    assert "u->h: rule eprop on step (matrix products)" in text


# ------------------------------------------------------------------------------------------------
# Numba against the NumPy reference on a random E/I network
# ------------------------------------------------------------------------------------------------
RANDOM = """\
network random_ei { dt = 10 ms; seed = 5 }
celltype Eh : excitatory { tau = 20 ms; activation = tanh; compartments = [fb] }
celltype Ih : inhibitory { tau = 20 ms; activation = relu; compartments = [fb] }
population u   : input(3)
population E   : Eh(130) { bias = uniform(-0.3, 0.3) }
population I   : Ih(10)
population out : readout(2)
u -> E   : dense, init = halfnormal(0.5)
u -> I   : dense, init = halfnormal(0.5)
E -> E   : sparse(p = 0.05), init = halfnormal(0.3), learn = rflo(eta = 0.2, tau_e = 20 ms)
E -> I   : dense, init = halfnormal(0.1), learn = rflo(eta = 0.2, tau_e = 30 ms)
I -> E   : dense, init = halfnormal(0.2), learn = eprop(eta = 0.2, tau_e = 30 ms)
E -> out : dense, init = halfnormal(0.1), learn = delta(eta = 0.05)
out -> E.fb : dense, init = normal(0, 1), carry = error
out -> I.fb : dense, init = normal(0, 1), carry = error, delay = 0 steps
run { inputs = u; targets = out; batch = 3 }
"""


def test_numba_matches_numpy_step_by_step(ei):
    model = ei.load("rflo_random.ei", RANDOM)
    assert not model.errors, model.errors
    sims = {name: model.compile(backend=name, batch=3) for name in ("numpy", "numba")}
    assert sims["numpy"].program.projections["E->E"].weights.is_sparse  # the CSR kernel
    rng = np.random.default_rng(1)
    steps = 10
    inputs = rng.random((steps, 3, 3))
    targets = rng.uniform(-1, 1, (steps, 3, 2))
    names = ["E->E", "E->I", "I->E", "E->out"]
    start = {name: sims["numpy"].weights[name].copy() for name in names}
    for t in range(steps):
        given = t % 4 != 2  # every fourth step without targets, without learning: the error is 0
        got = {}
        for name, sim in sims.items():
            out = sim.run({"u": inputs[t:t + 1]}, targets={"out": targets[t:t + 1]} if given else None,
                          learn=given, record=["E.r", "I.r", "E.fb", "I.fb", "out.r"])
            got[name] = (out, {n: sim.weights[n].copy() for n in names}, {k: v.copy() for k, v in sim.traces.items()},
                         sim.read("out.err").copy())
        (o1, w1, tr1, e1), (o2, w2, tr2, e2) = got["numpy"], got["numba"]
        for key in o1:
            np.testing.assert_allclose(o2[key], o1[key], rtol=2e-4, atol=2e-6, err_msg=f"step {t}: {key}")
        for key in w1:
            np.testing.assert_allclose(w2[key], w1[key], rtol=2e-4, atol=2e-6, err_msg=f"step {t}: {key}")
        for key in tr1:
            np.testing.assert_allclose(tr2[key], tr1[key], rtol=2e-4, atol=2e-6, err_msg=f"step {t}: {key}")
        np.testing.assert_allclose(e2, e1, rtol=2e-4, atol=2e-6)
        if not given:
            np.testing.assert_array_equal(e1, 0.0)
    for name in names:  # every rule did change its weights
        assert np.abs(sims["numpy"].weights[name] - start[name]).max() > 1e-4, name
    # one call with learning gated per step: the traces run on, the weights change where marked
    gate = np.array([1, 1, 0, 0, 1, 0, 1, 0], dtype=bool)
    more = rng.random((gate.size, 3, 3))
    given = rng.uniform(-1, 1, (gate.size, 3, 2))
    got = {}
    for name, sim in sims.items():
        out = sim.run({"u": more}, targets={"out": given}, learn=gate, record=["E.r", "E.fb", "I.fb", "out.r"])
        got[name] = (out, {n: sim.weights[n].copy() for n in names}, {k: v.copy() for k, v in sim.traces.items()})
    for part in range(3):
        for key in got["numpy"][part]:
            np.testing.assert_allclose(got["numba"][part][key], got["numpy"][part][key], rtol=2e-4, atol=2e-6,
                                       err_msg=f"gated: {key}")
    np.testing.assert_array_equal(sims["numpy"].read("out.err"), 0.0)  # the last step is not marked
    # steps 2 and 3 are not marked: their errors are 0, and E.fb (delay 1) reads them one step late
    np.testing.assert_array_equal(got["numpy"][0]["E.fb"][3:5], 0.0)
    assert np.abs(got["numpy"][0]["E.fb"][2]).max() > 1e-3


# ------------------------------------------------------------------------------------------------
# post.fprime
# ------------------------------------------------------------------------------------------------
ACTIVATIONS = ("relu", "tanh", "sigmoid", "softplus", "linear", "clip01")


def analytic(name: str, x: np.ndarray) -> np.ndarray:
    s = 1 / (1 + np.exp(-x))
    return {"relu": (x > 0).astype(float), "tanh": 1 / np.cosh(x) ** 2, "sigmoid": np.exp(-x) / (1 + np.exp(-x)) ** 2,
            "softplus": s, "linear": np.ones_like(x), "clip01": ((x > 0) & (x < 1)).astype(float)}[name]


FPRIME = "network fprime { dt = 10 ms; precision = float64 }\npopulation u : input(1)\n" + "".join(
    f"celltype C{a} : excitatory {{ tau = 1 steps; activation = {a} }}\n"
    f"population P{a} : C{a}(12) {{ bias = uniform(-3, 3) }}\n"
    f"u -> P{a} : dense, init = constant(0.5), learn = probe\n" for a in ACTIVATIONS) + """\
# d takes post.fprime exactly in one Euler step (dt / dt = 1); dw is 0
rule probe(eta = 0) {
    d' = (post.fprime - d) / dt
    dw = eta * pre * d
}
"""


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_fprime_of_every_activation(ei, backend_name):
    model = ei.load("fprime.ei", FPRIME)
    assert not model.errors, model.errors
    sim = model.compile(backend=backend_name, batch=2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        sim.run({"u": rng.random((1, 2, 1))})
        for a in ACTIVATIONS:
            x = sim.read(f"P{a}.x")
            want = analytic(a, x)
            assert x.min() < 0 < x.max()
            np.testing.assert_allclose(sim.traces[f"u->P{a}:d"], want, rtol=1e-12, atol=1e-15, err_msg=a)
            np.testing.assert_allclose(sim.read(f"P{a}.fprime"), want, rtol=1e-12, atol=1e-15, err_msg=a)


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_fprime_is_recorded_by_the_reference_and_refused_elsewhere(ei, backend_name):
    """The Numba kernel records rates, states and compartments: recording POP.fprime there is
    refused with a message (never silently wrong data); the reference records it step by step."""
    from eigraph.runtime.errors import InputError

    sim = ei.load("fprime.ei", FPRIME).compile(backend=backend_name, batch=2)
    u = np.random.default_rng(1).random((2, 2, 1))
    if backend_name == "numpy":
        out = sim.run({"u": u}, record=["Ptanh.fprime", "Ptanh.x"])
        np.testing.assert_allclose(out["Ptanh.fprime"], analytic("tanh", out["Ptanh.x"]), rtol=1e-12)
    else:
        with pytest.raises(InputError, match="Ptanh.fprime cannot be recorded .* numba backend"):
            sim.run({"u": u}, record=["Ptanh.fprime"])


def test_fprime_at_the_kinks():
    """relu's derivative is 0 at x = 0; clip01's is 0 at 0 and at 1."""
    from eigraph.backends.numpy_ref import derivative

    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(derivative("relu", x), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(derivative("clip01", x), [0, 0, 1, 0, 0])


# ------------------------------------------------------------------------------------------------
# validate and the YAML twin
# ------------------------------------------------------------------------------------------------
def test_r610_for_rflo_only_above_the_threshold():
    """rflo's trace is per synapse and batch element: batch x synapses x 4 bytes. 16 x 2000 x 1999
    x 4 = 244 MiB is reported with those numbers; 16 x 1000 x 999 x 4 = 61 MiB is not."""
    def model(n):
        return (f"network b {{ dt = 1 ms }}\ncelltype Ef : excitatory {{ tau = 10 ms; compartments = [fb] }}\n"
                f"population inp : input(10)\npopulation E : Ef({n})\ninp -> E : dense\n"
                f"E -> E : dense, learn = rflo(eta = 1e-3)\nrun {{ batch = 16 }}\n")

    big = check_source(model(2000), "big.ei")
    found = [d for d in big.diagnostics if d.code == "R610"]
    assert len(found) == 1
    assert "16 batch elements x 3,998,000 synapses x 4 bytes = 244.0 MiB" in found[0].message
    assert "eprop" in found[0].hint
    small = check_source(model(1000), "small.ei")
    assert not small.diagnostics, small.diagnostics
    eprop = check_source(model(2000).replace("rflo", "eprop"), "eprop.ei")
    assert not eprop.diagnostics, eprop.diagnostics  # its trace is per presynaptic neuron


def test_error_feedback_is_exempt_from_dale_only():
    """carry = error takes signed weights from an unsigned readout onto a hidden population; the same
    projection carrying the rate is a Dale error (D202: an unsigned source), and from a readout made
    excitatory its normal init is one (D203: negative magnitudes)."""
    assert not check_source(HAND, "hand.ei").diagnostics
    rate = check_source(HAND.replace(", carry = error", ""), "hand.ei")
    assert [d.code for d in rate.diagnostics] == ["D202"]
    signed = HAND.replace("population out : readout(1)", "population out : readout(1) { sign = excitatory }")
    assert not check_source(signed, "hand.ei").diagnostics
    rate = check_source(signed.replace(", carry = error", ""), "hand.ei")
    assert [d.code for d in rate.diagnostics] == ["D203"]


def test_carry_error_round_trips_through_yaml():
    from test_roundtrip import assert_round_trips

    from eigraph.frontend.emit import to_yaml

    assert_round_trips(HAND, "hand.ei")
    assert_round_trips(RANDOM, "random.ei")
    model = check_source(HAND, "hand.ei")
    text = to_yaml(model.document)
    assert "carry: error" in text
    back = check_source(text, "hand.yaml")
    assert not back.errors
    assert back.projections["out->h.fb"].carry == "error" and back.graph.edges["out", "h", "out->h.fb"]["sign"] == 0
