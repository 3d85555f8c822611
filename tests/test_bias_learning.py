"""Learned biases (issue 11, EIANN's ``bias_learning_rule``): ``learn_bias = RULE(...)`` on a
population, with ``bias_phase`` and ``bias_bounds``.

A bias is the weight of a synapse from an always-on unit: the rule runs with ``pre = 1``,
``pre@PHASE = 1``, ``w`` = the bias and ``sign = 1``, its batch-averaged ``dw`` added to the bias.

- hand-computed numbers after one update (delta on step in the free phase, EIANN's
  DendriticLossBias ``bias += eta * plateau`` as ``bp_like`` in the nudged phase, bounds, no Dale
  clip), on the NumPy reference and on Numba (one kernel), and the two backends agree step by step
  over several two-phase trials;
- the simulator keeps the bias as it keeps weights: reset_state keeps it, reset(weights=True)
  restores it, save/load round-trip it, a NaN stops the run with the bias of the last good step;
- ``eigraph run --freeze 'bias->H'`` (or ``'*->H'``) keeps it and says so in metrics.json, and
  weights.npz holds it;
- validate: each misuse has a code at its line and column; the YAML twin carries the keys;
- program.txt, the summary and the drawing show it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import validate_finding

import eigraph
from eigraph.cli import main
from eigraph.model.graph import signature
from eigraph.runtime.errors import SimulationError

BIASED = """\
network biased { seed = 1; precision = float64; dt = 1 ms }
celltype Pyr : excitatory { tau = 1 steps; activation = relu; compartments = [apical] }
celltype Lin : excitatory { tau = 1 steps; activation = linear }
population x : input(2)
population H : Pyr(2, bias = 0.3, learn_bias = bp_like(eta = 0.1), bias_phase = nudged)
population O : Lin(2, learn_bias = delta(eta = 0.1), bias_phase = free)
population B : Lin(2, learn_bias = delta(eta = 0.1), bias_phase = free, bias_bounds = [-0.01, 0.05])
population T : Lin(3, learn_bias = supervised_bcm(eta = 0.1, k = 1, tau_theta = 4 ms), bias = 0.2)
population P : Lin(3, learn_bias = settle(eta = 0.2), bias = normal(0.5, 0.1), bias_bounds = [0.45, 0.9])
population S : Lin(3, learn_bias = pick(eta = 0.1), bias_phase = free)
x -> H.apical : dense, init = constant(0.5)
x -> O : dense, init = constant(0.25)
x -> B : dense, init = constant(0.25)
x -> T : dense, init = uniform(0, 1)
x -> P : dense, init = uniform(0, 1)
H -> P : dense, init = uniform(0, 1)
x -> S : dense, init = uniform(0, 1)
rule settle(eta = 0.1) {
    gap = post - w * mean(pre)
    dw = eta * gap * abs(w)
}
rule pick(eta = 0.1) {            # the rule functions with their own draws, on a bias
    e = post - 0.5
    dw = eta * e * top_fraction(e, 0.5) * bernoulli(0.7) + eta * uniform()
}
phase free   { steps = 1 }
phase nudged { steps = 1 }
run { task = digits; inputs = x; targets = [O, B] }
"""

# one step per phase, batch 2 (time x batch x neurons)
X_FREE = np.array([[[1.0, 0.0], [0.0, 2.0]]])
X_NUDGED = np.array([[[1.0, 1.0], [3.0, 2.0]]])
TARGET = np.array([[[0.0, 0.0], [0.0, 2.0]]])


def _load(tmp_path: Path, text: str, name: str = "m.ei"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return eigraph.load(path), path


@pytest.fixture(scope="module")
def biased(tmp_path_factory):
    folder = tmp_path_factory.mktemp("biased")
    model, _ = _load(folder, BIASED)
    assert not model.errors, model.errors
    return model


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_update_gives_the_hand_computed_bias(biased, backend):
    sim = biased.compile(backend=backend, batch=2)
    assert sim.biases["H"].tolist() == [0.3, 0.3] and sim.biases["O"].tolist() == [0.0, 0.0]
    sim.run({"x": X_FREE}, targets={"O": TARGET, "B": TARGET}, phase="free")
    # delta, pre = 1: bias += eta * mean over the batch of (target - post); post = 0.25 * sum(x) + 0
    # batch 0: post 0.25, error [-0.25, -0.25]; batch 1: post 0.5, error [-0.5, 1.5]
    np.testing.assert_allclose(sim.biases["O"], [0.1 * -0.375, 0.1 * 0.625], rtol=0, atol=1e-15)
    assert sim.biases["O"][0] < 0  # signed: no Dale clip on a bias
    np.testing.assert_allclose(sim.biases["B"], [-0.01, 0.05], rtol=0, atol=1e-15)  # bias_bounds
    np.testing.assert_array_equal(sim.biases["H"], [0.3, 0.3])  # bias_phase = nudged: not yet
    sim.run({"x": X_NUDGED}, phase="nudged")
    # bp_like as EIANN's DendriticLossBias: bias += eta * plateau * clip(pre@free, 0, 1), pre@free = 1;
    # plateau = clip(apical - apical@free, -1, 1) * heaviside(post@free), apical = 0.5 * sum(x),
    # post@free = relu(0.3) > 0. Batch 0: 0.5 * (2 - 1) = 0.5; batch 1: 0.5 * (5 - 2) = 1.5 -> 1.
    np.testing.assert_allclose(sim.biases["H"], [0.3 + 0.1 * 0.75] * 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(sim.biases["O"], [0.1 * -0.375, 0.1 * 0.625], rtol=0, atol=1e-15)  # free only
    # the learned bias drives the next step: O's state is W x + its bias
    sim.reset_state()
    out = sim.run({"x": X_FREE}, targets={"O": TARGET, "B": TARGET}, learn=False, record=["O.x"])
    np.testing.assert_allclose(out["O.x"][0], 0.25 * X_FREE[0].sum(axis=1, keepdims=True)
                               + [[-0.0375, 0.0625]], rtol=0, atol=1e-15)


def test_numba_agrees_with_the_reference_step_by_step(biased):
    rng = np.random.default_rng(7)
    sims = {name: biased.compile(backend=name, batch=2) for name in ("numpy", "numba")}
    for _trial in range(4):
        x_free, x_nudged = rng.uniform(0, 1, (2, 1, 2, 2))
        target = rng.uniform(-1, 1, (1, 2, 2))
        seen = {}
        for name, sim in sims.items():
            sim.reset_state()
            a = sim.run({"x": x_free}, targets={"O": target, "B": target}, phase="free", record=["H.apical", "O.r"])
            mid = {p: sim.biases[p] for p in "HOBTPS"}
            b = sim.run({"x": x_nudged}, phase="nudged", record=["H.apical", "O.r"])
            seen[name] = (a, mid, b, {p: sim.biases[p] for p in "HOBTPS"}, dict(sim.traces))
        for one, other in zip(seen["numpy"], seen["numba"]):
            assert one.keys() == other.keys()
            for key in one:
                np.testing.assert_allclose(one[key], other[key], rtol=1e-12, atol=1e-14)
    for p in "HOBTPS":  # each did learn
        assert not np.array_equal(sims["numba"].biases[p], biased.compile(backend="numpy").biases[p]), p
    assert not sims["numba"].backend.source().count("learn_w") < 6  # six bias rules in the kernel
    assert "per synapse" in sims["numba"].backend.source()  # settle's dw is not factorisable


def test_simulator_keeps_the_bias_like_weights(biased, tmp_path):
    sim = biased.compile(backend="numpy", batch=2)
    sim.run({"x": X_FREE}, targets={"O": TARGET, "B": TARGET})
    learned = sim.biases["O"]
    sim.reset_state()
    np.testing.assert_array_equal(sim.biases["O"], learned)  # a parameter, not state
    sim.save(tmp_path / "state.npz")
    sim.biases["O"] = [5.0, 6.0]
    assert sim.biases["O"].tolist() == [5.0, 6.0]
    sim.load(tmp_path / "state.npz")
    np.testing.assert_array_equal(sim.biases["O"], learned)
    sim.reset(weights=True)
    assert sim.biases["O"].tolist() == [0.0, 0.0] and sim.biases["H"].tolist() == [0.3, 0.3]
    assert "bias->O.w" in sim.program.state_layout()
    with pytest.raises(eigraph.runtime.errors.InputError, match="one number or one per neuron"):
        sim.biases["O"] = [1.0, 2.0, 3.0]


def test_a_bias_driven_to_infinity_stops_with_the_last_good_bias(tmp_path):
    model, _ = _load(tmp_path, """\
        network blowup { precision = float64 }
        population x : input(1)
        population O : readout(1, learn_bias = delta(eta = 1e300))
        x -> O : dense, init = constant(1)
        run { task = digits; inputs = x; targets = O }
    """)
    sim = model.compile(backend="numpy", batch=1)
    with pytest.raises(SimulationError, match="learned bias of bias->O") as info:
        sim.run({"x": np.ones((3, 1, 1))}, targets={"O": np.full((3, 1, 1), 2.0)})
    assert info.value.step == 1
    # step 0: post = 1 (x) + 0 (bias), bias = 1e300 * (2 - 1); step 1 overflows and is undone
    assert sim.biases["O"].tolist() == [1e300]


RUN_MODEL = """\
network run_bias { seed = 2 }
population x : input(64)
population H : E(12, tau = 1 steps, learn_bias = hebb(eta = 0.01), bias_bounds = [-1, 1])
population O : readout(10, learn_bias = delta(eta = 0.05))
x -> H : dense, learn = hebb(eta = 0.001), bounds = [0, 1]
H -> O : dense, learn = delta(eta = 0.05)
run { task = digits; inputs = x; targets = O; steps = 2 }
"""


def test_run_writes_and_freezes_learned_biases(tmp_path, capsys):
    _, path = _load(tmp_path, RUN_MODEL)
    start = eigraph.load(path).compile(backend="numpy", batch=2)
    args = ["run", str(path), "--trials", "4", "--batch", "2", "--backend", "numpy", "--no-plots", "-q"]
    assert main(args + ["-o", str(tmp_path / "learned")]) == 0, capsys.readouterr().err
    with np.load(tmp_path / "learned" / "weights.npz") as saved:
        assert not np.array_equal(saved["bias->H"], start.biases["H"])
        assert not np.array_equal(saved["bias->O"], start.biases["O"])
    metrics = json.loads((tmp_path / "learned" / "metrics.json").read_text())
    assert metrics["learning_rules"]["bias->O"] == "delta(eta = 0.05)"
    assert main(args + ["-o", str(tmp_path / "frozen"), "--freeze", "*->H"]) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "frozen" / "metrics.json").read_text())
    assert metrics["frozen"] == {"patterns": ["*->H"], "projections": ["x->H", "bias->H"]}
    with np.load(tmp_path / "frozen" / "weights.npz") as saved:
        np.testing.assert_array_equal(saved["bias->H"], start.biases["H"])
        np.testing.assert_array_equal(saved["x->H"], start.weights["x->H"])
        assert not np.array_equal(saved["bias->O"], start.biases["O"])
    assert main(args + ["-o", str(tmp_path / "x"), "--freeze", "bias->x"]) == 2
    assert "bias->H" in capsys.readouterr().err  # the learners are listed


# validate ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, code, where", [
    (("learn_bias = bp_like(eta = 0.1)", "learn_bias = bp_lik(eta = 0.1)"), "N103", (5, 48)),
    (("learn_bias = bp_like(eta = 0.1)", "learn_bias = bp_like(etta = 0.1)"), "N104", (5, 56)),
    (("learn_bias = delta(eta = 0.1), bias_phase = free)", "learn_bias = 3)"), "N103", (6, 36)),
    (("bias_phase = nudged", "bias_phase = nudge"), "P703", (5, 81)),
    (("bias_phase = nudged", "bias_phase = free"), "P702", (5, 48)),
    (("bias_phase = nudged", "bias_phase = []"), "P703", (5, 81)),
    (("bias_bounds = [-0.01, 0.05]", "bias_bounds = [0.05, -0.01]"), "U509", (7, 87)),
    (("bias_bounds = [-0.01, 0.05]", "bias_bounds = 3"), "U505", (7, 87)),
    (("Lin(2, learn_bias = delta(eta = 0.1), bias_phase = free)", "Lin(2, bias_phase = free)"), "R614", (6, 36)),
    (("Lin(2, learn_bias = delta(eta = 0.1), bias_phase = free, bias_bounds", "Lin(2, bias_bounds"), "R614",
     (7, 37)),
    (("input(2)", "input(2, learn_bias = hebb)"), "R614", (4, 38)),
    (("targets = [O, B]", "targets = [O]"), "C303", (7, 36)),
    (("learn_bias = delta(eta = 0.1), bias_phase = free)", "learn_bias = bp_like(compartment = basal), "
                                                           "bias_phase = nudged)"), "C302", (6, 36)),
])
def test_validate_reports_misused_bias_learning(tmp_path, capsys, change, code, where):
    old, new = change
    assert old in BIASED
    validate_finding(tmp_path, capsys, BIASED.replace(old, new, 1), code, where)


def test_a_celltype_can_learn_its_bias(tmp_path):
    text = BIASED.replace("celltype Lin : excitatory { tau = 1 steps; activation = linear }",
                          "celltype Lin : excitatory { tau = 1 steps; activation = linear; "
                          "learn_bias = hebb(eta = 0.2) }")
    text = text.replace("Lin(2, learn_bias = delta(eta = 0.1), bias_phase = free)", "Lin(2)")
    model, _ = _load(tmp_path, text)
    assert not model.errors, model.errors
    assert model.populations["O"].learn_bias["text"] == "hebb(eta = 0.2)"  # from the cell type
    assert model.populations["B"].learn_bias["text"] == "delta(eta = 0.1)"  # its own wins


def test_yaml_twin_carries_the_bias_keys(biased, tmp_path):
    yaml_path, back = tmp_path / "m.yaml", tmp_path / "back.ei"
    assert main(["convert", biased.path, "-o", str(yaml_path)]) == 0
    text = yaml_path.read_text()
    assert "learn_bias: bp_like(eta = 0.1)" in text and "bias_phase: nudged" in text and "bias_bounds:" in text
    assert main(["convert", str(yaml_path), "-o", str(back)]) == 0
    graphs = [eigraph.load(p).graph for p in (biased.path, yaml_path, back)]
    assert len({signature(g) for g in graphs}) == 1
    assert graphs[1].nodes["B"]["bias_bounds"] == [-0.01, 0.05]
    assert graphs[1].nodes["H"]["learn_bias"]["phases"] == ["nudged"]


def test_program_summary_and_drawing_show_the_learned_bias(biased):
    from eigraph.summary import summarize
    from eigraph.viz.scene import build_scene

    sim = biased.compile(backend="numpy", batch=1)
    listing = sim.program.describe()
    assert "learn     bias->H: rule bp_like on trial in phase nudged" in listing
    assert "update    bias->B: bias += dw (pre = 1), then bounds [-0.01, 0.05]" in listing
    summary = summarize(biased)
    assert "bias->H  bp_like(eta = 0.1) in nudged" in summary
    scene = build_scene(biased.graph)
    assert scene.nodes["H"].sublabel == "2, bias: bp_like in nudged"
    assert scene.nodes["x"].sublabel == "2"
