"""Sizes and resource limits are checked before anything is allocated (docs/runtime.md, Limits):
a model too large for memory is warned about by validate (W530) and refused by compile and run
with the estimate; absurd dt and delays are errors at validate (U531-U533); a delay longer than
the trial is a warning (W531); mask and weights files are read only when they are regular files
(F012) whose .npy header is sane (F013). All on the numpy backend, nothing compiled with numba.
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np
import pytest
from numpy.lib import format as npformat

from eigraph.check import resources
from eigraph.cli import main
from eigraph.compile.lower import CompileError
from eigraph.model.load import check_path
from eigraph.runtime import simulator as simulator_module
from eigraph.runtime.errors import InputError

GIB = 1024**3
AVAILABLE = 16 * GIB  # what the tests pretend is free, so the outcome does not depend on the machine


@pytest.fixture(autouse=True)
def sixteen_gib(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: AVAILABLE)
    monkeypatch.setattr(simulator_module, "available_memory", lambda: AVAILABLE)


def model_text(size=10, connectivity="dense", delay="", dt="1 ms", run=""):
    return (f"network m {{ dt = {dt}; seed = 1 }}\n"
            "population inp : input(4)\n"
            f"population E   : E({size})\n"
            "inp -> E : dense\n"
            f"E -> E : {connectivity}{', delay = ' + delay if delay else ''}\n"
            + (f"run {{ {run} }}\n" if run else ""))


def check(tmp_path, text, arrays=None, name="m.ei"):
    """(model or None, diagnostics) of ``text`` written in tmp_path, and the seconds it took."""
    path = tmp_path / name
    for file, array in (arrays or {}).items():
        np.save(tmp_path / file, array)
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    with contextlib.chdir(tmp_path):
        model, found, _ = check_path(name)
    return model, found, time.perf_counter() - start


def codes(found):
    return [d.code for d in found]


def fifo(path):
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def lying_npy(path, shape=(100000, 100000)):
    """A 192-byte .npy whose header claims ``shape`` float64 values."""
    with open(path, "wb") as handle:
        npformat.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": shape})
        handle.write(b"\0" * 64)


# -- the estimate ---------------------------------------------------------------------------------
def test_estimate_counts_weights_by_connectivity(tmp_path):
    sizes = {}
    for connectivity in ("dense", "sparse(p = 0.01)", "fixed_in(k = 10)", "one_to_one"):
        model, found, _ = check(tmp_path, model_text(10000, connectivity))
        assert not [d for d in found if d.is_error], found
        sizes[connectivity] = resources.estimate(model.graph)["weights"]
    inp = 4 * 10000 * 12  # inp -> E, dense: float32 values and their float64 draw
    assert sizes["dense"] == pytest.approx(inp + 10000**2 * 12)
    assert sizes["sparse(p = 0.01)"] == pytest.approx(inp + 0.01 * 10000 * 9999 * 16 + 10001 * 8, rel=1e-3)
    assert sizes["fixed_in(k = 10)"] == pytest.approx(inp + 10 * 10000 * 16 + 10001 * 8)
    assert sizes["one_to_one"] < sizes["fixed_in(k = 10)"] < sizes["sparse(p = 0.01)"] < sizes["dense"]


def test_estimate_counts_delays_batch_and_records(tmp_path):
    model, _, _ = check(tmp_path, model_text(1000, delay="1000 steps"))
    one = resources.estimate(model.graph, batch=1)
    eight = resources.estimate(model.graph, batch=8, steps=500)
    assert one["delays"] >= 1001 * 1000 * 4  # delay steps x neurons x float32
    assert eight["delays"] == pytest.approx(8 * one["delays"])
    assert eight["records"] >= 500 * 8 * 1004 * 4  # steps x batch x neurons
    assert one["records"] == 0


def test_human_units():
    assert resources.human(200000**2 * 8) == "298 GiB"
    assert resources.human(512) == "512 bytes"
    assert resources.human(1.5 * 1024**2) == "1.5 MiB"


# -- memory: validate warns, compile and run refuse --------------------------------------------
def test_huge_dense_population_warns_at_validate_and_is_refused_by_compile(tmp_path):
    model, found, seconds = check(tmp_path, model_text(200000))
    (w,) = [d for d in found if d.code == "W530"]
    assert not w.is_error and "447 GiB" in w.message and "16 GiB is available" in w.message
    assert seconds < 10
    start = time.perf_counter()
    with pytest.raises(CompileError) as info:
        model.compile(backend="numpy")
    assert time.perf_counter() - start < 5  # refused before a weight is drawn
    assert "447 GiB" in str(info.value) and "16 GiB is available" in str(info.value)


def test_model_that_fits_is_not_warned_about(tmp_path):
    model, found, _ = check(tmp_path, model_text(100))
    assert "W530" not in codes(found)
    assert model.compile(backend="numpy").batch == 1


def test_cli_compile_refuses_without_a_traceback(tmp_path, capsys):
    (tmp_path / "big.ei").write_text(model_text(40000), encoding="utf-8")
    start = time.perf_counter()
    code = main(["compile", str(tmp_path / "big.ei"), "-o", str(tmp_path / "out"), "--backend", "numpy"])
    out, err = capsys.readouterr()
    assert code == 1 and time.perf_counter() - start < 10
    assert "17.9 GiB" in err and "available" in err and "Traceback" not in out + err


def test_huge_batch_is_refused(tmp_path):
    model, _, _ = check(tmp_path, model_text(100))
    with pytest.raises(CompileError) as info:
        model.compile(backend="numpy", batch=10**9)
    assert "batch 1000000000" in str(info.value) and "TiB" in str(info.value)


def test_simulator_run_refuses_records_that_do_not_fit(tmp_path):
    model, _, _ = check(tmp_path, model_text(100))
    sim = model.compile(backend="numpy")
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        sim.run(steps=10**9)  # every population's rate: 104 neurons
    assert time.perf_counter() - start < 2
    assert "387 GiB" in str(info.value) and "1000000000 steps" in str(info.value)
    assert sim.n == 0  # nothing ran


def test_run_with_huge_steps_is_refused_before_training(tmp_path, capsys):
    text = model_text(10, run="task = digits; inputs = inp; targets = E; batch = 4")
    text = text.replace("input(4)", "input(64)")
    (tmp_path / "m.ei").write_text(text, encoding="utf-8")
    code = main(["run", str(tmp_path / "m.ei"), "--backend", "numpy", "--steps", "100000000", "-q",
                 "-o", str(tmp_path / "res")])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "100000000 steps a trial" in err and "GiB" in err and "Traceback" not in out + err
    assert not (tmp_path / "res").exists()


# -- absurd numbers at validate --------------------------------------------------------------------
def test_tiny_dt(tmp_path):
    _, found, _ = check(tmp_path, model_text(dt="1e-300 s"))
    (d,) = [d for d in found if d.code == "U531"]
    assert d.is_error and "1e-300 s" in d.message and (d.span.line, d.span.column) == (1, 18)


def test_dt_not_finite(tmp_path):
    model, _, _ = check(tmp_path, model_text())
    model.graph.graph["dt"] = float("inf")
    (d,) = resources.check(model.graph)
    assert d.code == "U530" and d.is_error and d.span.line == 1


@pytest.mark.parametrize("delay, shown", [("1000000000 steps", "1e+09 steps"), ("1e300 s", "1e+303 steps")])
def test_huge_delay(tmp_path, delay, shown):
    _, found, seconds = check(tmp_path, model_text(delay=delay))
    (d,) = [d for d in found if d.code == "U533"]
    assert d.is_error and shown in d.message and "10,000,000" in d.message
    assert (d.span.line, d.span.column) == (5, 25) and seconds < 10


def test_delay_longer_than_the_trial_warns(tmp_path):
    _, found, _ = check(tmp_path, model_text(delay="20 steps", run="task = digits; steps = 10"))
    (d,) = [d for d in found if d.code == "W531"]
    assert not d.is_error and "20 steps" in d.message and "10 steps" in d.message
    _, found, _ = check(tmp_path, model_text(delay="5 steps", run="task = digits; steps = 10"))
    assert "W531" not in codes(found)


# -- files ------------------------------------------------------------------------------------------
FILES = """\
network files { dt = 1 ms; seed = 1 }
population inp : input(4)
population E   : E(5)
inp -> E : weights("w.npy")
E   -> E : mask("m.npy"), init = uniform(0, 1)
"""


def file_findings(tmp_path, w=None, m=None):
    arrays = {"w.npy": np.full((5, 4), 0.1), "m.npy": np.ones((5, 5), dtype=bool)}
    for name, maker in (("w.npy", w), ("m.npy", m)):
        if maker is not None:
            arrays.pop(name)
            maker(tmp_path / name)
    _, found, seconds = check(tmp_path, FILES, arrays, name="files.ei")
    return {d.span.line: d for d in found if d.code.startswith("F")}, seconds


def test_good_files_are_read(tmp_path):
    found, _ = file_findings(tmp_path)
    assert found == {}


def test_fifo_as_mask_and_weights_is_not_opened(tmp_path):
    found, seconds = file_findings(tmp_path, w=os.mkfifo, m=os.mkfifo)  # opening one would hang
    assert {line: d.code for line, d in found.items()} == {4: "F012", 5: "F012"}
    assert "named pipe" in found[4].message and seconds < 10


def test_folder_and_device_as_files(tmp_path):
    found, _ = file_findings(tmp_path, w=os.mkdir, m=lambda p: os.symlink("/dev/zero", p))
    assert found[4].code == "F012" and "folder" in found[4].message
    assert found[5].code == "F012" and "device" in found[5].message


def test_lying_npy_header_is_not_loaded(tmp_path):
    found, seconds = file_findings(tmp_path, w=lying_npy)
    d = found[4]
    assert d.code == "F013" and "100000 x 100000" in d.message and "74.5 GiB" in d.message
    assert "64 bytes" in d.message and seconds < 10


def test_wrong_shape_is_reported_from_the_header(tmp_path):
    found, _ = file_findings(tmp_path, w=lambda p: np.save(p, np.ones((4, 5))))
    assert found == {}  # T404 names the shape: the structure check, not a file problem
    _, all_found, _ = check(tmp_path, FILES, name="files.ei")
    assert any(d.code == "T404" and "(4, 5)" in d.message for d in all_found)


def test_object_array_is_refused_without_pickle_advice(tmp_path):
    found, _ = file_findings(tmp_path, w=lambda p: np.save(p, np.array([{"a": 1}], dtype=object),
                                                           allow_pickle=True))
    d = found[4]
    assert d.code == "F013" and "not numbers" in d.message
    assert "pickle" not in (d.message + d.hint).lower()


def test_npy_header_checks_the_expected_shape(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2)))
    assert resources.npy_header(tmp_path / "a.npy") == ((3, 2), np.dtype("float64"))
    with pytest.raises(resources.FileProblem) as info:
        resources.load_array(tmp_path / "a.npy", expected=(2, 3))
    assert info.value.code == "F013" and "(3, 2)" in info.value.message


# -- every member of the class, quickly ------------------------------------------------------------
CLASS = {
    "huge dense population": (lambda p: model_text(200000), None, "W530", "447 GiB"),
    "huge delay in steps": (lambda p: model_text(delay="1000000000 steps"), None, "U533", "1e+09"),
    "huge delay in seconds": (lambda p: model_text(delay="1e300 s"), None, "U533", "1e+303"),
    "tiny dt": (lambda p: model_text(dt="1e-300 s"), None, "U531", "1e-300"),
    "huge batch": (lambda p: model_text(100, run="task = digits; batch = 1000000000"), None, "W530", "TiB"),
    "lying npy header": (lambda p: lying_npy(p / "w.npy") or FILES, "files", "F013", "74.5 GiB"),
    "FIFO as weights": (lambda p: fifo(p / "w.npy") or FILES, "files", "F012", "named pipe"),
    "FIFO as mask": (lambda p: fifo(p / "m.npy") or FILES, "files", "F012", "named pipe"),
}


@pytest.mark.parametrize("member", sorted(CLASS))
def test_every_resource_problem_is_caught_quickly(tmp_path, member):
    make, kind, code, number = CLASS[member]
    arrays = {"w.npy": np.full((5, 4), 0.1), "m.npy": np.ones((5, 5), dtype=bool)} if kind else {}
    for name in list(arrays):
        np.save(tmp_path / name, arrays.pop(name))
    text = make(tmp_path)
    _, found, seconds = check(tmp_path, text, name="files.ei" if kind else "m.ei")
    hits = [d for d in found if d.code == code]
    assert hits, f"{member}: expected {code}, got {codes(found)}"
    assert any(number in d.message for d in hits), [d.message for d in hits]
    assert all(d.span is not None and d.hint for d in hits)
    assert seconds < 10, f"{member} took {seconds:.1f} s: something was allocated or waited on"


def test_data_file_state_and_checkpoint_must_be_regular_files(tmp_path):
    from eigraph.runtime.tasks import TaskError
    from eigraph.runtime.tasks.data import read_data_file
    from eigraph.runtime.train import read_checkpoint

    fifo(tmp_path / "pipe.npz")
    start = time.perf_counter()
    with pytest.raises(TaskError, match="named pipe"):
        read_data_file(tmp_path / "pipe.npz")
    with pytest.raises(TaskError, match="named pipe"):
        read_checkpoint(tmp_path / "pipe.npz")
    model, _, _ = check(tmp_path, model_text())
    sim = model.compile(backend="numpy")
    with pytest.raises(InputError, match="folder"):
        sim.load(tmp_path)
    assert time.perf_counter() - start < 5


def test_run_refuses_a_long_trial_of_a_task_with_its_own_length(tmp_path, capsys):
    from pathlib import Path

    model = Path(__file__).resolve().parent.parent / "models" / "ngc_forecast.ei"
    start = time.perf_counter()
    code = main(["run", str(model), "--backend", "numpy", "--steps", "100000000", "-q", "-o", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 1 and time.perf_counter() - start < 10
    assert "325 GiB" in err and "100000000 steps a trial" in err and "Traceback" not in out + err


def test_spectral_radius_counts_the_dense_recurrent_matrix(tmp_path):
    text = model_text(50000, "sparse(p = 0.0001)").replace("seed = 1 }", "seed = 1; spectral_radius = 0.9 }")
    model, found, _ = check(tmp_path, text)
    assert resources.estimate(model.graph)["weights"] >= 50000**2 * 8
    assert any(d.code == "W530" and "GiB" in d.message for d in found)
    with pytest.raises(CompileError, match="18.6 GiB"):
        model.compile(backend="numpy")


def test_data_file_headers_are_checked_and_pickles_are_not_advised(tmp_path):
    import zipfile

    from eigraph.runtime.tasks import TaskError
    from eigraph.runtime.tasks.data import read_data_file

    lying_npy(tmp_path / "inputs.npy")
    np.save(tmp_path / "targets.npy", np.zeros((2, 3, 1)))
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as archive:
        archive.write(tmp_path / "inputs.npy", "inputs.npy")
        archive.write(tmp_path / "targets.npy", "targets.npy")
    start = time.perf_counter()
    with pytest.raises(TaskError) as info:
        read_data_file(tmp_path / "lie.npz")
    assert time.perf_counter() - start < 5
    assert "inputs" in str(info.value) and "74.5 GiB" in str(info.value)
    np.savez(tmp_path / "objects.npz", inputs=np.array([{"a": 1}], dtype=object), targets=np.zeros((2, 3, 1)))
    with pytest.raises(TaskError) as info:
        read_data_file(tmp_path / "objects.npz")
    assert "not numbers" in str(info.value) and "pickle" not in str(info.value).lower()
