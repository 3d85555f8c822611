"""Built-in tasks for ``eigraph run`` (docs/tasks.md): each generates its trials offline from a
seed and scores a network's outputs.

==========  ====================================================  ==================
task        what                                                  metric
==========  ====================================================  ==================
digits      scikit-learn's 8x8 digits, static input               test accuracy (%)
spirals     EIANN's spiral benchmark (arms)                       test accuracy (%)
decision    Song et al. (2016) random-dot decision, catch trials  percent correct
context     Mante et al. (2013) context-dependent integration     percent correct
forecast    ngc-learn's noisy-sine next-step prediction           RMSE vs copy-last
data        your own inputs / targets / mask / labels (.npz)      accuracy or RMSE
neurogym    a NeuroGym environment (optional extra)               percent correct
==========  ====================================================  ==================
"""

from __future__ import annotations

from eigraph.runtime.tasks.base import Task, TaskError, Trials

__all__ = ["Task", "TaskError", "Trials", "make_task", "parse_task", "task_classes"]


def task_classes() -> dict[str, type[Task]]:
    from eigraph.runtime.tasks.context import Context
    from eigraph.runtime.tasks.data import Data
    from eigraph.runtime.tasks.decision import Decision
    from eigraph.runtime.tasks.digits import Digits
    from eigraph.runtime.tasks.forecast import Forecast
    from eigraph.runtime.tasks.neurogym_task import NeuroGym
    from eigraph.runtime.tasks.spirals import Spirals

    return {"digits": Digits, "spirals": Spirals, "decision": Decision, "context": Context,
            "forecast": Forecast, "data": Data, "neurogym": NeuroGym}


def make_task(spec: dict, seed: int, dt: float | None = None, steps: int | None = None) -> Task:
    """The task of a run block's ``task`` ({"name", "args"}), with the catalog's defaults filled in."""
    from eigraph.model.catalog import REQUIRED, TASKS

    name = spec["name"]
    classes = task_classes()
    if name not in classes or name not in TASKS:
        known = ", ".join(classes)
        raise TaskError(f"unknown task '{name}' (tasks: {known})")
    args = {}
    for key, default in TASKS[name].items():
        value = spec.get("args", {}).get(key, default)
        if value is REQUIRED:
            raise TaskError(f"task '{name}' needs the argument '{key}'")
        args[key] = value
    unknown = set(spec.get("args", {})) - set(TASKS[name])
    if unknown:
        raise TaskError(f"task '{name}' has no argument '{sorted(unknown)[0]}' (arguments: "
                        f"{', '.join(TASKS[name]) or 'none'})")
    return classes[name](args, seed, dt, steps)


def parse_task(text: str) -> dict:
    """A task written as in the run block (``decision(coherences = [0.1, 0.5])``), for ``--task``:
    the same names, arguments and checks as the model checker. File names are relative to the
    current folder."""
    from eigraph.frontend import ast
    from eigraph.frontend.dsl import parse
    from eigraph.model.resolve import Resolver, _Skip

    expr, problems = parse(text, "<--task>", start="expr")
    if expr is None or any(d.is_error for d in problems):
        detail = problems[0].message if problems else "cannot read it"
        raise TaskError(f"--task '{text}': {detail}; write it as in a run block, for example "
                        "--task 'decision(coherences = [0.064, 0.256])'")
    resolver = Resolver(ast.Document("<--task>"))
    try:
        spec = resolver._task(expr)
    except _Skip:
        spec = None
    errors = [d for d in resolver.diagnostics if d.is_error]
    if spec is None or errors:
        first = errors[0] if errors else None
        message = first.message if first else "not a task"
        hint = f" ({first.hint})" if first is not None and first.hint else ""
        raise TaskError(f"--task '{text}': {message}{hint}")
    return spec
