"""The Numba backend's stacked dense products (eigraph/backends/numba_gen.py, ``product_groups``).

Non-plastic dense projections that form a grid are delivered by one BLAS product over a matrix whose
blocks are the projections' weights. These tests check which projections are stacked, that each
projection's weights are a live view of its block (so writing weights, saving, loading and
resetting change what the kernel uses), and that every stacking runs the same numbers as the
NumPy reference, which never stacks.
"""

from __future__ import annotations

import numpy as np
import pytest

from eigraph.backends.numba_gen import product_groups
from eigraph.runtime.errors import InputError

TOL = dict(rtol=1e-4, atol=1e-5)
STEPS = 30

HEADER = """\
network stacked {{ dt = 1 ms; seed = 5; precision = float32 }}
celltype Pyr : excitatory {{ tau = 10 ms; activation = relu }}
celltype Int : inhibitory {{ tau = 5 ms; activation = relu }}
population inp : input(5)
population E   : Pyr(12)
population I   : Int(6)
{extra}
"""

GRID = HEADER.format(extra="""\
inp -> E : dense, init = uniform(0, 0.3)
inp -> I : dense, init = uniform(0, 0.3)
E -> E   : dense, init = uniform(0, 0.2)
E -> I   : dense, init = uniform(0, 0.2)
I -> E   : dense, init = uniform(0, 0.3)
I -> I   : dense, init = uniform(0, 0.3)
""")

# no I -> I: the delay-1 grid is incomplete, so E's two targets share a product and I -> E is alone
INCOMPLETE = HEADER.format(extra="""\
inp -> E : dense, init = uniform(0, 0.3)
E -> E   : dense, init = uniform(0, 0.2)
E -> I   : dense, init = uniform(0, 0.2)
I -> E   : dense, init = uniform(0, 0.3)
""")

# E reaches its two targets with different gains: the signed copy of E's rates cannot serve both,
# so the grid falls back to one product per source (the gain applied in the target's update)
GAINS = HEADER.format(extra="""\
inp -> E : dense, init = uniform(0, 0.3)
E -> E   : dense, init = uniform(0, 0.2), gain = 2
E -> I   : dense, init = uniform(0, 0.2)
I -> E   : dense, init = uniform(0, 0.3), gain = 0.5
I -> I   : dense, init = uniform(0, 0.3), gain = 0.5
""")

# a plastic projection keeps its own array; a delay-2 pair and a compartment target stack apart
MIXED = """\
network mixed { dt = 1 ms; seed = 9; precision = float32 }
celltype Pyr : excitatory { tau = 10 ms; activation = relu; compartments = [apical]; apical_gain = 0.5 }
celltype Int : inhibitory { tau = 5 ms; activation = tanh }
population inp : input(4)
population E   : Pyr(10)
population I   : Int(7)
inp -> E        : dense, init = uniform(0, 0.3)
inp -> E.apical : dense, init = uniform(0, 0.3)
E -> E          : dense, init = uniform(0, 0.1), learn = oja(eta = 0.001)
E -> I          : dense, init = uniform(0, 0.2), delay = 2 ms
I -> E          : dense, init = uniform(0, 0.2), delay = 2 ms
I -> I          : dense, init = uniform(0, 0.2)
"""

# H is updated within the step and read without delay by O and P: the product of the grid
# {inp, H} x {O, P} must wait for H (inp -> H is plastic, so it stays out of the grid)
CHAIN = """\
network chain { dt = 1 ms; seed = 3; precision = float32 }
celltype Pyr : excitatory { tau = 10 ms; activation = relu }
celltype Int : inhibitory { tau = 5 ms; activation = relu }
population inp : input(5)
population H   : Pyr(8)
population O   : Pyr(6)
population P   : Int(4)
inp -> H : dense, init = uniform(0, 0.3), learn = hebb(eta = 0.001)
inp -> O : dense, init = uniform(0, 0.3), delay = 0 ms
inp -> P : dense, init = uniform(0, 0.3), delay = 0 ms
H -> O   : dense, init = uniform(0, 0.3), delay = 0 ms
H -> P   : dense, init = uniform(0, 0.3), delay = 0 ms
P -> O   : dense, init = uniform(0, 0.3)
"""

# E reaches E with delay 1 and I with delay 2: one source, two delays, no single copy of its rates
TWO_DELAYS = HEADER.format(extra="""\
inp -> E : dense, init = uniform(0, 0.3)
inp -> I : dense, init = uniform(0, 0.3)
E -> E   : dense, init = uniform(0, 0.2)
E -> I   : dense, init = uniform(0, 0.2), delay = 2 ms
I -> E   : dense, init = uniform(0, 0.3)
I -> I   : dense, init = uniform(0, 0.3)
""")

MODELS = {"grid": GRID, "incomplete": INCOMPLETE, "gains": GAINS, "mixed": MIXED, "chain": CHAIN,
          "two_delays": TWO_DELAYS}


def groups_of(sim) -> list[tuple[dict, list[str], list[str]]]:
    """Each group as ({source: delay}, target keys, projection names), sorted."""
    out = []
    for g in product_groups(sim.program):
        keys = [t + (f".{c}" if c else "") for t, c in g.targets]
        out.append((g.delays, keys, sorted(q.name for q in g.projections)))
    return sorted(out, key=repr)


def compile_both(ei, name: str, batch: int = 3):
    model = ei.load(f"stacked_{name}.ei", MODELS[name])
    return model.compile(backend="numpy", batch=batch), model.compile(backend="numba", batch=batch)


def run_and_compare(ei, reference, sim, steps: int = STEPS, seed: int = 0) -> None:
    inputs = ei.inputs(reference, steps, seed=seed)
    record = [f"{p}.r" for p in reference.program.populations]
    expected = reference.run(inputs, record=record)
    got = sim.run(inputs, record=record)
    for key in record:
        np.testing.assert_allclose(got[key], expected[key], err_msg=key, **TOL)
    for key in reference.weights:
        np.testing.assert_allclose(sim.weights[key], reference.weights[key], err_msg=key, **TOL)


def test_complete_grid_is_one_product(ei):
    """Inputs (delay 0) and recurrent rates (delay 1) of a complete grid: one product a step."""
    _, sim = compile_both(ei, "grid")
    assert groups_of(sim) == [({"inp": 0, "E": 1, "I": 1}, ["E", "I"],
                               ["E->E", "E->I", "I->E", "I->I", "inp->E", "inp->I"])]
    source = sim.backend.source()
    assert source.count("np.dot(") == 1  # one product for all six projections
    assert "r_p0[(n + 1) % " in source and "r_p1[n % " in source  # each source from its own slot


def test_incomplete_grid_stacks_per_source(ei):
    _, sim = compile_both(ei, "incomplete")
    assert groups_of(sim) == [({"E": 1}, ["E", "I"], ["E->E", "E->I"])]
    assert sim.backend.source().count("np.dot(") == 3  # the group, inp->E and I->E


def test_mixed_gains_stack_per_source(ei):
    """E reaches its targets with gains 2 and 1: one signed copy of its rates cannot serve both."""
    _, sim = compile_both(ei, "gains")
    assert groups_of(sim) == [({"E": 1}, ["E", "I"], ["E->E", "E->I"]),
                              ({"I": 1}, ["E", "I"], ["I->E", "I->I"])]


def test_a_source_with_two_delays_splits_the_grid(ei):
    """E -> I has delay 2, the rest of the grid delay 1 or 0: per delay, then per source."""
    _, sim = compile_both(ei, "two_delays")
    assert groups_of(sim) == [({"I": 1}, ["E", "I"], ["I->E", "I->I"]),
                              ({"inp": 0}, ["E", "I"], ["inp->E", "inp->I"])]


def test_plastic_delays_and_compartments(ei):
    _, sim = compile_both(ei, "mixed")
    # the delay-2 pair E->I, I->E covers two of the four cells of {E, I} x {E, I}, and each of
    # its sources reaches one target: no product; I->I (delay 1) is alone too
    assert groups_of(sim) == [({"inp": 0}, ["E", "E.apical"], ["inp->E", "inp->E.apical"])]
    names = {q.name for g in product_groups(sim.program) for q in g.projections}
    assert "E->E" not in names  # plastic: the rule updates its own array


def test_zero_delay_sources_are_final_before_the_product(ei):
    _, sim = compile_both(ei, "chain")
    assert groups_of(sim) == [({"inp": 0, "H": 0}, ["O", "P"], ["H->O", "H->P", "inp->O", "inp->P"])]
    body = sim.backend.source().split("def run_chunk(", 1)[1]
    assert body.index("integrate_p1(") < body.index("product_g0(") < body.index("integrate_p2(")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stacked_kernels_match_the_reference(ei, name):
    reference, sim = compile_both(ei, name)
    run_and_compare(ei, reference, sim)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weights_are_views_of_the_stacked_matrix(ei, name):
    _, sim = compile_both(ei, name)
    groups = product_groups(sim.program)
    assert groups
    for g in groups:
        matrix = sim.backend.groups[g.ident]
        assert matrix.shape == g.shape and matrix.flags.c_contiguous
        for (key, src), q in g.cells.items():
            block = matrix[g.row[key]:g.row[key] + q.weights.shape[0], g.col[src]:g.col[src] + q.weights.shape[1]]
            assert np.shares_memory(sim.weights.stored(q.name).dense, matrix)
            np.testing.assert_array_equal(block, sim.weights[q.name])
        # the cells of the grid are the whole matrix: nothing is left over as zeros by mistake
        assert sum(q.weights.shape[0] * q.weights.shape[1] for q in g.projections) == matrix.size


WRITES = {"grid": (["E->E", "I->E", "inp->I"], "E.r"), "gains": (["E->E", "I->E", "E->I"], "E.r"),
          "chain": (["H->O", "inp->P", "P->O"], "O.r")}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_writing_weights_reaches_the_kernel(ei, name):
    reference, sim = compile_both(ei, name)
    keys, watched = WRITES[name]
    rng = np.random.default_rng(3)
    for key in keys:
        new = rng.uniform(0, 0.4, reference.weights[key].shape)
        if key == "E->E":
            np.fill_diagonal(new, 0)  # dense self-projections have no autapses
        reference.weights[key] = new
        sim.weights[key] = new
    run_and_compare(ei, reference, sim)
    # the write changed the run: with the old weights the rates differ
    fresh, _ = compile_both(ei, name)
    inputs = ei.inputs(fresh, STEPS, seed=1)
    reference.reset()
    assert not np.allclose(fresh.run(inputs, record=[watched])[watched],
                           reference.run(inputs, record=[watched])[watched])


def test_in_place_writes_to_stored_weights_reach_the_kernel(ei):
    reference, sim = compile_both(ei, "grid")
    for s in (reference, sim):
        s.weights.stored("I->E").dense[...] *= 3  # stronger inhibition, written in place
    run_and_compare(ei, reference, sim)


def test_save_load_and_reset_keep_the_views(ei, tmp_path):
    reference, sim = compile_both(ei, "grid")
    run_and_compare(ei, reference, sim, seed=2)
    sim.save(tmp_path / "state.npz")
    before = {k: sim.weights[k] for k in sim.weights}
    sim.weights["E->I"] = np.zeros_like(before["E->I"])
    sim.load(tmp_path / "state.npz")
    for key, value in before.items():
        np.testing.assert_array_equal(sim.weights[key], value)
    reference.reset()
    sim.reset()
    run_and_compare(ei, reference, sim, seed=4)
    # reset(weights=True) restores the initial weights in place, into the stacked matrix
    sim.weights["I->I"] = np.zeros_like(before["I->I"])
    sim.reset(weights=True)
    reference.reset(weights=True)
    assert np.shares_memory(sim.weights.stored("I->I").dense, sim.backend.groups["g0"])
    run_and_compare(ei, reference, sim, seed=5)


def test_replaced_weight_arrays_reach_the_kernel(ei):
    """Assigning a new array to a stacked projection's storage (not writing into it) still counts."""
    reference, sim = compile_both(ei, "grid")
    new = np.random.default_rng(8).uniform(0, 0.5, reference.weights["I->E"].shape).astype(np.float32)
    for s in (reference, sim):
        s.weights.stored("I->E").dense = new.copy()
    run_and_compare(ei, reference, sim)
    assert np.shares_memory(sim.weights.stored("I->E").dense, sim.backend.groups["g0"])  # back in its block
    sim.weights.stored("I->E").dense = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(InputError, match="I->E.*shape"):
        sim.run(ei.inputs(sim, 2))


def test_two_numba_simulators_of_one_program_share_its_weights(ei):
    """Each stacks the Program's weights into its own matrix; a write through either reaches both."""
    from eigraph.compile.lower import lower
    from eigraph.runtime.simulator import Simulator

    model = ei.load("stacked_grid.ei", GRID)
    program = lower(model.graph)
    first, second = Simulator(program, backend="numba", batch=2), Simulator(program, backend="numba", batch=2)
    reference = model.compile(backend="numpy", batch=2)
    new = np.full(reference.weights["I->E"].shape, 0.05)
    first.weights["I->E"] = new
    reference.weights["I->E"] = new
    run_and_compare(ei, reference, first)
    reference.reset()
    run_and_compare(ei, reference, second)


@pytest.mark.parametrize("name", ["grid", "chain"])
def test_signed_rates_written_by_the_update_survive_split_runs(ei, name):
    """Delay-1 sources store their signed rates for the next step's product in their own update;
    the first step of every call copies them instead (the block is scratch). Runs cut into calls
    of 1, 6 and 23 steps must equal one run."""
    reference, sim = compile_both(ei, name)
    source = sim.backend.source()
    if name == "grid":
        assert "G_g0[(n + 1) % 2, " in source and "if t == 0:" in source
    inputs = ei.inputs(reference, STEPS, seed=6)
    record = [f"{p}.r" for p in reference.program.populations]
    expected = reference.run(inputs, record=record)
    got: dict[str, list] = {key: [] for key in record}
    start = 0
    for length in (1, 6, 23):
        part = sim.run({k: v[start:start + length] for k, v in inputs.items()}, record=record)
        for key in record:
            got[key].append(part[key])
        start += length
    for key in record:
        np.testing.assert_allclose(np.concatenate(got[key]), expected[key], err_msg=key, **TOL)
