"""EIANN's learning rules in the prelude (issue 11), each against its published equation.

EIANN: Galloni, Peddada, Chennawar & Milstein 2025, github.com/Milstein-Lab/EIANN, EIANN/rules/.
Every model here has discrete units (tau = 1 steps), one step per phase and batch 1, so each
factor of each rule is set by the inputs and the expected weights are written down by hand.
Each model runs on the NumPy reference and on Numba (one kernel for all its rules).

- dendritic_loss (DendriticLoss_6), hebb_norm / hebb_norm_free / hebb_norm_clip (Hebb_WeightNorm,
  forward_only, Hebb_WeightNorm_4, with the projection's normalize), supervised_bcm
  (Supervised_BCM_4, its threshold over two trials), htc (Hebbian_Temporal_Contrast, gated and
  not), td_htc / td_htc_3 (Top_Down_Hebbian_Temporal_Contrast_1 / _3): one model, one trial;
- btsp (BTSP_19) over two trials, its traces carrying the first trial's plateau and rate;
- unit selection: bp_like and btsp with max_pop_fraction (the largest positive and the most
  negative losses), bp_like_stochastic (candidates drawn with probability |loss|);
- dendritic_loss cancels the free-phase apical input it is trained on;
- normalize sets each row's L1 sum at initialisation too (dense, masked dense and CSR);
- Numba reads a trace through a temporary where NumPy does (btsp reads its traces that way).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import eigraph

BACKENDS = ("numpy", "numba")


def _load(tmp_path: Path, text: str, name: str = "m.ei"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return eigraph.load(path)


EIANN = """\
network r { seed = 1; precision = float64; dt = 1 ms }
celltype Pyr : excitatory { tau = 1 steps; activation = relu; compartments = [apical, basal] }
celltype inh_in : inhibitory input { activation = linear }
population x : input(3)
population a : input(3)
population p : input(2)
population d : inh_in(2)
population H : Pyr(3)
x -> H : one_to_one, init = constant(1)
a -> H.apical : one_to_one, init = constant(1)
d -> H.apical : dense, init = constant(0.5), learn = dendritic_loss(eta = 0.1), phase = nudged
p -> H.basal : dense, init = constant(0.25), normalize = 0.5, learn = hebb_norm(eta = 0.1), phase = nudged, name = "hebb"
d -> H.basal : dense, init = constant(0.25), normalize = 0.5, learn = hebb_norm(eta = 0.1), phase = nudged, name = "hebb_inh"
p -> H.basal : dense, init = constant(0.25), normalize = 0.5, learn = hebb_norm_free(eta = 0.1), phase = nudged, name = "hebb_free"
p -> H.basal : dense, init = constant(0.25), normalize = 0.5, learn = hebb_norm_clip(eta = 0.1), phase = nudged, name = "hebb_clip"
p -> H.basal : dense, init = constant(0.3), learn = supervised_bcm(eta = 0.1, k = 0.5, tau_theta = 4 ms), phase = nudged, name = "bcm"
p -> H.basal : dense, init = constant(0.5), learn = htc(eta = 0.1), phase = nudged, name = "htc"
p -> H.basal : dense, init = constant(0.5), learn = htc(eta = 0.1, gate = 0), phase = nudged, name = "htc_ungated"
p -> H.basal : dense, init = constant(0.5), learn = td_htc(eta = 0.1), phase = nudged, name = "td_htc"
p -> H.basal : dense, init = constant(0.5), learn = td_htc_3(eta = 0.1), phase = nudged, name = "td_htc_3"
phase free   { steps = 1 }
phase nudged { steps = 1 }
"""

# The inputs of one trial. H has no input but x (basal has no gain), so H = relu(x).
FREE = {"x": [1.5, 0.4, -0.3],  # H@free = [1.5, 0.4, 0]: the third unit is silent (gated off)
        "a": [1.0, -0.2, 3.0],  # apical@free = a - 0.5 * (0.4 + 0.2) = [0.7, -0.5, 2.7]
        "p": [0.5, 2.0], "d": [0.4, 0.2]}
NUDGED = {"x": [0.8, 1.2, 0.6],  # H = [0.8, 1.2, 0.6]
          "a": [0.0, 0.0, 0.0], "p": [0.9, 0.1], "d": [0.3, 1.5]}


def _inputs(values: dict) -> dict:
    return {name: np.array(v, dtype=float)[None, None, :] for name, v in values.items()}


def _trial(sim):
    sim.reset_state()
    free = sim.run(_inputs(FREE), phase="free", record=["H.r", "H.apical"])
    sim.run(_inputs(NUDGED), phase="nudged")
    return free


def _rows_to(w, total):
    """normalize: each row's L1 sum set to ``total``."""
    w = np.array(w, dtype=float)
    return w * (total / np.abs(w).sum(axis=1, keepdims=True))


@pytest.fixture(scope="module")
def eiann_sims(tmp_path_factory):
    model = _load(tmp_path_factory.mktemp("eiann"), EIANN)
    return {backend: model.compile(backend=backend, batch=1) for backend in BACKENDS}


def test_the_trial_is_what_the_arithmetic_says(eiann_sims):
    for backend, sim in eiann_sims.items():
        sim.reset(weights=True)
        free = _trial(sim)
        np.testing.assert_allclose(free["H.r"][0, 0], [1.5, 0.4, 0.0], err_msg=backend)
        np.testing.assert_allclose(free["H.apical"][0, 0], [0.7, -0.5, 2.7], atol=1e-12, err_msg=backend)


def test_dendritic_loss_gives_its_equation(eiann_sims):
    """DendriticLoss_6 with sign = -1: W -= lr * clip(apical@free, -1, 1) x clip(pre@free, 0, 1) on
    the (negative) weights from DendI, so the magnitudes grow by the same amount."""
    for backend, sim in eiann_sims.items():
        sim.reset(weights=True)
        _trial(sim)
        # clip([0.7, -0.5, 2.7], -1, 1) = [0.7, -0.5, 1]; clip(d@free, 0, 1) = [0.4, 0.2]
        # 0.5 + 0.1 * [[0.28, 0.14], [-0.2, -0.1], [0.4, 0.2]]
        expected = [[0.528, 0.514], [0.48, 0.49], [0.54, 0.52]]
        np.testing.assert_allclose(sim.weights["d->H.apical"], expected, atol=1e-12, err_msg=backend)


def test_hebb_with_weight_normalisation_gives_its_equation(eiann_sims):
    """Hebb_WeightNorm: W += lr * post x pre (inhibitory: sign = -1, the magnitude grows), then
    each row's L1 sum set to the normalize scale; forward_only reads the free-phase rates;
    Hebb_WeightNorm_4 clips both rates to [0, 1]."""
    for backend, sim in eiann_sims.items():
        sim.reset(weights=True)
        _trial(sim)
        w = sim.weights
        # 0.25 + 0.1 * [0.8, 1.2, 0.6] x [0.9, 0.1]: rows [0.322, 0.258] (sum 0.58), [0.358, 0.262] (0.62),
        # [0.304, 0.256] (0.56), each scaled to sum 0.5: [0.322 * 0.5 / 0.58, 0.258 * 0.5 / 0.58], ...
        np.testing.assert_allclose(w["hebb"], [[0.322 * 0.5 / 0.58, 0.258 * 0.5 / 0.58],
                                               [0.358 * 0.5 / 0.62, 0.262 * 0.5 / 0.62],
                                               [0.304 * 0.5 / 0.56, 0.256 * 0.5 / 0.56]], atol=1e-12, err_msg=backend)
        # from the inhibitory d: 0.25 + 0.1 * [0.8, 1.2, 0.6] x [0.3, 1.5] = [[0.274, 0.37], [0.286, 0.43],
        # [0.268, 0.34]], rows summing to 0.644, 0.716, 0.608
        np.testing.assert_allclose(w["hebb_inh"], _rows_to([[0.274, 0.37], [0.286, 0.43], [0.268, 0.34]], 0.5),
                                   atol=1e-12, err_msg=backend)
        # forward_only: 0.25 + 0.1 * [1.5, 0.4, 0] x [0.5, 2.0] = [[0.325, 0.55], [0.27, 0.33], [0.25, 0.25]]
        np.testing.assert_allclose(w["hebb_free"], _rows_to([[0.325, 0.55], [0.27, 0.33], [0.25, 0.25]], 0.5),
                                   atol=1e-12, err_msg=backend)
        # clipped: 0.25 + 0.1 * [0.8, 1, 0.6] x [0.9, 0.1] = [[0.322, 0.258], [0.34, 0.26], [0.304, 0.256]]
        np.testing.assert_allclose(w["hebb_clip"], _rows_to([[0.322, 0.258], [0.34, 0.26], [0.304, 0.256]], 0.5),
                                   atol=1e-12, err_msg=backend)
        for name in ("hebb", "hebb_inh", "hebb_free", "hebb_clip"):
            np.testing.assert_allclose(np.abs(w[name]).sum(axis=1), 0.5, atol=1e-12)


def test_supervised_bcm_gives_its_equation_and_slides_its_threshold(eiann_sims):
    """Supervised_BCM_4: W += lr * (y * (y - theta)) x clip(pre, 0, 1) with y the nudged rate and
    theta before its update; then theta += (y^2 / k - theta) / theta_tau (here dt / tau_theta = 1/4)."""
    for backend, sim in eiann_sims.items():
        sim.reset(weights=True)
        np.testing.assert_allclose(sim.traces["bcm:theta"].ravel(), 0.5)  # theta(0) = k
        _trial(sim)
        # theta = 0.5: y * (y - theta) = [0.8 * 0.3, 1.2 * 0.7, 0.6 * 0.1] = [0.24, 0.84, 0.06]; pre = [0.9, 0.1]
        first = 0.3 + 0.1 * np.array([[0.24 * 0.9, 0.24 * 0.1], [0.84 * 0.9, 0.84 * 0.1], [0.06 * 0.9, 0.06 * 0.1]])
        np.testing.assert_allclose(sim.weights["bcm"], first, atol=1e-12, err_msg=backend)
        # theta = 0.5 + (1/4) * ([0.64, 1.44, 0.36] / 0.5 - 0.5) = [0.695, 1.095, 0.555]
        np.testing.assert_allclose(sim.traces["bcm:theta"].ravel(), [0.695, 1.095, 0.555], atol=1e-12, err_msg=backend)
        _trial(sim)
        # y - theta = [0.105, 0.105, 0.045]: y * (y - theta) = [0.084, 0.126, 0.027]
        second = first + 0.1 * np.outer([0.084, 0.126, 0.027], [0.9, 0.1])
        np.testing.assert_allclose(sim.weights["bcm"], second, atol=1e-12, err_msg=backend)
        # theta = [0.695 + 0.25 * (1.28 - 0.695), 1.095 + 0.25 * (2.88 - 1.095), 0.555 + 0.25 * (0.72 - 0.555)]
        np.testing.assert_allclose(sim.traces["bcm:theta"].ravel(), [0.84125, 1.54125, 0.59625], atol=1e-12,
                                   err_msg=backend)


def test_temporal_contrast_rules_give_their_equations(eiann_sims):
    """Hebbian_Temporal_Contrast: W += lr * (post_b x pre_b - post_f x pre_f), rates clipped to
    [0, 1], post_b zero where post_f is (relu_gate); Top-Down HTC _1 (forward_only):
    lr * clip(post_f, 0, 1) x clip(pre_b - pre_f, -1, 1); _3: the same with clip(post_b, 0, 1)."""
    for backend, sim in eiann_sims.items():
        sim.reset(weights=True)
        _trial(sim)
        w = sim.weights
        # post_b = clip([0.8, 1.2, 0.6], 0, 1) * gate [1, 1, 0] = [0.8, 1, 0]; pre_b = [0.9, 0.1]
        # post_f = clip([1.5, 0.4, 0], 0, 1) = [1, 0.4, 0]; pre_f = clip([0.5, 2.0], 0, 1) = [0.5, 1]
        # [[0.72, 0.08], [0.9, 0.1], [0, 0]] - [[0.5, 1], [0.2, 0.4], [0, 0]] = [[0.22, -0.92], [0.7, -0.3], [0, 0]]
        np.testing.assert_allclose(w["htc"], [[0.522, 0.408], [0.57, 0.47], [0.5, 0.5]], atol=1e-12, err_msg=backend)
        # gate = 0: the silent unit's nudged rate counts, 0.5 + 0.1 * 0.6 * [0.9, 0.1]
        np.testing.assert_allclose(w["htc_ungated"], [[0.522, 0.408], [0.57, 0.47], [0.554, 0.506]], atol=1e-12,
                                   err_msg=backend)
        # pre_b - pre_f = [0.4, -1.9] -> clip [0.4, -1]; 0.5 + 0.1 * [1, 0.4, 0] x [0.4, -1]
        np.testing.assert_allclose(w["td_htc"], [[0.54, 0.4], [0.516, 0.46], [0.5, 0.5]], atol=1e-12, err_msg=backend)
        # 0.5 + 0.1 * [0.8, 1, 0.6] x [0.4, -1]
        np.testing.assert_allclose(w["td_htc_3"], [[0.532, 0.42], [0.54, 0.4], [0.524, 0.44]], atol=1e-12,
                                   err_msg=backend)


# BTSP -------------------------------------------------------------------------------------------
BTSP = """\
network b { seed = 1; precision = float64; dt = 1 ms }
celltype Pyr : excitatory { tau = 1 steps; activation = relu; compartments = [apical, basal] }
population x : input(3)
population a : input(3)
population p : input(3)
population H : Pyr(3)
x -> H : one_to_one, init = constant(1)
a -> H.apical : one_to_one, init = constant(1)
p -> H.basal : dense, init = constant(0.5), bounds = [0, 1], learn = btsp(eta = 0.1, w_max = 1, discount = 0.25),
               phase = nudged
phase free   { steps = 1 }
phase nudged { steps = 1 }
"""


def _q(x):
    """EIANN's get_scaled_rectified_sigmoid(0.01, 0.02): s(x) = 1 / (1 + exp(-200 (x - 0.01))),
    q(x) = (s(clip(x, 0, 1)) - s(0)) / (s(1) - s(0)); q(0) = 0, q(1) = 1."""
    s = lambda v: 1 / (1 + np.exp(-200 * (np.clip(v, 0, 1) - 0.01)))  # noqa: E731
    return (s(x) - s(0)) / (s(1) - s(0))


def _btsp_19(W, plateau, past_plateau, et, past_et, lr=0.1, w_max=1.0, d=0.25):
    """BTSP_19.step as EIANN writes it (btsp.py), then the clamp to [0, w_max]."""
    P, P_past, N = np.maximum(plateau, 0)[:, None], np.maximum(past_plateau, 0)[:, None], np.minimum(plateau, 0)[:, None]
    ET, ET_past = et[None, :], past_et[None, :] * d
    dW = P * ((w_max - W) * ET - W * _q(ET))
    dW += P * ((w_max - W) * ET_past - W * _q(ET_past))
    dW += P_past * ((w_max - W) * ET * d - W * _q(ET * d))
    dW += N * ET
    return np.clip(W + lr * dW, 0, w_max)


def test_btsp_gives_its_equation_with_the_previous_trial_in_its_traces(tmp_path):
    model = _load(tmp_path, BTSP)
    x = np.array([[[1.0, 0.5, 0.0]]])  # H = [1, 0.5, 0] in both phases: the third unit is gated off
    free_a = np.array([[[0.2, 0.3, 0.0]]])
    trials = [  # (apical input when nudged, p when nudged)
        (np.array([[[0.8, -0.1, 0.9]]]), np.array([[[1.5, 0.01, -0.2]]])),
        (np.array([[[-0.1, 1.8, 0.5]]]), np.array([[[0.0, 0.6, 1.0]]])),
    ]
    assert _q(0.0) == 0.0 and abs(_q(1.0) - 1) < 1e-15
    assert abs(_q(0.01) - 0.43233) < 1e-5  # (s(0.01) - s(0)) / (1 - s(0)) = (0.5 - 0.11920) / 0.88080
    for backend in BACKENDS:
        sim = model.compile(backend=backend, batch=1)
        weights = []
        for nudged_a, p in trials:
            sim.reset_state()
            sim.run({"x": x, "a": free_a, "p": np.zeros((1, 1, 3))}, phase="free")
            sim.run({"x": x, "a": nudged_a, "p": p}, phase="nudged")
            weights.append(sim.weights["p->H.basal"])
        # trial 1: plateau = clip([0.6, -0.4, 0.9], -1, 1) * heaviside([1, 0.5, 0]) = [0.6, -0.4, 0],
        # ET = clip([1.5, 0.01, -0.2], 0, 1) = [1, 0.01, 0], the traces are 0. By hand:
        # row 0 (P = 0.6): [0.6 * ((1 - 0.5) * 1 - 0.5 * q(1)), 0.6 * (0.5 * 0.01 - 0.5 * q(0.01)), 0]
        #                 = [0, 0.6 * (0.005 - 0.216165) = -0.126699, 0] -> 0.5 + 0.1 * that
        # row 1 (N = -0.4): N * ET = [-0.4, -0.004, 0] -> [0.46, 0.4996, 0.5]; row 2: no plateau
        first = np.array([[0.5, 0.5 + 0.1 * 0.6 * (0.005 - 0.5 * _q(0.01)), 0.5], [0.46, 0.4996, 0.5],
                          [0.5, 0.5, 0.5]])
        np.testing.assert_allclose(weights[0], first, atol=1e-12, err_msg=backend)
        np.testing.assert_allclose(first, _btsp_19(np.full((3, 3), 0.5), np.array([0.6, -0.4, 0]), np.zeros(3),
                                                   np.array([1, 0.01, 0]), np.zeros(3)), atol=1e-15)
        # trial 2: plateau = clip([-0.3, 1.5, 0.5], -1, 1) * [1, 1, 0] = [-0.3, 1, 0], ET = [0, 0.6, 1];
        # the traces hold trial 1: past plateau [0.6, -0.4, 0], past ET [1, 0.01, 0]. Row 0 has both
        # N = -0.3 and P_past = 0.6: 0.6 * ((1 - W) * 0.25 * ET - W * q(0.25 * ET)) - 0.3 * ET
        row0 = first[0] + 0.1 * (0.6 * ((1 - first[0]) * 0.25 * np.array([0, 0.6, 1])
                                        - first[0] * _q(0.25 * np.array([0, 0.6, 1]))) - 0.3 * np.array([0, 0.6, 1]))
        expected = _btsp_19(first, np.array([-0.3, 1, 0]), np.array([0.6, -0.4, 0]), np.array([0, 0.6, 1]),
                            np.array([1, 0.01, 0]))
        np.testing.assert_allclose(expected[0], row0, atol=1e-15)
        np.testing.assert_allclose(weights[1], expected, atol=1e-12, err_msg=backend)
        np.testing.assert_allclose(sim.traces["p->H.basal:et_past"].ravel(), [0, 0.6, 1], atol=1e-12)
        np.testing.assert_allclose(sim.traces["p->H.basal:plateau_past"].ravel(), [-0.3, 1, 0], atol=1e-12)


# unit selection (max_pop_fraction, stochastic) ----------------------------------------------------------
SELECTED = """\
network s { seed = 2; precision = float64; dt = 1 ms }
celltype Pyr : excitatory { tau = 1 steps; activation = relu; compartments = [apical, basal] }
population x : input(5)
population a : input(5)
population p : input(3)
population H : Pyr(5)
x -> H : one_to_one, init = constant(1)
a -> H.apical : one_to_one, init = constant(1)
p -> H.basal : dense, init = constant(0.5), learn = bp_like(eta = 0.1), phase = nudged, name = "all"
p -> H.basal : dense, init = constant(0.5), learn = bp_like(eta = 0.1, max_pop_fraction = 0.2), phase = nudged,
               name = "fifth"
p -> H.basal : dense, init = constant(0.5), learn = bp_like_stochastic(eta = 0.1, max_pop_fraction = 0.2),
               phase = nudged, name = "stochastic"
p -> H.basal : dense, init = constant(0.5), bounds = [0, 1], phase = nudged, name = "btsp",
               learn = btsp(eta = 0.1, w_max = 1, discount = 0.25, max_pop_fraction = 0.2)
phase free   { steps = 1 }
phase nudged { steps = 1 }
"""


def test_unit_selection_gives_eiann_s_max_pop_fraction(tmp_path):
    """BP_like_2E / BTSP_19 with max_pop_fraction = 0.2 of 5 units: ceil(1.0) = 1 unit of each sign,
    the largest positive local loss and the most negative; stochastic = True with losses of
    magnitude 1 draws those units for sure. The default, f = 1, keeps every unit's loss."""
    model = _load(tmp_path, SELECTED)
    for backend in BACKENDS:
        sim = model.compile(backend=backend, batch=1)
        x = np.array([[[1.0, 1.0, 1.0, 0.0, 1.0]]])  # H@free = x: unit 3 is gated off
        sim.run({"x": x, "a": np.zeros((1, 1, 5)), "p": np.array([[[1.0, 0.5, 2.0]]])}, phase="free")
        sim.run({"x": x, "a": np.array([[[2.0, -2.0, 0.3, 2.0, 0.7]]]), "p": np.array([[[0.2, 1.5, 0.0]]])},
                phase="nudged")
        # loss = clip(a - a@free, -1, 1) * heaviside(H@free) = [1, -1, 0.3, 0, 0.7]; pre@free = [1, 0.5, 1]
        pre_free = np.array([1.0, 0.5, 1.0])
        np.testing.assert_allclose(sim.weights["all"], 0.5 + 0.1 * np.outer([1, -1, 0.3, 0, 0.7], pre_free),
                                   atol=1e-12, err_msg=backend)
        # one unit per sign: 1 (unit 0; unit 3's apical change is gated to 0) and -1 (unit 1)
        selected = np.array([1.0, -1.0, 0.0, 0.0, 0.0])
        np.testing.assert_allclose(sim.weights["fifth"], 0.5 + 0.1 * np.outer(selected, pre_free), atol=1e-12,
                                   err_msg=backend)
        # stochastic: units 0 and 1 are candidates for sure (|loss| = 1), units 2 and 4 by chance;
        # of the positive candidates the first by index, unit 0: the same selection, whatever the draws
        np.testing.assert_allclose(sim.weights["stochastic"], sim.weights["fifth"], atol=1e-12, err_msg=backend)
        # BTSP_19 with the selected plateau [1, -1, 0, 0, 0], ET = clip(p, 0, 1) = [0.2, 1, 0], no past
        expected = _btsp_19(np.full((5, 3), 0.5), selected, np.zeros(5), np.array([0.2, 1.0, 0.0]), np.zeros(3))
        np.testing.assert_allclose(sim.weights["btsp"], expected, atol=1e-12, err_msg=backend)
        np.testing.assert_allclose(sim.traces["btsp:plateau_past"].ravel(), selected, atol=1e-12, err_msg=backend)


def test_stochastic_selection_draws_units_with_probability_of_their_loss(tmp_path):
    """bp_like_stochastic with f = 1: a unit's loss counts with probability |loss|, so over many
    samples (batch 2000, the update its mean) dw = eta * loss * |loss| * pre@free on average."""
    text = SELECTED.replace("bp_like_stochastic(eta = 0.1, max_pop_fraction = 0.2)", "bp_like_stochastic(eta = 0.1)")
    sim = _load(tmp_path, text, "f1.ei").compile(backend="numpy", batch=2000)
    ones = lambda v: np.broadcast_to(np.array(v, dtype=float), (1, 2000, len(v)))  # noqa: E731
    sim.run({"x": ones([1, 1, 1, 0, 1]), "a": ones([0] * 5), "p": ones([1, 0.5, 2])}, phase="free")
    sim.run({"x": ones([1, 1, 1, 0, 1]), "a": ones([0.6, -0.5, 0.3, 2, -0.2]), "p": ones([0, 0, 0])},
            phase="nudged")
    loss = np.array([0.6, -0.5, 0.3, 0.0, -0.2])
    expected = 0.5 + 0.1 * np.outer(loss * np.abs(loss), [1, 0.5, 1])
    # a mean of 2000 draws: standard error at most 0.1 * 0.6 * sqrt(0.25 / 2000) = 7e-4
    np.testing.assert_allclose(sim.weights["stochastic"], expected, atol=3e-3)
    assert not np.allclose(sim.weights["stochastic"], sim.weights["all"], atol=1e-3)


# normalize at initialisation ------------------------------------------------------------------------
NORMALIZED = """\
network n { seed = 4; precision = float64; dt = 1 ms }
population x : input(6)
population big : input(200)
population E : E(5)
population F : E(200)
x -> E : dense, init = uniform(0, 1), normalize = 2
E -> E : dense, init = uniform(0, 1), normalize = 0.5, learn = hebb(eta = 0.01)
big -> F : sparse(p = 0.1), init = uniform(0, 1), normalize = 3
E -> x2 : dense, init = uniform(0, 1)
population x2 : E(6)
x2 -> E : transpose("E->x2", scale = 2)
x -> x2 : dense, init = uniform(0, 1), normalize = 1.5
"""


def test_normalize_holds_from_initialisation(tmp_path):
    """EIANN applies normalize_weight after weight init as well as after every step: each row's L1
    sum is the normalize value from the start, for dense, masked (no autapses) and CSR weights,
    for projections that learn and those that do not."""
    model = _load(tmp_path, NORMALIZED)
    sim = model.compile(backend="numpy", batch=1)
    plan = sim.program.projections
    assert plan["E->E"].weights.mask is not None and plan["big->F"].weights.is_sparse  # the three layouts
    for name, total in (("x->E", 2.0), ("E->E", 0.5), ("big->F", 3.0), ("x->x2", 1.5)):
        w = sim.weights[name]
        sums = np.abs(w).sum(axis=1)
        present = sums > 0  # a sparse row may have no synapse: it is left alone
        assert present.sum() >= 0.9 * len(sums)
        np.testing.assert_allclose(sums[present], total, rtol=1e-12, err_msg=name)
    assert (np.diag(sim.weights["E->E"]) == 0).all()  # the mask still holds
    # not normalized: the draw itself (row sums of uniform(0, 1) over 5 inputs are not all 1 or 2)
    assert np.ptp(np.abs(sim.weights["E->x2"]).sum(axis=1)) > 0.1
    np.testing.assert_allclose(sim.weights["x2->E"], 2 * sim.weights["E->x2"].T)
    # the normalized weights are the initial ones: a reset goes back to them
    sim.weights["x->E"] = np.full((5, 6), 0.1)
    sim.reset(weights=True)
    np.testing.assert_allclose(np.abs(sim.weights["x->E"]).sum(axis=1), 2.0, rtol=1e-12)


# a trace read through a temporary -------------------------------------------------------------------
THROUGH_A_TEMPORARY = """\
network s { seed = 1; precision = float64; dt = 1 ms }
population x : input(2)
population H : E(2, tau = 1 steps)
rule before(eta = 0.1) on trial {
    u = 2 * z
    dw = eta * u * post
    z' = (pre - z) / dt
}
rule both(eta = 0.1) on trial {
    u = 2 * z
    z' = (pre - z) / dt
    dw = eta * (u - z) * post + eta * z * post
}
x -> H : dense, init = constant(0.5), learn = before
x -> H : dense, init = constant(0.5), learn = both, name = "both"
"""


def test_a_trace_read_through_a_temporary_is_read_where_the_temporary_is(tmp_path):
    """btsp's dw reads its traces before their equations: a temporary written before a trace's
    equation holds its old value on Numba too (dw's products have the temporaries written in),
    and a dw needing the old and the new value of one trace is still right."""
    model = _load(tmp_path, THROUGH_A_TEMPORARY)
    x = np.array([[[0.2, 0.9]], [[0.6, 0.1]], [[0.3, 0.4]]])
    weights = {}
    for backend in BACKENDS:
        sim = model.compile(backend=backend, batch=1)
        sim.run({"x": x})
        weights[backend] = (sim.weights["x->H"], sim.weights["both"])
    # on trial: dw once, at the last step, where z_old = x of the step before = [0.6, 0.1] and
    # post = 2 projections * 0.5 * (0.3 + 0.4) = 0.7; u = 2 * z_old, so dw = 0.1 * 2 * z_old * post for
    # both rules ((u - z) + z = u)
    expected = 0.5 + 0.1 * 2 * 0.7 * np.array([[0.6, 0.1], [0.6, 0.1]])  # [0.584, 0.514] in each row
    for backend, (before, both) in weights.items():
        np.testing.assert_allclose(before, expected, atol=1e-12, err_msg=backend)
        np.testing.assert_allclose(both, expected, atol=1e-12, err_msg=backend)


DENDRITIC_LOSS = """\
network dl { seed = 2; precision = float64 }
celltype Pyr : excitatory { tau = 1 steps; activation = relu; compartments = [apical] }
celltype PV : inhibitory { tau = 1 steps; activation = relu }
population x : input(4)
population H : Pyr(3)
population D : PV(6)
x -> H : dense, init = uniform(0, 0.5)
x -> D : dense, init = uniform(0, 1)
x -> H.apical : dense, init = uniform(0, 1), name = "top_down"
D -> H.apical : dense, init = uniform(0, 0.1), delay = 0 steps, learn = dendritic_loss(eta = 0.05), phase = nudged
phase free   { steps = 1 }
phase nudged { steps = 1 }
"""


def test_dendritic_loss_cancels_the_free_phase_apical_input(tmp_path):
    """What DendriticLoss_6 is for: the learned inhibition cancels the fixed top-down drive of
    the free phase (8 input patterns, 300 trials), so the dendrite is near 0 before any nudge."""
    sim = _load(tmp_path, DENDRITIC_LOSS).compile(backend="numpy", batch=8)
    x = {"x": np.random.default_rng(0).uniform(0, 1, (1, 8, 4))}

    def free_apical():
        sim.reset_state()
        return np.abs(sim.run(x, phase="free", record=["H.apical"], learn=False)["H.apical"][0]).mean()

    before = free_apical()  # about 0.62
    for _ in range(300):
        sim.reset_state()
        sim.run(x, phase="free")
        sim.run(x, phase="nudged")
    assert free_apical() < 0.25 * before  # about 0.12


def test_a_temporary_holds_the_trace_value_it_was_given(tmp_path):
    """``u = z`` keeps z's value at that line: the trace's equation below it must not change u
    (the NumPy reference once kept a view of the trace). z(0) = 0, z' = 1 / tau with dt / tau = 0.25:
    step 1 reads u = 0 (w stays 1), step 2 reads u = 0.25 (w = 1 + 0.5 * 0.25)."""
    path = tmp_path / "alias.ei"
    path.write_text("""\
network alias { dt = 1 ms; seed = 1; precision = float64 }
population x : input(1)
population y : readout(1)
rule alias(eta = 0.5, tau_z = 4 ms) {
    u = z
    z' = 1 / tau_z
    dw = eta * u
}
x -> y : dense, init = constant(1), learn = alias
""")
    model = eigraph.load(path)
    for backend in ("numpy", "numba"):
        sim = model.compile(backend=backend, batch=1)
        sim.run(steps=1)
        assert sim.weights["x->y"][0, 0] == pytest.approx(1.0), backend
        sim.run(steps=1)
        assert sim.weights["x->y"][0, 0] == pytest.approx(1.125), backend
