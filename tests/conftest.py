"""Shared fixtures for the runtime tests: the ``backend`` fixture (every test that takes it runs
on every backend, the Nengo pattern) and ``ei``, a helper that writes small models, loads them
and makes inputs and record lists.

Models written by tests are loaded by a path *relative* to their folder, so the generated Numba
module (which names the model file) is the same text on every test run and the kernels compiled
once stay in the cache (``~/.cache/eigraph``) for the next run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

import eigraph

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
BACKENDS = ("numpy", "numba")
EXAMPLES = sorted(p.name for p in [*MODELS.glob("*.ei"), *MODELS.glob("*.yaml")])


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The name of a backend; a test taking it runs once per backend."""
    return request.param


class Helper:
    """Writes, loads and feeds models. One per session, so loaded models are shared."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._loaded: dict[tuple, eigraph.model.spec.Model] = {}

    # models ------------------------------------------------------------------------------------
    def write(self, name: str, text: str, arrays: dict[str, np.ndarray] | None = None,
              folder: Path | None = None) -> Path:
        folder = folder or self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for file, array in (arrays or {}).items():
            np.save(folder / file, array)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def load(self, name: str, text: str, arrays: dict[str, np.ndarray] | None = None,
             folder: Path | None = None):
        """Write ``text`` as ``name`` (and ``arrays`` as .npy files beside it) and load it."""
        folder = folder or self.folder
        key = (str(folder), name, text)
        if key not in self._loaded:
            self.write(name, text, arrays, folder)
            with contextlib.chdir(folder):
                self._loaded[key] = eigraph.load(name)
        return self._loaded[key]

    def load_path(self, path: Path):
        """Load a model file at ``path`` (relative to its folder, see the module docstring)."""
        path = Path(path)
        key = (str(path.parent), path.name, None)
        if key not in self._loaded:
            with contextlib.chdir(path.parent):
                self._loaded[key] = eigraph.load(path.name)
        return self._loaded[key]

    def example(self, name: str):
        return self.load_path(MODELS / name)

    # runs --------------------------------------------------------------------------------------
    @staticmethod
    def inputs(sim, steps: int, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
        """Random non-negative inputs, time x batch x neurons, for every input population."""
        rng = np.random.default_rng(seed)
        return {p.name: scale * rng.random((steps, sim.batch, p.size))
                for p in sim.program.populations.values() if p.role == "input"}

    @staticmethod
    def feed(sim, steps: int, seed: int = 0) -> dict:
        """Keyword arguments for ``sim.run``: random inputs and, for models that learn, random
        targets for every population a plastic projection ends on and a random reward."""
        rng = np.random.default_rng(seed)
        kwargs = {"inputs": {p.name: rng.random((steps, sim.batch, p.size))
                             for p in sim.program.populations.values() if p.role == "input"},
                  "steps": steps}
        plastic = getattr(sim.program, "plastic", [])
        if plastic:
            kwargs["targets"] = {q.target: rng.random((steps, sim.batch, sim.program.populations[q.target].size))
                                 for q in plastic}
            kwargs["reward"] = rng.standard_normal((steps, sim.batch))
        return kwargs

    @staticmethod
    def recordables(sim) -> list[str]:
        """Every recordable variable: POP.r, POP.x (hidden and readout) and POP.COMPARTMENT."""
        names = []
        for p in sim.program.populations.values():
            names.append(f"{p.name}.r")
            if p.role != "input":
                names.append(f"{p.name}.x")
            names += [f"{p.name}.{c}" for c in p.compartments]
        return names


def run_batch(model) -> int:
    """The batch size of the model's ``run`` block (1 without one): ``eigraph run`` compiles the
    example models at it (tests/test_run.py), so a test comparing an example across backends at
    this batch reuses that kernel instead of compiling one more (each batch size is a Numba
    compile of its own: ``B`` is a constant of the generated kernel)."""
    run = getattr(model, "run", None)
    return int(run.batch) if run is not None and run.batch else 1


def validate_finding(tmp_path, capsys, text: str, code: str | None, where: tuple[int, int] | None) -> None:
    """``eigraph validate`` of ``text`` (written to m.ei): with ``code`` None it passes (exit 0);
    otherwise it fails (exit 1) with error ``code`` at ``where`` (line, column) and a hint."""
    from eigraph.cli import main

    path = tmp_path / "m.ei"
    path.write_text(text)
    rc = main(["validate", str(path)])
    out = capsys.readouterr().out
    if code is None:
        assert rc == 0, out
        return
    assert rc == 1, out
    line, column = where
    assert f"m.ei:{line}:{column}: error[{code}]" in out, out
    assert "hint:" in out


@pytest.fixture(scope="session")
def ei(tmp_path_factory) -> Helper:
    return Helper(tmp_path_factory.mktemp("models"))


# LANGUAGE.md section 1, verbatim: the spec's complete example (kept here so tests run without
# the spec file beside the checkout); test_cli, test_fuzz and test_roundtrip use it.
SPEC_EXAMPLE = """\
# models/decision.ei: Song, Yang & Wang (2016)-style E/I RNN on a 2-choice decision task
network decision {
    dt        = 10 ms
    seed      = 1
    precision = float32          # float32 | float64
}

celltype Pyr : excitatory { tau = 100 ms; activation = relu }
celltype PV  : inhibitory { tau = 50 ms;  activation = relu }

population stim   : input(3)
population E      : Pyr(80) { noise = 0.15 }
population I      : PV(20)
population choice : readout(2)

stim -> E      : dense,             init = uniform(0, 0.1)
E    -> E      : sparse(p = 0.2),   init = gamma(2, 0.02)
E    -> I      : dense,             init = halfnormal(1 / sqrt(fan_in))
I    -> E      : dense,             init = halfnormal(1 / sqrt(fan_in)), learn = vogels(eta = 1e-3, rho0 = 0.1)
E    -> choice : dense,             init = constant(0), learn = delta(eta = 1e-2)

rule vogels(eta = 1e-3, rho0 = 0.1) {
    dw = eta * pre * (post - rho0)
}

run {
    task    = decision(coherences = [0.032, 0.064, 0.128, 0.256, 0.512])
    inputs  = stim
    targets = choice
    trials  = 5000
    batch   = 32
}
"""
