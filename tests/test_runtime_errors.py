"""Bad input gives clear errors that name the projection or population at fault: weights files
of the wrong shape or with NaN (caught when the model is loaded), inputs, targets, rewards and
weights of the wrong shape passed to the simulator. A run whose state becomes NaN or infinite
stops with a message naming the population and the step, the same on every backend, and the
state before that step is still readable.
"""

from __future__ import annotations

import numpy as np
import pytest

import eigraph
from eigraph.runtime import simulator as simulator_module
from eigraph.runtime.errors import InputError, SimulationError

# ----------------------------------------------------------------------------------------------
# Weights and mask files (checked by eigraph.load)
# ----------------------------------------------------------------------------------------------

FILES = """\
network files { dt = 1 ms; seed = 1 }
population inp : input(4)
population E   : E(5)
population I   : I(3)
inp -> E : weights("w.npy")
E   -> I : mask("m.npy"), init = uniform(0, 1)
I   -> E : dense
"""


def load_error(ei, tmp_path, arrays) -> eigraph.ModelError:
    with pytest.raises(eigraph.ModelError) as info:
        ei.load("files.ei", FILES, arrays, folder=tmp_path)
    return info.value


def good_arrays():
    return {"w.npy": np.full((5, 4), 0.1), "m.npy": np.ones((3, 5), dtype=bool)}


def test_good_files_load(ei, tmp_path):
    sim = ei.load("files.ei", FILES, good_arrays(), folder=tmp_path).compile(backend="numpy")
    np.testing.assert_allclose(sim.weights["inp->E"], 0.1, rtol=1e-7)


@pytest.mark.parametrize("file, shape, projection", [("w.npy", (4, 5), "inp->E"), ("w.npy", (5,), "inp->E"),
                                                     ("m.npy", (5, 3), "E->I")])
def test_file_of_the_wrong_shape(ei, tmp_path, file, shape, projection):
    arrays = good_arrays()
    arrays[file] = np.ones(shape, dtype=arrays[file].dtype)
    error = load_error(ei, tmp_path, arrays)
    codes = {d.code for d in error.diagnostics}
    assert codes & {"T404", "F011"}, codes
    found = [d for d in error.diagnostics if d.code in ("T404", "F011")]
    assert any(projection in d.message for d in found), [d.message for d in found]
    if len(shape) == 2:
        (d,) = [d for d in found if d.code == "T404"]
        assert str(shape) in d.message and "(post x pre)" in d.message
        assert d.span is not None and d.span.line == {"inp->E": 5, "E->I": 6}[projection]
    assert projection in str(error)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_in_a_weights_file(ei, tmp_path, bad):
    arrays = good_arrays()
    arrays["w.npy"][2, 1] = bad
    error = load_error(ei, tmp_path, arrays)
    (d,) = [d for d in error.diagnostics if d.code == "T410"]
    assert "inp->E" in d.message
    assert d.span is not None and d.span.line == 5


def test_negative_value_in_a_weights_file_from_a_signed_source(ei, tmp_path):
    arrays = good_arrays()
    arrays["w.npy"][0, 0] = -0.5
    error = load_error(ei, tmp_path, arrays)
    dale = [d for d in error.diagnostics if d.code.startswith("D")]
    assert dale and any("inp->E" in d.message for d in dale), [d.message for d in error.diagnostics]


def test_missing_weights_file(ei, tmp_path):
    arrays = good_arrays()
    del arrays["w.npy"]
    error = load_error(ei, tmp_path, arrays)
    assert any(d.code == "F010" and "inp->E" in d.message for d in error.diagnostics)


# ----------------------------------------------------------------------------------------------
# Inputs, targets, rewards, weights and names passed to the simulator
# ----------------------------------------------------------------------------------------------

TWO_INPUTS = """\
network two { dt = 1 ms; seed = 1 }
population stim : input(3)
population ctx  : input(2)
population E    : E(4)
population out  : readout(2)
stim -> E   : dense
ctx  -> E   : dense
E    -> E   : sparse(p = 0.5)
E    -> out : dense, learn = delta(eta = 0.1)
run { inputs = [stim, ctx]; targets = out }
"""


@pytest.fixture(scope="module")
def two(ei):
    return ei.load("two_inputs.ei", TWO_INPUTS)


@pytest.mark.parametrize("shape", [(10, 2, 4), (10, 3, 3), (10, 3), (3,), (10, 1, 2, 3)])
def test_inputs_of_the_wrong_shape(two, backend, shape):
    sim = two.compile(backend=backend, batch=2)
    with pytest.raises(InputError) as info:
        sim.run({"stim": np.zeros(shape), "ctx": np.zeros((10, 2, 2))})
    message = str(info.value)
    assert "'stim'" in message and "(T, 2, 3)" in message and str(shape) in message
    assert sim.n == 0


def test_other_input_errors(two, backend):
    sim = two.compile(backend=backend, batch=2)
    good = {"stim": np.zeros((5, 2, 3)), "ctx": np.zeros((5, 2, 2))}
    with pytest.raises(InputError, match="stim.*ctx|2 input populations"):
        sim.run(np.zeros((5, 2, 3)))  # an array for a model with two input populations
    with pytest.raises(InputError, match="'E' is not an input population"):
        sim.run({**good, "E": np.zeros((5, 2, 4))})
    with pytest.raises(InputError, match="different numbers of steps"):
        sim.run({"stim": np.zeros((5, 2, 3)), "ctx": np.zeros((6, 2, 2))})
    with pytest.raises(InputError, match="steps = 7"):
        sim.run(good, steps=7)
    bad = {"stim": np.zeros((5, 2, 3)), "ctx": np.zeros((5, 2, 2))}
    bad["ctx"][3, 1, 0] = np.nan
    with pytest.raises(InputError, match="'ctx'.*NaN"):
        sim.run(bad)
    with pytest.raises(InputError, match="steps"):
        sim.run(None)
    with pytest.raises(InputError, match="steps"):
        sim.run(steps=-1)
    with pytest.raises(InputError, match="'out'.*\\(5, 2, 2\\)"):
        sim.run(good, targets={"out": np.zeros((5, 2, 3))})
    with pytest.raises(InputError, match="'stim'"):
        sim.run(good, targets={"stim": np.zeros((5, 2, 3))})
    with pytest.raises(InputError, match="reward"):
        sim.run(good, targets={"out": np.zeros((5, 2, 2))}, reward=np.zeros((4, 2)))
    with pytest.raises(KeyError, match="E.y|cannot read"):
        sim.run(good, record=["E.y"])
    with pytest.raises(KeyError, match="no population 'F'"):
        sim.run(good, record=["F.r"])
    assert sim.n == 0  # nothing ran
    sim.run(good, targets={"out": np.zeros((5, 2, 2))})
    assert sim.n == 5


def test_weight_assignment_errors(two, backend):
    sim = two.compile(backend=backend, batch=2)  # the kernel of the tests above (a compile per batch)
    with pytest.raises(InputError, match="E->out.*\\(2, 4\\).*\\(4, 2\\)"):
        sim.weights["E->out"] = np.zeros((4, 2))
    with pytest.raises(InputError, match="E->out.*NaN"):
        sim.weights["E->out"] = np.full((2, 4), np.nan)
    with pytest.raises(InputError, match="E->E.*negative"):
        sim.weights["E->E"] = -sim.weights["E->E"]
    with pytest.raises(InputError, match="E->E.*sparse"):
        sim.weights["E->E"] = np.ones((4, 4))
    with pytest.raises(KeyError, match="did you mean 'E->out'"):
        sim.weights["E->outt"]
    before = sim.weights["E->E"]
    sim.weights["E->E"] = before * 2
    np.testing.assert_allclose(sim.weights["E->E"], before * 2)


def test_assignment_outside_the_synapses_of_a_dense_projection(ei, backend):
    """Dense storage with absent synapses (a mask file; a self-projection without autapses)."""
    sim = ei.load("holes.ei", """\
network holes { dt = 1 ms; seed = 1 }
population inp : input(3)
population E : E(3)
inp -> E : mask("holes.npy")
E -> E : dense
""", {"holes.npy": np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool)}).compile(backend=backend)
    for name in ("inp->E", "E->E"):
        with pytest.raises(InputError, match=f"{name}.*no synapse"):
            sim.weights[name] = np.ones((3, 3))
    sim.weights["E->E"] = 1 - np.eye(3)
    out = sim.run(np.zeros((2, 1, 3)), record=["E.x"])  # the assigned weights are used
    assert np.isfinite(out["E.x"]).all()
    np.testing.assert_array_equal(sim.weights["E->E"], 1 - np.eye(3))


def test_bad_compile_arguments(two):
    with pytest.raises(InputError, match="unknown backend 'cuda'"):
        two.compile(backend="cuda")
    with pytest.raises(InputError, match="batch"):
        two.compile(backend="numpy", batch=0)


def test_spectral_radius_without_recurrence_is_a_clear_error(ei):
    model = ei.load("no_recurrence.ei", """\
network flat { dt = 1 ms; spectral_radius = 1.2 }
population inp : input(2)
population E : E(3)
inp -> E : dense
""")
    with pytest.raises(Exception, match="spectral_radius") as info:
        model.compile(backend="numpy")
    assert "Traceback" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# A run that blows up
# ----------------------------------------------------------------------------------------------

BLOWUP = """\
# Run: a linear population with a huge positive recurrent gain, overflowing float32 after a few
# steps. Calm comes first in the step and reads Run one step late, so Run fails first.
network blowup { dt = 1 ms; seed = 3; precision = float32 }
population inp  : input(2)
population Calm : E(3) { tau = 2 ms; noise = 0.01 }
population Run  : E(4) { tau = 2 ms; activation = linear; noise = 0.01 }
population out  : readout(2)
inp  -> Calm : dense, init = constant(1)
inp  -> Run  : dense, init = constant(1)
Run  -> Run  : dense, init = constant(1), autapses = true, gain = 1e5
Run  -> Calm : dense, init = constant(1e-3)
Calm -> out  : dense
"""
STEPS = 30


@pytest.fixture(scope="module")
def blowup(ei):
    return ei.load("blowup.ei", BLOWUP)


def blow(sim, inputs):
    with pytest.raises(SimulationError) as info, np.errstate(all="ignore"):
        sim.run(inputs, record=["Run.x", "Calm.r", "out.r"])
    return info.value


@pytest.fixture(scope="module")
def failures(blowup):
    """The failure on every backend, to compare them."""
    inputs = np.ones((STEPS, 2, 2))
    return {b: blow(blowup.compile(backend=b, batch=2), inputs) for b in ("numpy", "numba")}


def test_blowup_names_population_and_step(blowup, backend, failures):
    error = failures[backend]
    assert error.population == "Run"
    assert 2 < error.step < STEPS
    message = str(error)
    assert "'Run'" in message and f"step {error.step}" in message and "NaN or infinite" in message
    assert f"t = {error.step}" in message  # dt = 1 ms: the time in ms


def test_blowup_is_the_same_on_every_backend(failures):
    assert failures["numba"].step == failures["numpy"].step
    assert failures["numba"].population == failures["numpy"].population
    for key, value in failures["numpy"].records.items():
        np.testing.assert_allclose(failures["numba"].records[key], value, rtol=1e-4, err_msg=key)


def test_state_before_the_failing_step_is_readable(blowup, backend, failures):
    step = failures[backend].step
    inputs = np.ones((STEPS, 2, 2))
    sim = blowup.compile(backend=backend, batch=2)
    error = blow(sim, inputs)
    assert error.step == step and sim.n == step
    # the state is the one after exactly `step` steps
    clean = blowup.compile(backend=backend, batch=2)
    good = clean.run(inputs[:step], record=["Run.x", "Calm.r", "out.r"])
    for name in ("Run.x", "Run.r", "Calm.x", "Calm.r", "out.r"):
        value = sim.read(name)
        assert np.isfinite(value).all(), name
        np.testing.assert_array_equal(value, clean.read(name), err_msg=name)
    for key, value in sim.state.items():
        np.testing.assert_array_equal(value, clean.state[key], err_msg=key)
    # what was recorded before the failure is kept
    assert set(error.records) == {"Run.x", "Calm.r", "out.r"}
    for key, value in error.records.items():
        assert value.shape == (step, 2, good[key].shape[2])
        np.testing.assert_array_equal(value, good[key], err_msg=key)


def test_blowup_in_a_later_call(blowup, backend, failures):
    step = failures[backend].step
    inputs = np.ones((STEPS, 2, 2))
    sim = blowup.compile(backend=backend, batch=2)
    sim.run(inputs[:step - 1])
    error = blow(sim, inputs[step - 1:])
    assert (error.step, error.population) == (step, "Run")
    assert sim.n == step
    assert error.records["Run.x"].shape[0] == 1  # the one step of this call that completed


def test_blowup_in_a_later_noise_chunk(blowup, backend, failures, monkeypatch):
    """Noise is drawn in chunks of steps: a failure in a later chunk reports the right step."""
    step = failures[backend].step
    per_step = (3 + 4) * 2 * 4  # noisy neurons x batch x float32
    monkeypatch.setattr(simulator_module, "NOISE_CHUNK_BYTES", per_step * 2)
    sim = blowup.compile(backend=backend, batch=2)
    error = blow(sim, np.ones((STEPS, 2, 2)))
    assert error.population == "Run"
    assert sim.n == error.step
    assert error.step == step
    np.testing.assert_array_equal(error.records["Run.x"], failures[backend].records["Run.x"])


def test_nan_from_an_activation(ei, backend):
    """An overflow in the very first step: the population is named, step 0, the initial state kept."""
    model = ei.load("nan_bias.ei", """\
network nanbias { dt = 1 ms; seed = 1 }
population inp : input(1)
population A : E(2) { tau = 2 ms }
population B : E(2) { tau = 2 ms; activation = linear }
inp -> A : dense, init = constant(1e30)
A -> B : dense, init = constant(1e30), delay = 0 steps
""")
    sim = model.compile(backend=backend)
    with pytest.raises(SimulationError) as info, np.errstate(all="ignore"):
        sim.run(np.full((3, 1, 1), 1e30))
    assert (info.value.step, info.value.population) == (0, "A")
    assert sim.n == 0
    assert np.isfinite(sim.read("A.x")).all() and np.isfinite(sim.read("B.x")).all()


# ----------------------------------------------------------------------------------------------
# A rule that drives its weights to infinity
# ----------------------------------------------------------------------------------------------

RUNAWAY_RULE = """\
network runaway_rule { dt = 1 ms; seed = 0; precision = float32 }
population inp : input(1)
population E   : E(1) { activation = linear; tau = 2 ms }
population I   : I(1) { tau = 2 ms }
E   -> E : dense, init = uniform(0.5, 1), autapses = true
I   -> E : dense, init = constant(1), learn = bcm(eta = 1, tau_theta = 5 ms)
inp -> I : dense, init = constant(1)
"""


def test_runaway_rule_names_the_projection(ei, backend):
    sim = ei.load("runaway_rule.ei", RUNAWAY_RULE).compile(backend=backend)
    with pytest.raises(SimulationError) as info, np.errstate(all="ignore"):
        sim.run(np.full((15, 1, 1), 2.0))
    assert "I->E" in str(info.value) and "bcm" in str(info.value)
    assert sim.n == info.value.step


def test_runaway_rule_leaves_the_weights_before_the_failing_step(ei, backend):
    model = ei.load("runaway_rule.ei", RUNAWAY_RULE)
    sim = model.compile(backend=backend)
    drive = np.full((15, 1, 1), 2.0)
    with pytest.raises(SimulationError) as info, np.errstate(all="ignore"):
        sim.run(drive)
    step = info.value.step
    clean = model.compile(backend=backend)
    with np.errstate(all="ignore"):
        clean.run(drive[:step])
    assert np.isfinite(sim.weights["I->E"]).all()
    np.testing.assert_array_equal(sim.weights["I->E"], clean.weights["I->E"])
