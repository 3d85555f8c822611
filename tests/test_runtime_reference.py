"""The reference semantics (LANGUAGE.md section 5) checked against hand-computed cases, on every
backend: a leaky unit's analytic trajectory, delays that shift a signal by exactly their number
of steps, a zero-delay chain that settles within one step, the sign and gain of a delivery,
compartments with and without a gain, the activation functions, and noise whose statistics
scale with dt as specified.

Time convention (eigraph/compile/program.py): recorded index t holds the value after step t,
i.e. r[t + 1]; the input presented at index t is read in step t.
"""

from __future__ import annotations

import numpy as np
import pytest

EXACT = dict(rtol=1e-12, atol=1e-12)  # float64 models: the hand computation is the same arithmetic

# ----------------------------------------------------------------------------------------------
# A leaky unit: x_{n+1} = x_n + alpha * (-x_n + I + b)  =>  x_n = (I + b) + (x0 - I - b)(1 - alpha)^n
# ----------------------------------------------------------------------------------------------

LEAK = """\
network leak { dt = 1 ms; seed = 0; precision = float64 }

population inp : input(1)
population L   : E(1) { tau = 10 ms;  activation = linear; x0 = 2 }
population S   : E(1) { tau = 100 ms; activation = linear; x0 = 2 }
population T   : E(1) { tau = 200 ms; activation = linear; x0 = 2 }
population Lb  : E(1) { tau = 4 ms;   activation = linear; bias = 0.25 }

inp -> L  : one_to_one, init = constant(1)
inp -> S  : one_to_one, init = constant(1)
inp -> T  : one_to_one, init = constant(1)
inp -> Lb : one_to_one, init = constant(1)
"""


@pytest.fixture(scope="module")
def leak(ei):
    return ei.load("leak.ei", LEAK)


def test_leaky_unit_follows_the_euler_solution_exactly(leak, backend):
    sim = leak.compile(backend=backend)
    steps, drive = 300, 0.5
    out = sim.run(np.full((steps, 1, 1), drive), record=["L.x", "L.r", "S.x", "T.x", "Lb.x"])
    n = np.arange(1, steps + 1)  # index t holds x after t + 1 steps
    for name, alpha, x0, bias in [("L", 0.1, 2.0, 0.0), ("S", 0.01, 2.0, 0.0), ("T", 0.005, 2.0, 0.0),
                                  ("Lb", 0.25, 0.0, 0.25)]:
        fixed = drive + bias
        expected = fixed + (x0 - fixed) * (1 - alpha) ** n
        np.testing.assert_allclose(out[f"{name}.x"][:, 0, 0], expected, err_msg=name, **EXACT)
    np.testing.assert_array_equal(out["L.r"], out["L.x"])  # linear
    assert sim.read("Lb.x")[0, 0] == pytest.approx(0.75, abs=1e-12)  # settled at input + bias


def test_leaky_unit_approaches_the_continuous_solution(leak, backend):
    """For small alpha = dt / tau the Euler solution is close to x0 e^{-t/tau} + I (1 - e^{-t/tau}),
    with an error of first order in alpha."""
    sim = leak.compile(backend=backend)
    steps, drive = 300, 0.5
    out = sim.run(np.full((steps, 1, 1), drive), record=["S.x", "T.x"])
    t = np.arange(1, steps + 1) * 1e-3
    errors = {}
    for name, tau in [("S", 0.1), ("T", 0.2)]:
        exact = drive + (2.0 - drive) * np.exp(-t / tau)
        errors[name] = np.abs(out[f"{name}.x"][:, 0, 0] - exact).max()
        assert errors[name] < 0.01 * 1.5 * 0.2 / tau  # small next to the 1.5 jump
    # halving alpha halves the error (Euler is first order)
    assert 0.4 < errors["T"] / errors["S"] < 0.6


# ----------------------------------------------------------------------------------------------
# Delays shift a signal by exactly their number of steps
# ----------------------------------------------------------------------------------------------

DELAYS = """\
network shifts { dt = 1 ms; seed = 0; precision = float64 }

celltype Relay : excitatory { tau = 1 steps; activation = linear }

population inp : input(1)
population D0  : readout(1)
population D1  : readout(1)
population D3  : readout(1)
population D3r : readout(1)
population A   : Relay(1)
population B0  : Relay(1)
population B1  : Relay(1)
population B3  : Relay(1)

inp -> D0  : one_to_one, init = constant(1)
inp -> D1  : one_to_one, init = constant(1), delay = 1 steps
inp -> D3  : one_to_one, init = constant(1), delay = 3 steps
inp -> D3r : one_to_one, init = constant(1), delay = 2.6 ms
inp -> A   : one_to_one, init = constant(1)
A   -> B0  : one_to_one, init = constant(1), delay = 0 steps
A   -> B1  : one_to_one, init = constant(1)
A   -> B3  : one_to_one, init = constant(1), delay = 3 ms
"""


@pytest.fixture(scope="module")
def shifts(ei):
    return ei.load("shifts.ei", DELAYS)


def test_non_whole_delay_is_rounded_with_a_warning(shifts):
    assert any(d.code == "W503" for d in shifts.warnings)
    program = shifts.compile(backend="numpy").program
    assert program.projections["inp->D3r"].delay == 3
    assert program.projections["A->B1"].delay == 1  # the default between hidden populations
    assert program.projections["inp->D0"].delay == 0  # the default from inputs


@pytest.mark.parametrize("at", [0, 5])
def test_delays_shift_an_impulse_by_exactly_their_steps(shifts, backend, at):
    sim = shifts.compile(backend=backend, batch=2)
    steps = 16
    impulse = np.zeros((steps, 2, 1))
    impulse[at, 0, 0] = 1.0
    impulse[at + 1, 1, 0] = 2.0  # the second batch element: one step later, twice as large
    names = ["D0", "D1", "D3", "D3r", "A", "B0", "B1", "B3"]
    out = sim.run(impulse, record=[f"{n}.r" for n in names])
    for name, shift in [("D0", 0), ("D1", 1), ("D3", 3), ("D3r", 3), ("A", 0), ("B0", 0), ("B1", 1),
                        ("B3", 3)]:
        expected = np.zeros((steps, 2))
        expected[shift:] = impulse[:steps - shift, :, 0]
        np.testing.assert_array_equal(out[f"{name}.r"][:, :, 0], expected, err_msg=f"{name} (delay {shift})")


def test_delays_continue_across_calls(shifts, backend):
    """The ring buffers carry a delayed signal over from one run call to the next."""
    # batch 2, the kernel the test above compiled (each batch size is a Numba compile of its own);
    # the second batch element carries another signal, so the elements must not mix either
    sim = shifts.compile(backend=backend, batch=2)
    ramp = np.arange(1.0, 13.0)
    signal = np.stack([ramp, 20.0 - ramp], axis=1)[:, :, None]
    first = sim.run(signal[:2], record=["D3.r", "B3.r"])
    second = sim.run(signal[2:], record=["D3.r", "B3.r"])
    expected = np.concatenate([np.zeros((3, 2)), signal[:-3, :, 0]])
    for name in ("D3.r", "B3.r"):
        got = np.concatenate([first[name], second[name]])[:, :, 0]
        np.testing.assert_array_equal(got, expected, err_msg=name)


# ----------------------------------------------------------------------------------------------
# A zero-delay chain settles in one step, in topological (not declaration) order
# ----------------------------------------------------------------------------------------------

CHAIN = """\
# declared backwards on purpose: the step order must follow the zero-delay projections
network chain { seed = 0; precision = float64 }

celltype Step : excitatory { tau = 1 steps; activation = relu }
celltype Inh  : inhibitory { tau = 1 steps; activation = linear }

population Neg : readout(2)
population G   : readout(2)
population D   : Step(2)
population C   : Step(2)
population B   : Step(2)
population Q   : Inh(2)
population A   : Step(2)
population inp : input(2)

C   -> D   : one_to_one, init = constant(2), delay = 0 steps
B   -> C   : one_to_one, init = constant(2), delay = 0 steps
A   -> B   : one_to_one, init = constant(2), delay = 0 steps
inp -> A   : one_to_one, init = constant(2)
inp -> Q   : one_to_one, init = constant(1)
Q   -> Neg : one_to_one, init = constant(0.5), delay = 0 steps
inp -> G   : one_to_one, init = constant(1), gain = 3
"""


@pytest.fixture(scope="module")
def chain(ei):
    return ei.load("chain.ei", CHAIN)


def test_zero_delay_chain_settles_in_one_step(chain, backend):
    sim = chain.compile(backend=backend, batch=3)
    drive = np.random.default_rng(1).random((10, 3, 2))
    out = sim.run(drive, record=["A.r", "B.r", "C.r", "D.r"])
    for depth, name in enumerate("ABCD", start=1):
        np.testing.assert_allclose(out[f"{name}.r"], 2.0 ** depth * drive, err_msg=name, **EXACT)
    # a constant input: the end of the chain is at its fixed point after the first step
    sim.reset()
    out = sim.run(np.ones((4, 3, 2)), record=["D.r"])
    np.testing.assert_array_equal(out["D.r"], np.full((4, 3, 2), 16.0))


def test_sign_and_gain_of_a_delivery(chain, backend):
    """An inhibitory source delivers -gain * W @ r (W a magnitude); gain multiplies."""
    sim = chain.compile(backend=backend, batch=3)  # the kernel of the test above
    drive = np.random.default_rng(2).random((6, 3, 2))
    out = sim.run(drive, record=["Q.r", "Neg.r", "G.r"])
    np.testing.assert_allclose(out["Q.r"], drive, **EXACT)  # from an excitatory input: +
    np.testing.assert_allclose(out["Neg.r"], -0.5 * drive, **EXACT)  # from inhibitory Q: -
    np.testing.assert_allclose(out["G.r"], 3 * drive, **EXACT)
    assert sim.program.projections["inp->Q"].factor == 1
    assert sim.program.projections["Q->Neg"].factor == -1


# ----------------------------------------------------------------------------------------------
# Compartments: summed input held for rules; drives the soma only with COMPARTMENT_gain
# ----------------------------------------------------------------------------------------------

COMPARTMENTS = """\
network dendrites { dt = 1 ms; seed = 0; precision = float64 }

celltype WithGain : excitatory { tau = 5 ms; activation = linear; compartments = [apical, basal]; apical_gain = 0.5 }
celltype NoGain   : excitatory { tau = 5 ms; activation = linear; compartments = [apical] }

population top : input(2)
population P   : WithGain(2)
population Q   : NoGain(2)

top -> P.apical : dense, init = constant(1)
top -> P.basal  : one_to_one, init = constant(3)
top -> Q.apical : dense, init = constant(1)
"""


def test_compartment_gain(ei, backend):
    sim = ei.load("dendrites.ei", COMPARTMENTS).compile(backend=backend)
    steps = 25
    drive = np.random.default_rng(3).random((steps, 1, 2))
    out = sim.run(drive, record=["P.x", "P.apical", "P.basal", "Q.x", "Q.apical"])
    apical = np.repeat(drive.sum(axis=2, keepdims=True), 2, axis=2)  # dense, constant(1)
    np.testing.assert_allclose(out["P.apical"], apical, **EXACT)
    np.testing.assert_allclose(out["Q.apical"], apical, **EXACT)
    np.testing.assert_allclose(out["P.basal"], 3 * drive, **EXACT)
    # Q: a compartment without a gain does not drive the soma
    np.testing.assert_array_equal(out["Q.x"], np.zeros_like(out["Q.x"]))
    # P: x += alpha * (-x + 0.5 * apical); basal (no gain) is ignored
    x, alpha, expected = np.zeros(2), 0.2, []
    for t in range(steps):
        x = x + alpha * (-x + 0.5 * apical[t, 0])
        expected.append(x)
    np.testing.assert_allclose(out["P.x"][:, 0], np.array(expected), **EXACT)


# ----------------------------------------------------------------------------------------------
# Activation functions, r[0] = f(x0), readouts with tau = 1 steps
# ----------------------------------------------------------------------------------------------

ACTIVATIONS = """\
network functions { dt = 1 ms; seed = 4; precision = float64 }

celltype Unit : excitatory { tau = 2 ms }

population inp  : input(3)
population Relu : Unit(4) { activation = relu; bias = uniform(-2, 1) }
population Tanh : Unit(4) { activation = tanh; bias = uniform(-2, 1) }
population Sig  : Unit(4) { activation = sigmoid; bias = uniform(-2, 1) }
population Soft : Unit(4) { activation = softplus; bias = uniform(-2, 1) }
population Lin  : Unit(4) { activation = linear; bias = uniform(-2, 1) }
population Clip : Unit(4) { activation = clip01; bias = uniform(-1, 2) }
population Smax : Unit(4) { activation = softmax; bias = uniform(-2, 1); x0 = 0.3 }
population Tx0  : Unit(3) { activation = tanh; x0 = 0.7 }
population out  : readout(3)

inp -> Relu : dense, init = uniform(0, 1)
inp -> Tanh : dense, init = uniform(0, 1)
inp -> Sig  : dense, init = uniform(0, 1)
inp -> Soft : dense, init = uniform(0, 1)
inp -> Lin  : dense, init = uniform(0, 1)
inp -> Clip : dense, init = uniform(0, 1)
inp -> Smax : dense, init = uniform(0, 1)
Tx0 -> out  : one_to_one, init = constant(1)
"""

FUNCTIONS = {
    "Relu": lambda x: np.maximum(x, 0),
    "Tanh": np.tanh,
    "Sig": lambda x: 1 / (1 + np.exp(-x)),
    "Soft": lambda x: np.log1p(np.exp(x)),
    "Lin": lambda x: x,
    "Clip": lambda x: np.clip(x, 0, 1),
    "Smax": lambda x: np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True),  # over the neurons
}


def test_activation_functions(ei, backend):
    sim = ei.load("functions.ei", ACTIVATIONS).compile(backend=backend, batch=3)
    drive = 2 * np.random.default_rng(5).random((30, 3, 3))
    out = sim.run(drive, record=[f"{n}.{v}" for n in FUNCTIONS for v in "xr"])
    for name, f in FUNCTIONS.items():
        x, r = out[f"{name}.x"], out[f"{name}.r"]
        assert (x < 0).any() and (x > 0).any() or name in ("Smax",), f"{name}: x should cover both signs"
        np.testing.assert_allclose(r, f(x), rtol=1e-12, atol=1e-15, err_msg=name)
    np.testing.assert_allclose(out["Smax.r"].sum(axis=2), 1.0, rtol=1e-12)
    assert ((out["Clip.x"] > 1).any() and (out["Clip.x"] < 0).any())


def test_initial_rate_is_f_of_x0_and_readout_is_discrete(ei, backend):
    sim = ei.load("functions.ei", ACTIVATIONS).compile(backend=backend, batch=3)  # the kernel above
    assert sim.read("Tx0.r").shape[1] == 3  # (N, B)
    np.testing.assert_allclose(sim.read("Tx0.r"), np.tanh(0.7), **EXACT)  # r[0] = f(x0)
    smax = sim.read("Smax.r")
    np.testing.assert_allclose(smax, 0.25, **EXACT)  # softmax of equal x0 over 4 neurons
    out = sim.run(np.zeros((6, 3, 3)), record=["Tx0.x", "out.r", "out.x"])
    x = 0.7 * 0.5 ** np.arange(1, 7)  # alpha = 1/2, no input
    for b in range(3):
        np.testing.assert_allclose(out["Tx0.x"][:, b, 0], x, **EXACT)
        # the readout (tau = 1 steps: x = input) reads Tx0's rate of the step before (delay 1)
        np.testing.assert_allclose(out["out.r"][:, b, 0], np.tanh(np.concatenate([[0.7], x[:-1]])), **EXACT)
    np.testing.assert_array_equal(out["out.r"], out["out.x"])


# ----------------------------------------------------------------------------------------------
# Noise: x += alpha (-x) + sqrt(2 alpha) sigma xi. Increments have variance 2 alpha sigma^2; the
# stationary variance is 2 alpha sigma^2 / (1 - (1 - alpha)^2) = sigma^2 / (1 - alpha / 2),
# close to sigma^2 for any small dt; the lag-1 autocorrelation is 1 - alpha.
# ----------------------------------------------------------------------------------------------

OU = """\
network ou { dt = DT; seed = 3; precision = float64 }
population U : E(400) { tau = 20 ms; activation = linear; noise = 0.5 }
"""
SIGMA = 0.5
CHAINS = 400 * 25


@pytest.mark.parametrize("dt_ms", [1, 5])
def test_noise_statistics_scale_with_dt(ei, backend, dt_ms):
    model = ei.load(f"ou_{dt_ms}ms.ei", OU.replace("DT", f"{dt_ms} ms"))
    alpha = dt_ms / 20
    sim = model.compile(backend=backend, batch=25)
    first = sim.run(steps=1, record=["U.x"])["U.x"][0]
    # one step from x0 = 0: variance 2 alpha sigma^2
    increment = 2 * alpha * SIGMA ** 2
    assert abs(first.var() / increment - 1) < 0.06
    # stationary: run until (1 - alpha)^(2n) is negligible
    sim.run(steps=int(20 / alpha), record=[])
    out = sim.run(steps=2, record=["U.x"])["U.x"]
    stationary = SIGMA ** 2 / (1 - alpha / 2)
    assert stationary == pytest.approx(2 * alpha * SIGMA ** 2 / (1 - (1 - alpha) ** 2))
    for sample in out:
        assert abs(sample.mean()) < 4 * np.sqrt(stationary / CHAINS)
        assert abs(sample.var() / stationary - 1) < 0.06  # 4 standard errors (sqrt(2 / 10000) = 1.4%)
        assert abs(sample.var() / SIGMA ** 2 - 1) < 0.2  # about sigma^2 whatever dt
    lag1 = np.corrcoef(out[0].ravel(), out[1].ravel())[0, 1]
    assert lag1 == pytest.approx(1 - alpha, abs=0.03)


def test_noise_variance_tells_the_two_dt_apart(ei):
    """The formula's dt dependence is resolved: the two stationary variances differ by 11%."""
    variances = {}
    for dt_ms in (1, 5):
        sim = ei.load(f"ou_{dt_ms}ms.ei", OU.replace("DT", f"{dt_ms} ms")).compile(backend="numpy", batch=25)
        sim.run(steps=int(20 * 20 / dt_ms), record=[])
        variances[dt_ms] = sim.read("U.x").var()
    ratio = variances[5] / variances[1]
    assert ratio == pytest.approx((1 - 0.05 / 2) / (1 - 0.25 / 2), abs=0.05)
