"""The ``eigraph`` command line.

Exit codes: 0 success (warnings allowed unless ``--strict``), 1 the model has errors,
2 the command itself is wrong (unknown option, an option value out of range, a path that does not exist,
no model files, an output that cannot be written there: the same for every command).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from eigraph import __version__
from eigraph.diagnostics import error, render_github, render_json, render_text

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
MAX_BATCH = 1_000_000  # compile --batch: more trials side by side than any machine holds is a typo
MAX_DPI = 2400  # a PNG is capped in pixels anyway (eigraph.viz); more than this is a typo


class _Usage(Exception):
    pass


def _color(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ


def _expand(paths: list[str]) -> list[Path]:
    from eigraph.frontend.source import find_model_files

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = find_model_files(path)
            if not found:
                raise _Usage(f"no model files (.ei, .yaml, .yml) in folder '{raw}'")
            files += found
        elif not path.exists():
            raise _Usage(f"no such file or folder: '{raw}'")
        else:
            files.append(path)
    return files


def _model_file(argument: str, folder_ok: bool = True) -> Path:
    """The model path of a command: it must exist (a usage error otherwise)."""
    path = Path(argument)
    if not path.exists():
        raise _Usage(f"no such file: '{argument}'")
    if not folder_ok and path.is_dir():
        raise _Usage(f"'{argument}' is a folder: give one model file")
    return path


def _output_file(argument: str, force: bool) -> Path:
    """An output file of a command: not a folder, in a folder that exists or can be made, and not an
    existing file unless ``--force``. Every problem is a usage error (exit 2)."""
    path = Path(argument)
    if path.is_dir():
        raise _Usage(f"'{argument}' is a folder: give a file name, for example '{path / 'out'}'")
    if path.exists() and not force:
        raise _Usage(f"'{argument}' exists; pass --force to replace it")
    _writable_folder(path.parent, argument)
    return path


def _writable_folder(folder: Path, argument: str) -> None:
    """Make ``folder`` (and its parents) and check a file can be written in it."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise _Usage(f"cannot write '{argument}': '{existing}' is a file, not a folder")
    made = []  # the folders this check makes, removed again: a command that fails later leaves none
    part = folder
    while not part.exists() and part != part.parent:
        made.append(part)
        part = part.parent
    from eigraph.fileio import write_problem

    try:
        problem = write_problem(folder)
    finally:
        for empty in made:  # deepest first
            with contextlib.suppress(OSError):
                empty.rmdir()
    if problem:
        raise _Usage(f"cannot write '{argument}': {problem} ('{folder}'); choose another place with -o")


def _write(path: Path, data: str | bytes) -> None:
    """Write an output atomically; a failure (disk full, the folder changed) is a clear error."""
    from eigraph.fileio import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise _Usage(f"cannot write '{path}': {exc.strerror or exc}") from None


def _checked_model(argument: str):
    """Load and check a model; on errors print them and return None, else (model, findings, sources)."""
    from eigraph.model.load import check_path

    model, found, sources = check_path(argument)
    if model is None or any(d.is_error for d in found):
        print(render_text(found, sources, color=_color(sys.stderr)), file=sys.stderr)
        return None
    return model, found, sources


def cmd_validate(args) -> int:
    from eigraph.model.load import check_path
    from eigraph.summary import summarize

    if args.viz:
        _check_viz_target(args.viz)  # before checking anything: a bad --viz is a usage error
    files = _expand(args.paths)
    everything, sources, summaries = [], {}, []
    for file in files:
        model, found, texts = check_path(file)
        sources.update(texts)
        if args.strict:
            found = [d.as_severity("error") for d in found]
        everything += found
        if args.summary and model is not None and not any(d.is_error for d in found):
            summaries.append(summarize(model))
    errors = sum(d.is_error for d in everything)
    warnings = len(everything) - errors
    if args.format == "json":
        print(render_json(everything, [str(f) for f in files]))
    elif args.format == "github":
        if everything:
            print(render_github(everything))
        print(f"eigraph: {len(files)} file(s), {errors} error(s), {warnings} warning(s)")
    else:
        if everything:
            print(render_text(everything, sources, color=_color(sys.stdout)))
            print()
        for text in summaries:
            print(text)
            print()
        verdict = "ok" if not errors else "failed"
        print(f"{verdict}: {len(files)} file(s) checked, {errors} error(s), {warnings} warning(s)")
    if args.viz:
        if not _validate_viz(args.viz, files, everything):
            return EXIT_USAGE
    return EXIT_ERRORS if errors else EXIT_OK


def _check_viz_target(target: str) -> None:
    from eigraph.viz import VizError, check_target

    try:
        check_target(target)
    except VizError as exc:
        raise _Usage(f"--viz: {exc}") from None


def _validate_viz(target: str, files: list[Path], diagnostics) -> bool:
    """Draw the models with their findings (eigraph/viz: one file per model when several)."""
    from eigraph.viz import VizError, draw_with_findings

    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        for message in draw_with_findings(files, diagnostics, target):
            print(message, file=sys.stderr if message.startswith("cannot") else sys.stdout)
    except VizError as exc:
        print(f"eigraph validate: error: --viz: {exc}", file=sys.stderr)
        return False
    return True


def _read_document(path: str):
    from eigraph.frontend.source import read_source
    from eigraph.model.load import parse_source

    source, problems = read_source(path)
    if source is None:
        return None, problems, {}
    document, problems = parse_source(source)
    return document, problems, {source.path: source.text}


def cmd_convert(args) -> int:
    from eigraph.frontend.emit import relocate, to_ei, to_yaml
    from eigraph.frontend.source import decode_source
    from eigraph.model.graph import signature
    from eigraph.model.load import check_path, check_source

    _model_file(args.model, folder_ok=False)
    target_kind = args.to
    if args.output:
        suffix = Path(args.output).suffix.lower()
        kinds = {".ei": "ei", ".yaml": "yaml", ".yml": "yaml"}
        if suffix not in kinds:
            raise _Usage(f"cannot tell the output form from '{args.output}': name it .ei, .yaml or .yml")
        target_kind = kinds[suffix]
        _output_file(args.output, args.force)
    if target_kind is None:
        target_kind = "ei" if str(args.model).lower().endswith((".yaml", ".yml")) else "yaml"
    document, problems, sources = _read_document(args.model)
    if document is None or any(d.is_error for d in problems):
        print(render_text(problems, sources, color=_color(sys.stderr)), file=sys.stderr)
        return EXIT_ERRORS
    # Relative file names (mask("m.npy")) must name the same files from where the output goes.
    name = str(Path(args.output).resolve() if args.output else Path(args.model).resolve().with_suffix(
        ".ei" if target_kind == "ei" else ".yaml"))
    document = relocate(document, Path(args.model).resolve().parent, Path(name).parent)
    text = to_ei(document) if target_kind == "ei" else to_yaml(document)
    # The converted text must describe the same graph: check it before writing anything.
    original, found, _ = check_path(args.model)
    if original is not None and not any(d.is_error for d in found):
        source, _ = decode_source(name, text.encode("utf-8"))
        converted, _ = check_source(source)
        if converted is None or signature(converted.graph) != signature(original.graph):
            print(f"eigraph: internal error: converting '{args.model}' changed the model; please report this",
                  file=sys.stderr)
            return EXIT_ERRORS
    if args.output:
        _write(Path(args.output), text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_graph(args) -> int:
    from eigraph.model.graph import to_graphml, to_json
    from eigraph.summary import summarize

    _model_file(args.model, folder_ok=False)
    if args.output:
        _output_file(args.output, args.force)  # before the work: a bad -o is a usage error
    checked = _checked_model(args.model)
    if checked is None:
        return EXIT_ERRORS
    model, found, sources = checked
    if found:
        print(render_text(found, sources, color=_color(sys.stderr)), file=sys.stderr)
    text = {"json": to_json, "graphml": to_graphml}.get(args.format, lambda g: summarize(model))(model.graph)
    if args.output:
        _write(_output_file(args.output, args.force), text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return EXIT_OK


def cmd_compile(args) -> int:
    import json

    import numpy as np

    from eigraph.compile.lower import CompileError, content_hash, lower

    _model_file(args.model, folder_ok=False)
    if not 1 <= args.batch <= MAX_BATCH:
        raise _Usage(f"--batch must be at least 1, not {args.batch}" if args.batch < 1 else
                     f"--batch must be at most {MAX_BATCH:,}, not {args.batch:,}")
    out = Path(args.output or Path(args.model).stem + "_compiled")
    if out.exists() and not out.is_dir():
        raise _Usage(f"'{out}' is a file: -o names the folder to write the compiled model into")
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not args.force:
        raise _Usage(f"'{out}' already holds a compiled model; pass --force to replace it")
    checked = _checked_model(args.model)
    if checked is None:
        return EXIT_ERRORS
    model = checked[0]
    _writable_folder(out, str(out))
    try:
        program = lower(model.graph, batch=args.batch)
    except CompileError as exc:
        print(f"eigraph compile: error: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    from eigraph.runtime.simulator import Simulator

    try:
        sim = Simulator(program, backend=args.backend, batch=args.batch)
    except MemoryError:
        print(f"eigraph compile: error: not enough memory for the state of {args.batch:,} trials side by side; "
              "give a smaller --batch", file=sys.stderr)
        return EXIT_ERRORS
    written = []
    source = sim.backend.source()
    if source is not None:
        _write(out / "kernel.py", source)
        written.append("kernel.py")
    _write(out / "program.txt", program.describe() + "\n")
    written.append("program.txt")
    import io

    arrays = {}
    for name, q in program.projections.items():
        w = q.weights
        if w.is_sparse:
            arrays[f"{name}.indptr"], arrays[f"{name}.indices"], arrays[f"{name}.data"] = w.indptr, w.indices, w.data
        else:
            arrays[f"{name}.w"] = w.dense
    for name, p in program.populations.items():
        if isinstance(p.bias, np.ndarray):
            arrays[f"{name}.bias"] = p.bias
        if p.role != "input":
            arrays[f"{name}.x0"] = sim.read(f"{name}.x").T.copy()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _write(out / "initial_state.npz", buffer.getvalue())
    written.append("initial_state.npz")
    versions = {"eigraph": __version__, "numpy": np.__version__}
    try:
        import numba

        versions["numba"] = numba.__version__
    except ImportError:
        pass
    manifest = {
        "model": str(Path(args.model).resolve()),
        "network": program.name,
        "backend": args.backend,
        "batch": args.batch,
        "precision": str(np.dtype(program.dtype)),
        "dt": program.dt,
        "seed": program.seed,
        "content_hash": content_hash(model.graph, program),
        "versions": versions,
        "populations": {name: {"size": p.size, "role": p.role, "sign": p.sign, "alpha": p.alpha,
                               "activation": p.activation, "noise": p.noise, "history": p.history,
                               "bias": "per neuron (initial_state.npz)" if isinstance(p.bias, np.ndarray) else p.bias}
                        for name, p in program.populations.items()},
        "projections": {name: {"source": q.source, "target": q.target, "compartment": q.compartment,
                               "delay": q.delay, "factor": q.factor, "storage": "csr" if q.weights.is_sparse else "dense",
                               "synapses": q.weights.nnz, "learn": q.learn}
                        for name, q in program.projections.items()},
        "learned_biases": {b.name: {"population": b.target, "learn": b.learn,
                                    "bounds": list(b.bounds) if b.bounds else None}
                           for b in program.biases.values()},
        "state_layout": program.state_layout(),
        "step": [f"{op.kind} {op.name}" for op in program.ops],
        "files": written + ["manifest.json"],
    }
    _write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    print(f"compiled {args.model} ({args.backend}) into {out}/: " + ", ".join(written + ["manifest.json"]))
    return EXIT_OK


def cmd_viz(args) -> int:
    import math

    from eigraph.model.load import check_path
    from eigraph.viz import VizError, check_target, render

    _model_file(args.model, folder_ok=False)
    if not (math.isfinite(args.dpi) and 1 <= args.dpi <= MAX_DPI):
        raise _Usage(f"--dpi must be between 1 and {MAX_DPI}, not {args.dpi:g} (the default is 200)")
    output = args.output or Path(args.model).stem + ".svg"
    try:
        check_target(output)
    except VizError as exc:
        raise _Usage(str(exc)) from None
    _writable_folder(Path(output).parent, output)  # root passes os.access: try a write
    model, found, sources = check_path(args.model)
    if found:
        print(render_text(found, sources, color=_color(sys.stderr)), file=sys.stderr)
    errors = [d for d in found if d.is_error]
    if model is None or model.graph is None:
        print(f"eigraph viz: cannot draw '{args.model}': it has syntax errors, so there is no graph to draw; "
              f"fix the errors above (eigraph validate {args.model} lists them) and run viz again", file=sys.stderr)
        return EXIT_ERRORS
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        notes = render(model, output, diagnostics=errors, layout=args.layout, labels=not args.no_labels,
                       highlight=args.highlight or (), detail=args.detail, dpi=args.dpi, validation=found)
    except VizError as exc:
        raise _Usage(str(exc)) from None
    except OSError as exc:
        raise _Usage(f"cannot write '{output}': {exc.strerror or exc}") from None
    for note in notes:
        print(f"eigraph viz: note: {note}", file=sys.stderr)
    if errors:
        print(f"wrote {output} (the model has {len(errors)} error{'s' if len(errors) != 1 else ''}, marked in the "
              f"drawing)")
        return EXIT_ERRORS
    print(f"wrote {output}")
    return EXIT_OK


def cmd_run(args) -> int:
    """Train a model on its task with its local rules, evaluate it, write the results folder."""
    if "numpy" not in sys.modules:  # one BLAS thread: these small products only lose time to more
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, "1")
    model_path = _model_file(args.model, folder_ok=False)
    if args.resume and args.force:
        raise _Usage("--resume goes on from the folder's checkpoint and --force replaces the folder: pick one")
    out = Path(args.output) if args.output else Path("results") / model_path.stem
    if out.exists() and not out.is_dir():
        raise _Usage(f"'{out}' exists and is not a folder")
    missing = []  # the folders this run creates (removed again if it finishes nothing)
    folder = out
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return _run(args, model_path, out, missing)


def _take_lock(out: Path, probe: bool = False):
    """Hold ``out/.eigraph-lock`` for the run's lifetime (released when the process ends, however);
    ``probe``: only see whether another run holds it, changing nothing."""
    import errno
    import fcntl

    from eigraph.runtime.results import LOCK

    try:
        handle = open(out / LOCK, "a+")
    except OSError as exc:
        raise _Usage(f"cannot write to '{out}': {exc.strerror or exc} ({LOCK})") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):  # a file system without locks
            return handle
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise _Usage(f"another eigraph run{' (process ' + holder + ')' if holder.isdigit() else ''} is writing to "
                     f"'{out}': wait for it to finish, or write elsewhere with -o") from None
    if probe:
        return handle
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _forget_empty(out: Path, missing: list[Path]) -> None:
    """Remove the folders this run created when they hold nothing but eigraph's bookkeeping."""
    from eigraph.runtime.results import BOOKKEEPING

    for folder in missing:
        try:
            if folder == out:
                if any(p.name not in BOOKKEEPING for p in folder.iterdir()):
                    return
                for name in BOOKKEEPING:
                    (folder / name).unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            return


def _run(args, model_path: Path, out: Path, missing: list[Path]) -> int:
    from eigraph.model.load import check_path
    from eigraph.runtime.errors import InputError
    from eigraph.runtime.results import LOCK, user_files
    from eigraph.runtime.tasks import TaskError, parse_task
    from eigraph.runtime.train import Trainer, plan_run, read_checkpoint, resumed_config

    checkpoint = out / "checkpoint.npz"
    meta = None
    if (out / LOCK).is_file():  # say so before anything else, if another run is writing here now
        _take_lock(out, probe=True).close()
    if args.resume:
        if not checkpoint.exists():
            raise _Usage(f"--resume: '{out}' holds no checkpoint.npz to go on from")
        try:
            meta = read_checkpoint(checkpoint)
        except TaskError as exc:
            raise _Usage(f"--resume: {exc}") from None
    elif out.exists() and user_files(out) and not args.force:
        raise _Usage(f"'{out}' already holds results; pass --force to replace them, --resume to go on from its "
                     "checkpoint, or -o to write elsewhere")
    model, found, sources = check_path(model_path)
    if model is None or any(d.is_error for d in found):
        print(render_text(found, sources, color=_color(sys.stderr)), file=sys.stderr)
        return EXIT_ERRORS
    if found and not args.quiet:
        print(render_text(found, sources, color=_color(sys.stderr)), file=sys.stderr)
    try:
        if meta is not None:  # the stored configuration; the options given must agree with it
            overrides = {"task": parse_task(args.task) if args.task else None, "trials": args.trials,
                         "batch": args.batch, "steps": args.steps, "seed": args.seed, "backend": args.backend,
                         "eval_every": args.eval_every, "checkpoint_every": args.checkpoint_every,
                         "freeze": args.freeze}
            config = resumed_config(meta, overrides)
        else:
            config = plan_run(model, task=args.task, trials=args.trials, batch=args.batch, steps=args.steps,
                              seed=args.seed, backend=args.backend or "numba", eval_every=args.eval_every or 0,
                              checkpoint_every=args.checkpoint_every or 0, freeze=args.freeze or ())
    except TaskError as exc:
        raise _Usage(str(exc)) from None
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise _Usage(f"cannot write to '{out}': " + ("'" + str(existing) + "' is not a folder" if not existing.is_dir()
                                                       else "permission denied"))
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    try:
        from eigraph.compile.lower import CompileError

        say(f"eigraph run: compiling kernels for batch {config.batch} ({config.backend} backend) ..."
            + (" this can take a while for a large batch" if config.batch >= 1000 else ""))
        trainer = Trainer(model, config)  # makes the task and compiles: every check before the folder
    except TaskError as exc:
        raise _Usage(str(exc)) from None
    except (CompileError, InputError) as exc:
        print(f"eigraph run: error: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    try:  # the folder must be writable before hours of training go into it
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".eigraph-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _Usage(f"cannot write to '{out}': {exc.strerror or exc}") from None
    lock = _take_lock(out)  # held until this process ends
    try:
        return _train(args, model_path, out, trainer, config, say)
    finally:
        _forget_empty(out, missing)  # while the lock is held: never another run's folder
        lock.close()


def _train(args, model_path, out, trainer, config, say) -> int:
    import shlex

    from eigraph.runtime.errors import SimulationError
    from eigraph.runtime.results import (
        Manifest,
        chance_warning,
        clashes,
        planned_files,
        record_names,
        user_files,
        write_results,
        written_here,
    )
    from eigraph.runtime.tasks import TaskError
    from eigraph.runtime.train import ProgressBar, blas_threads

    checkpoint = out / "checkpoint.npz"
    if not args.resume and not args.force and user_files(out):  # again, now that the folder is ours
        raise _Usage(f"'{out}' already holds results; pass --force to replace them, --resume to go on from its "
                     "checkpoint, or -o to write elsewhere")
    manifest = Manifest(out)
    if args.resume and "checkpoint.npz" not in manifest:
        manifest.add("checkpoint.npz")  # a folder of an older eigraph: its checkpoint checked out as eigraph's
    theirs = clashes(out, planned_files(trainer, plots=not args.no_plots))
    if theirs:
        raise _Usage(f"'{out}' holds {', '.join(repr(n) for n in theirs)}, which eigraph did not write but must write "
                     "now; eigraph never replaces a file of yours: move or rename it, or write elsewhere with -o")
    if args.force and not args.resume:
        for path in written_here(out):
            path.unlink()
            manifest.remove(path.name)
    if args.resume:
        try:
            meta = trainer.load_checkpoint(checkpoint)
        except TaskError as exc:
            raise _Usage(f"--resume: {exc}") from None
        say(f"resuming {out}/checkpoint.npz at trial {meta['trials_done']} of {config.batches * config.batch}")
    total = config.batches * config.batch
    say(f"eigraph run: {model_path.name} on {trainer.task.describe()}")
    say(f"  {total} training trials in batches of {config.batch}, seed {config.seed}, {config.backend} backend; "
        f"results in {out}/")
    if not trainer.history and config.batch >= 1000:  # minutes of silence otherwise, before the progress bar
        say("  evaluating the untrained network on the validation trials, then training ...")
    command = "eigraph run " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["run"] else None
    had_checkpoint = checkpoint.exists()

    def save_checkpoint(t):
        manifest.add("checkpoint.npz")
        t.save_checkpoint(checkpoint)

    progress = None if args.quiet else ProgressBar(trainer)
    phase = "training"
    try:
        with blas_threads(1):
            status = trainer.train(progress=progress, checkpoint=save_checkpoint)
            phase = "testing"
            if status == "interrupted":
                print(f"eigraph run: interrupted after {trainer.trials_done} of {total} trials; checkpoint written to "
                      f"{checkpoint}; go on with: eigraph run {args.model} -o {out} --resume", file=sys.stderr)
                return 130
            short = trainer.task.split("validation").steps < 5  # one-step trials: record many of them
            test = trainer.evaluate("test", record=record_names(trainer), record_trials=100 if short else 0)
            warning = chance_warning(trainer, test)
            files, notes = write_results(out, trainer, test, command=command, plots=not args.no_plots,
                                         warnings=[warning] if warning else [])
    except OSError as exc:  # the disk filled up, the folder went away, ...
        print(f"eigraph run: error: cannot write the results in '{out}': {exc.strerror or exc}"
              + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
              + (f"; the last checkpoint is in {checkpoint}" if checkpoint.exists() else ""), file=sys.stderr)
        return EXIT_ERRORS
    except SimulationError as exc:
        kept = ""
        if checkpoint.exists() and not had_checkpoint:
            kept = f"; the last checkpoint before it is in {checkpoint}"
        elif not checkpoint.exists() and "checkpoint.npz" in manifest:
            manifest.remove("checkpoint.npz")
        print(f"eigraph run: error: {exc} (after {trainer.trials_done} training trials){kept}", file=sys.stderr)
        return EXIT_ERRORS
    except KeyboardInterrupt:
        if phase == "training":
            saved = f"the last checkpoint is in {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"
            print(f"\neigraph run: aborted during training; {saved}", file=sys.stderr)
        else:
            print(f"eigraph run: interrupted while testing and writing the results; the trained network is in "
                  f"{checkpoint}: eigraph run {args.model} -o {out} --resume tests it and writes them", file=sys.stderr)
        return 130
    for note in notes:
        say(f"eigraph run: note: {note}")
    if warning:
        print(f"eigraph run: warning: {warning}", file=sys.stderr)
    rate = trainer.trials_done / trainer.elapsed if trainer.elapsed > 0 else float("nan")
    print(f"{model_path.name}, {config.task['name']}: test {trainer.task.summary(test.scores)} on {len(test.trials)} "
          f"held-out trials, after {trainer.trials_done} training trials ({trainer.elapsed:.1f} s, {rate:,.0f} trials/s)")
    print(f"results in {out}/: " + ", ".join(files + ["checkpoint.npz"]))
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors: exit 2 with the usage line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eigraph", description="E/I rate networks with local learning rules.")
    parser.add_argument("--version", action="version", version=f"eigraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("validate", help="check model files: Dale's law, cell types, structure, units, rules")
    p.add_argument("paths", nargs="+", metavar="PATH", help="model files or folders")
    p.add_argument("--format", choices=("text", "json", "github"), default="text",
                   help="text for people, json for tools, github for GitHub Actions annotations")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--summary", action="store_true", help="print a summary of each clean model's graph")
    p.add_argument("--viz", metavar="FILE", help="also draw the model with the findings marked")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("convert", help="convert between the .ei form and the YAML twin")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="output file (.ei, .yaml or .yml); default: standard output")
    p.add_argument("--to", choices=("ei", "yaml"), help="output form when writing to standard output")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("graph", help="print or export the population graph")
    p.add_argument("model")
    p.add_argument("--format", choices=("summary", "json", "graphml"), default="summary")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("compile", help="generate the kernels and write them with a manifest and the initial state")
    p.add_argument("model")
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default: MODEL_compiled)")
    p.add_argument("--backend", choices=("numpy", "numba"), default="numba")
    p.add_argument("--batch", type=int, default=1, help="batch size the kernels are compiled for")
    p.add_argument("--force", action="store_true", help="replace an existing compiled folder")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("viz", help="draw the population graph (SVG, PNG, PDF, DOT or an HTML page)")
    p.add_argument("model")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="output file: .svg, .png, .pdf, .dot or .html (default: MODEL.svg here); replaced if it exists")
    p.add_argument("--layout", choices=("layered", "spring"), default="layered",
                   help="layered: left to right, inputs first (Graphviz dot when installed); spring: force-directed")
    p.add_argument("--no-labels", action="store_true", help="leave out the projection labels")
    p.add_argument("--highlight", metavar="POP", action="append",
                   help="bring a population (or an area) and its projections forward; repeatable")
    p.add_argument("--detail", choices=("auto", "full", "areas"), default="auto",
                   help="auto: one node per area for very large models; full: every population; areas: by area")
    p.add_argument("--dpi", type=float, default=200, help="resolution of a PNG (default 200)")
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser("run", help="train a model on its task with its local rules, evaluate it and write the results",
                       description="Train MODEL on the task of its run block (or --task) with its local learning rules, "
                                   "evaluate it on held-out trials and write DIR: metrics.json, history.csv, "
                                   "weights.npz, records.npz, model.ei, checkpoint.npz and plots (docs/tasks.md).")
    p.add_argument("model")
    p.add_argument("--task", metavar="TASK", help="the task, written as in a run block: 'decision(coherences = [0.1])'")
    p.add_argument("--trials", type=int, help="training trials (default: the run block's trials)")
    p.add_argument("--batch", type=int, help="trials run in parallel (default: the run block's batch)")
    p.add_argument("--steps", type=int, help="steps per trial, for tasks that do not fix it")
    p.add_argument("--backend", choices=("numpy", "numba"), default=None, help="default: numba")
    p.add_argument("--seed", type=int, help="seed of the trials and the noise (default: the run block's, else the "
                                            "network's); the initial weights always follow the model")
    p.add_argument("-o", "--output", metavar="DIR", help="results folder (default: results/MODEL)")
    p.add_argument("--force", action="store_true", help="replace the results already in DIR")
    p.add_argument("--resume", action="store_true", help="go on from DIR/checkpoint.npz")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate on the validation trials every N training trials (default: 20 times a run)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="write DIR/checkpoint.npz every N training trials (default: 10 times a run)")
    p.add_argument("--freeze", metavar="PATTERN", action="append",
                   help="turn learning off on the projections (and learned biases, named bias->POP) whose names "
                        "match this glob (repeatable), for the ablation: --freeze 'H1.*' --freeze 'Input.E->H1.E' "
                        "--freeze 'bias->H1.E'")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; print only the result")
    p.set_defaults(func=cmd_run)
    return parser


_PARSER: list[argparse.ArgumentParser] = []  # built once a process: it is most of the time of a quick command


def main(argv: list[str] | None = None) -> int:
    if not _PARSER:
        _PARSER.append(build_parser())
    parser = _PARSER[0]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _Usage as exc:
        print(f"eigraph {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("eigraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a file that cannot be read or written: the user's to fix, not a bug
        where = f" '{exc.filename}'" if exc.filename else ""
        print(f"eigraph {args.command}: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug of ours: say so plainly, without a traceback
        where = error("X001", f"internal error: {type(exc).__name__}: {exc}", None,
                      "this is a bug in eigraph; please report it with the model file "
                      "(set EIGRAPH_DEBUG=1 for the traceback)")
        if os.environ.get("EIGRAPH_DEBUG"):
            raise
        print(render_text([where]), file=sys.stderr)
        return EXIT_ERRORS


if __name__ == "__main__":
    sys.exit(main())
