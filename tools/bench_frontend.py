"""Front-end benchmark: how long `eigraph validate` takes on a large generated model.

    python tools/bench_frontend.py [--populations 1000] [--projections 10000] [--repeats 3]

Generates a model with areas of E/I populations and random projections, then times each stage
(parse, resolve, graph, checks) and the whole validate, reporting medians over the repeats.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def generate(populations: int, projections: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = ["network big {", "    dt = 1 ms", "    seed = 3", "}", ""]
    per_area = 10
    names = []
    lines.append("population stim : input(20)")
    for area in range(populations // per_area):
        lines.append(f"area A{area} {{")
        for j in range(per_area):
            kind = "E" if j < per_area * 0.8 else "I"
            size = rng.randint(20, 200)
            lines.append(f"    population P{j} : {kind}({size}) {{ tau = {rng.choice([10, 20, 50])} ms }}")
            names.append((f"A{area}.P{j}", kind))
        lines.append("}")
    for n, _ in names[:: per_area]:
        lines.append(f"stim -> {n} : dense, init = uniform(0, 0.1)")
    rules = ["", ", learn = hebb(eta = 1e-3)", ", learn = vogels(eta = 1e-3, rho0 = 5)"]
    seen = set()
    while len(seen) < projections:
        (src, _), (dst, _) = rng.choice(names), rng.choice(names)
        if (src, dst) in seen:
            continue
        seen.add((src, dst))
        conn = rng.choice(["dense", "sparse(p = 0.1)", "fixed_in(k = 10)"])
        delay = rng.choice(["1 ms", "2 ms", "3 steps"])
        lines.append(f"{src} -> {dst} : {conn}, init = halfnormal(1 / sqrt(fan_in)), delay = {delay}"
                     + rng.choice(rules))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--populations", type=int, default=1000)
    parser.add_argument("--projections", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from eigraph.check import run_checks
    from eigraph.frontend.dsl import parse_document
    from eigraph.model.graph import build_graph
    from eigraph.model.load import check_path
    from eigraph.model.resolve import resolve

    text = generate(args.populations, args.projections)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.ei"
        path.write_text(text)
        parse_document("population x : E(1)", "warmup.ei")  # grammar load is a one-off cost
        stages = {"parse": [], "resolve": [], "graph": [], "checks": [], "validate (total)": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            doc, _ = parse_document(text, str(path))
            t1 = time.perf_counter()
            model = resolve(doc)
            t2 = time.perf_counter()
            graph = build_graph(model)
            t3 = time.perf_counter()
            found = run_checks(graph)
            t4 = time.perf_counter()
            stages["parse"].append(t1 - t0)
            stages["resolve"].append(t2 - t1)
            stages["graph"].append(t3 - t2)
            stages["checks"].append(t4 - t3)
            t5 = time.perf_counter()
            _, diagnostics, _ = check_path(path)
            stages["validate (total)"].append(time.perf_counter() - t5)
        errors = [d for d in diagnostics if d.is_error]
    print(f"model: {args.populations} populations, {args.projections} projections, "
          f"{len(text.splitlines())} lines; {len(errors)} errors, {len(diagnostics) - len(errors)} warnings")
    print(f"{'stage':<18} {'median s':>9}  {'min s':>7}")
    for stage, times in stages.items():
        print(f"{stage:<18} {statistics.median(times):9.3f}  {min(times):7.3f}")
    del found
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
