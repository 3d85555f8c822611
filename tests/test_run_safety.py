"""``eigraph run`` never loses or silently changes the user's work (issue 10): --resume goes on with
the stored run configuration and refuses a conflicting option; --force replaces only the files
eigraph wrote; two runs never write into one folder at once; a run that fails with NaN leaves no
empty folder; a damaged checkpoint gets a plain message; a run at chance with exploding weights
warns; the compile step is announced. Small models on the numpy backend: fast."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import eigraph.runtime.train as train_module
from eigraph.cli import main
from eigraph.runtime.results import LOCK, MANIFEST

ROOT = Path(__file__).resolve().parents[1]

MODEL = """
network m {{ dt = 10 ms; seed = 1 }}
population stim : input(3)
population E : E(10)
population out : readout(2)
stim -> E : dense, init = uniform(0, 0.1)
E -> out : dense, init = constant(0), learn = {rule}
{extra}
run {{ task = decision; inputs = stim; targets = out; trials = 40; batch = 4 }}
"""

# a rule that becomes NaN (sqrt of a negative number) from step 6 of a trial on, while learning
EXPLODE = """
rule explode(eta = 0.1) {
    dw = eta * pre * sqrt(5.5 - t / dt)
}
"""


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(name="m.ei", rule="delta(eta = 1e-2)", extra=""):
        Path(name).write_text(MODEL.format(rule=rule, extra=extra))
        return name

    return write


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["run", *[str(a) for a in args], "--backend", "numpy", "--no-plots"])
    out, err = capsys.readouterr()
    return code, out, err


def run_plain(capsys, *args) -> tuple[int, str, str]:
    code = main(["run", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return code, out, err


class StopAfterTwo(train_module.Stop):
    """Stops the loop after two training batches, as a Ctrl-C would."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.requested or self.calls > 2


# ------------------------------------------------------------------------ 1. resume uses the stored run
def test_resume_goes_on_with_the_stored_trials_and_refuses_a_conflicting_override(capsys, model, monkeypatch):
    name = model()
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "Stop", StopAfterTwo)
        code, _, err = run(capsys, name, "-o", "D", "--trials", "24")
    assert code == 130, err
    assert "interrupted after 8 of 24 trials" in err and "--resume" in err
    meta = train_module.read_checkpoint(Path("D/checkpoint.npz"))
    assert meta["trials_done"] == 8 and meta["config"]["trials"] == 24 and meta["config"]["backend"] == "numpy"

    code, _, err = run_plain(capsys, name, "-o", "D", "--resume", "--trials", "12")
    assert code == 2
    assert "--trials 12 (the run was started with 24)" in err and "leave these options out" in err
    code, _, err = run_plain(capsys, name, "-o", "D", "--resume", "--backend", "numba", "--seed", "5")
    assert code == 2
    assert "--backend numba (the run was started with numpy)" in err and "--seed 5 (the run was started with 1)" in err
    assert not Path("D/metrics.json").exists()

    # neither --trials nor --backend: the stored 24 trials on the stored numpy backend (the same value is fine)
    code, out, err = run_plain(capsys, name, "-o", "D", "--resume", "--no-plots", "--seed", "1")
    assert code == 0, err
    assert "resuming D/checkpoint.npz at trial 8 of 24" in err and "after 24 training trials" in out
    metrics = json.loads(Path("D/metrics.json").read_text())
    assert metrics["trials"] == 24 and metrics["backend"] == "numpy"


# ------------------------------------------------------------------------ 2. --force keeps the user's files
def test_force_replaces_only_what_eigraph_wrote(capsys, model):
    name = model()
    code, _, err = run_plain(capsys, name, "-o", "out", "--backend", "numpy")  # with plots
    assert code == 0, err
    written = set(json.loads(Path("out", MANIFEST).read_text())["files"])
    assert {"metrics.json", "checkpoint.npz", "learning_curve.png"} <= written
    Path("out/my_figure_for_paper.png").write_bytes(b"mine")
    Path("out/notes.txt").write_text("keep me")
    old = Path("out/metrics.json").stat().st_mtime_ns

    code, _, err = run(capsys, name, "-o", "out", "--force")
    assert code == 0, err
    assert Path("out/my_figure_for_paper.png").read_bytes() == b"mine"
    assert Path("out/notes.txt").read_text() == "keep me"
    assert not Path("out/learning_curve.png").exists()  # eigraph's, not written by a --no-plots run
    assert Path("out/metrics.json").stat().st_mtime_ns != old  # replaced by the new run
    assert "my_figure_for_paper.png" not in json.loads(Path("out", MANIFEST).read_text())["files"]


def test_force_refuses_to_replace_a_users_file_of_the_same_name(capsys, model):
    name = model()
    Path("mine").mkdir()
    Path("mine/metrics.json").write_text('{"my": "numbers"}')
    Path("mine/weights.png").write_bytes(b"my plot")
    code, _, err = run(capsys, name, "-o", "mine", "--force")
    assert code == 2
    assert "'metrics.json'" in err and "eigraph did not write" in err and "move or rename it" in err
    assert Path("mine/metrics.json").read_text() == '{"my": "numbers"}'
    assert Path("mine/weights.png").read_bytes() == b"my plot"  # not written with --no-plots: no clash, kept
    assert {p.name for p in Path("mine").iterdir()} <= {"metrics.json", "weights.png", LOCK, MANIFEST}


# ------------------------------------------------------------------------ 3. one run per folder at a time
def test_a_second_run_into_a_folder_in_use_refuses(capsys, model):
    name = model()
    Path("busy").mkdir()
    with open(Path("busy", LOCK), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("4242")
        handle.flush()
        result = subprocess.run([sys.executable, "-m", "eigraph.cli", "run", name, "-o", "busy", "--backend", "numpy",
                                 "--no-plots", "-q"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        code, _, err = run(capsys, name, "-o", "busy", "--force")  # --force never takes a folder in use either
        assert code == 2 and "another eigraph run (process 4242) is writing to 'busy'" in err
    assert result.returncode == 2, result.stderr
    assert "another eigraph run (process 4242) is writing to 'busy'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path("busy/checkpoint.npz").exists() and not Path("busy/metrics.json").exists()


# ------------------------------------------------------------------------ 4. NaN leaves no empty folder
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_run_stopped_by_nan_leaves_no_empty_folder(capsys, model):
    name = model(rule="explode", extra=EXPLODE)
    code, _, err = run(capsys, name, "-o", "deep/nan")
    assert code == 1, err
    assert "explode" in err and "after 0 training trials" in err
    assert "Traceback" not in err
    assert not Path("deep").exists()
    Path("kept").mkdir()
    Path("kept/notes.txt").write_text("mine")
    code, _, err = run(capsys, name, "-o", "kept", "--force")
    assert code == 1
    assert {p.name for p in Path("kept").iterdir()} <= {"notes.txt", LOCK, MANIFEST}
    assert Path("kept/notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------ 5. a damaged checkpoint
def test_resume_from_a_npy_or_damaged_checkpoint_says_so_plainly(capsys, model):
    name = model()
    Path("out").mkdir()
    for content in (np.arange(5.0), np.array([{"a": 1}], dtype=object)):
        with open("out/checkpoint.npz", "wb") as handle:
            np.save(handle, content, allow_pickle=True)
        code, _, err = run(capsys, name, "-o", "out", "--resume")
        assert code == 2, err
        assert "cannot read the checkpoint 'out/checkpoint.npz': it is not an eigraph run checkpoint" in err
        assert "allow_pickle" not in err and "Traceback" not in err and "internal error" not in err
    np.savez("out/checkpoint.npz", trainer=np.frombuffer(b'{"format": 1}', dtype=np.uint8), meta=np.zeros(1))
    code, _, err = run(capsys, name, "-o", "out", "--resume")
    assert code == 2 and "it is not an eigraph run checkpoint" in err and "internal error" not in err


# ------------------------------------------------------------------------ 6. exploding weights at chance
def test_a_run_at_chance_with_exploding_weights_warns(capsys, model):
    name = model(rule="delta(eta = 1e3)")
    code, _, err = run(capsys, name, "-o", "hot")
    assert code == 0, err
    assert "warning: the test score is at chance" in err and "lower the rules' eta" in err
    warnings = json.loads(Path("hot/metrics.json").read_text())["warnings"]
    assert len(warnings) == 1 and "learning rate is probably far too large" in warnings[0]
    code, _, err = run(capsys, model("calm.ei"), "-o", "calm", "--trials", "200")
    assert code == 0 and "warning" not in err
    assert "warnings" not in json.loads(Path("calm/metrics.json").read_text())


# ------------------------------------------------------------------------ 7. the compile step is announced
def test_the_compile_step_is_announced(capsys, model):
    code, _, err = run(capsys, model(), "-o", "out", "--batch", "8", "--trials", "8")
    assert code == 0, err
    assert "compiling kernels for batch 8 (numpy backend)" in err
    assert err.index("compiling kernels") < err.index("training trials in batches")


def test_a_lock_file_that_cannot_be_opened_is_a_plain_error(capsys, model):
    name = model()
    Path("odd", LOCK).mkdir(parents=True)  # a folder where the lock file goes
    code, _, err = run(capsys, name, "-o", "odd")
    assert code == 2 and "cannot write to 'odd'" in err and LOCK in err
    assert "internal error" not in err
