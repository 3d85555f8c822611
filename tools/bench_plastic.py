"""Plastic benchmark: the dynamics workload of tools/bench.py with Oja's rule on E -> E every step.

    python tools/bench_plastic.py [--sizes 64:8,256:32,1024:64] [--connectivity dense,sparse]
                                  [--steps 200] [--repeats R] [--threads K] [--json OUT]

The model is tools/bench.py's E/I RNN (80% E, 20% I, relu, tau 100 ms, dt 10 ms, 16 inputs,
dense or sparse(p = 0.1) recurrence) with ``E -> E : ..., learn = oja(eta = 1e-7)``. Every step,
after the rates are updated, each implementation applies the same update to the E -> E
magnitudes, averaged over the batch (docs/runtime.md):

    dW = eta * (post @ pre.T / B - mean_b(post^2)[:, None] * W);  W = max(W + dW, 0) on the synapses

with ``pre`` the E rates delivered this step (the start of the step) and ``post`` the new ones.
Implementations: eigraph (Numba backend, `sim.run`), PyTorch eager (the loop a lab writes by
hand: products, then the update and the Dale clamp as tensor ops, the synapse mask as a
multiply) and NumPy, all from the same initial weights; their final E -> E weights are checked
against eigraph's before timing. Reported: median wall time of one trial (reset + T steps) and
torch/eigraph. Targets (issue 4): eigraph never slower than PyTorch eager, at least 3x faster at
N = 64.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--threads" in " ".join(sys.argv[1:]):  # BLAS pools read these when numpy loads: set them first
    import os

    _k = next(k for k, a in enumerate(sys.argv) if a.startswith("--threads"))
    _value = sys.argv[_k].split("=", 1)[1] if "=" in sys.argv[_k] else sys.argv[_k + 1]
    for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_variable] = _value
import bench  # noqa: E402  (tools/bench.py: the model text, sizes, timing)

ETA = 1e-7  # Oja drives E rows to unit norm, which makes recurrent excitation run away; at
# this rate it does not within a trial (the arithmetic per step does not depend on eta)


def model_text(n: int, connectivity: str) -> str:
    text = bench.model_text(n, connectivity)
    line = next(line for line in text.splitlines() if line.startswith("E -> E"))
    return text.replace(line, line + f", learn = oja(eta = {ETA})").replace("network bench_", "network plastic_")


class Plastic:
    def __init__(self, n: int, batch: int, connectivity: str, steps: int, folder: Path):
        import numpy as np

        import eigraph

        path = folder / f"plastic_{connectivity}_{n}.ei"
        path.write_text(model_text(n, connectivity))
        self.model = eigraph.load(str(path))
        self.sim = self.model.compile(backend="numba", batch=batch)
        self.steps, self.batch, self.n = steps, batch, n
        program = self.sim.program
        self.w = {name: (program.projections[name].factor * self.sim.weights[name]).astype(np.float32)
                  for name in bench.PROJECTIONS}
        stored = self.sim.weights.stored("E->E")
        mask = np.zeros(stored.shape, dtype=bool)
        if stored.is_sparse:
            rows = np.repeat(np.arange(stored.shape[0]), np.diff(stored.indptr))
            mask[rows, stored.indices] = True
        else:
            mask = stored.mask.copy() if stored.mask is not None else np.ones(stored.shape, dtype=bool)
        self.mask = mask.astype(np.float32)
        self.initial_ee = self.sim.weights["E->E"].astype(np.float32)
        rng = np.random.default_rng(bench.SEED)
        self.inputs = rng.uniform(0.0, 1.0, (steps, batch, bench.N_IN)).astype(np.float32)

    def eigraph(self):
        sim = self.sim
        sim.reset()
        sim.weights["E->E"] = self.initial_ee
        sim.run(self.inputs, record=[])
        return sim.weights["E->E"]


def numpy_loop(work: Plastic):
    import numpy as np

    w = work.w
    w_ee = work.initial_ee.copy()
    mask, eta, alpha, batch = work.mask, np.float32(ETA), np.float32(bench.ALPHA), work.batch
    u = np.ascontiguousarray(work.inputs.transpose(0, 2, 1))
    x_e = np.zeros((w_ee.shape[0], batch), np.float32)
    x_i = np.zeros((w["I->I"].shape[0], batch), np.float32)
    r_e, r_i = np.maximum(x_e, 0), np.maximum(x_i, 0)
    for t in range(work.steps):
        in_e = w["stim->E"] @ u[t] + w_ee @ r_e + w["I->E"] @ r_i
        in_i = w["stim->I"] @ u[t] + w["E->I"] @ r_e + w["I->I"] @ r_i
        x_e = x_e + alpha * (in_e - x_e)
        x_i = x_i + alpha * (in_i - x_i)
        pre = r_e
        r_e, r_i = np.maximum(x_e, 0), np.maximum(x_i, 0)
        dw = eta * ((r_e @ pre.T) / batch - (r_e * r_e).mean(axis=1, keepdims=True) * w_ee)
        w_ee = np.maximum(w_ee + dw, 0) * mask
    return w_ee


def torch_loop(torch, work: Plastic):
    w = {k: torch.from_numpy(v) for k, v in work.w.items()}
    mask = torch.from_numpy(work.mask)
    batch, eta, alpha = work.batch, ETA, bench.ALPHA
    with torch.inference_mode():
        w_ee = torch.from_numpy(work.initial_ee.copy())
        u = torch.from_numpy(work.inputs).transpose(1, 2).contiguous()
        x_e = torch.zeros(w_ee.shape[0], batch)
        x_i = torch.zeros(w["I->I"].shape[0], batch)
        r_e, r_i = torch.relu(x_e), torch.relu(x_i)
        for t in range(work.steps):
            in_e = w["stim->E"] @ u[t] + w_ee @ r_e + w["I->E"] @ r_i
            in_i = w["stim->I"] @ u[t] + w["E->I"] @ r_e + w["I->I"] @ r_i
            x_e = x_e + alpha * (in_e - x_e)
            x_i = x_i + alpha * (in_i - x_i)
            pre = r_e
            r_e, r_i = torch.relu(x_e), torch.relu(x_i)
            dw = eta * ((r_e @ pre.T) / batch - (r_e * r_e).mean(dim=1, keepdim=True) * w_ee)
            w_ee = torch.clamp(w_ee + dw, min=0) * mask
    return w_ee.numpy()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    threads = bench._threads_from_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64:8,256:32,1024:64")
    parser.add_argument("--connectivity", default="dense,sparse")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", default=threads)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    import numpy as np

    try:
        import torch

        torch.set_num_threads(int(args.threads) if args.threads else __import__("os").cpu_count())
    except ImportError:
        torch = None
        print("torch is not installed: timing eigraph and NumPy only (pip install torch to compare)")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n, batch in bench.parse_sizes(args.sizes):
            for connectivity in args.connectivity.split(","):
                work = Plastic(n, batch, connectivity, args.steps, Path(folder))
                reference = work.eigraph()
                scale = float(np.abs(reference).max()) or 1.0
                checks = {"numpy": float(np.abs(numpy_loop(work) - reference).max()) / scale}
                runs = {"eigraph": work.eigraph, "numpy": lambda w=work: numpy_loop(w)}
                if torch is not None:
                    checks["torch"] = float(np.abs(torch_loop(torch, work) - reference).max()) / scale
                    runs["torch"] = lambda w=work: torch_loop(torch, w)
                bad = {k: v for k, v in checks.items() if v > 1e-3}
                if bad:
                    print(f"N={n} {connectivity}: implementations disagree with eigraph: {bad}", file=sys.stderr)
                    return 1
                times = bench.time_rounds(runs, args.repeats, 1)
                row = {"n": n, "batch": batch, "connectivity": connectivity,
                       **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()},
                       "max_rel_diff": max(checks.values())}
                rows.append(row)
                print(f"N={n:5d} B={batch:3d} {connectivity:6s} eigraph {row['eigraph_ms']:9.3f} ms  "
                      f"numpy {row['numpy_ms']:9.3f} ms"
                      + (f"  torch {row['torch_ms']:9.3f} ms  torch/eigraph {row['torch_ms'] / row['eigraph_ms']:5.2f}"
                         if torch is not None else "") + f"  (agreement {row['max_rel_diff']:.1e})", flush=True)
    if torch is not None:
        small = [r["torch_ms"] / r["eigraph_ms"] for r in rows if r["n"] == 64]
        never = [r["torch_ms"] / r["eigraph_ms"] for r in rows]
        print(("PASS" if all(s >= 3 for s in small) else "FAIL") + ": >= 3x faster than PyTorch eager at N=64 "
              + ", ".join(f"{s:.2f}x" for s in small))
        print(("PASS" if all(s >= 1 for s in never) else "FAIL") + ": never slower than PyTorch eager "
              + ", ".join(f"{s:.2f}x" for s in never))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
