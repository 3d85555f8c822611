"""Source tree -> resolved model: names resolved, units normalised, prelude merged.

The resolver reports what stops it from understanding a declaration (unknown names, wrong units,
malformed values) and keeps going, so one run of ``eigraph validate`` shows every mistake.
Semantic checks on the understood model (Dale's law, structure, numerics) live in
:mod:`eigraph.check` and read the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from eigraph.diagnostics import Diagnostic, Span, char_span, error, invisible_char, suggest, warning
from eigraph.expr import ast as ex
from eigraph.expr.evaluate import EvalError, Value, evaluate
from eigraph.frontend import ast
from eigraph.model import catalog, units
from eigraph.model.spec import (
    ACTIVATIONS,
    PRECISIONS,
    ROLES,
    SIGN_NAMES,
    SIGNS,
    CellType,
    Model,
    Network,
    Phase,
    Population,
    Projection,
    Rule,
    RunSpec,
)

PRELUDE_PATH = Path(__file__).with_name("prelude.ei")
MAX_SIZE = 100_000_000
DEFAULT_TAU = 10e-3


@lru_cache(maxsize=1)
def prelude_document() -> ast.Document:
    from eigraph.frontend.dsl import parse_document

    text = PRELUDE_PATH.read_text(encoding="utf-8")
    doc, problems = parse_document(text, "<prelude>")
    if doc is None or problems:  # the prelude is ours: a mistake in it is a bug, not a user error
        raise RuntimeError(f"the eigraph prelude does not parse: {problems}")
    return doc


def prelude_text() -> str:
    return PRELUDE_PATH.read_text(encoding="utf-8")


class _Skip(Exception):
    """A value could not be understood; its diagnostic is already recorded."""


class Resolver:
    def __init__(self, document: ast.Document):
        self.doc = document
        self.base = Path(document.path).resolve().parent if document.path and not document.path.startswith("<") else Path.cwd()
        self.diagnostics: list[Diagnostic] = []
        self.network = Network(name=Path(document.path).stem or "model")
        self.celltypes: dict[str, CellType] = {}
        self.populations: dict[str, Population] = {}
        self.projections: dict[str, Projection] = {}
        self.rules: dict[str, Rule] = {}
        self.run_spec: RunSpec | None = None
        self.phases: list[Phase] = []
        self.dropped: set[str] = set()  # populations declared with an error already reported

    # helpers ---------------------------------------------------------------------------------
    def report(self, code: str, message: str, span: Span | None, hint: str = "", severity: str = "error"):
        make = error if severity == "error" else warning
        self.diagnostics.append(make(code, message, span, hint))

    def _settings(self, settings: list[ast.Setting], allowed, where: str, extra_ok=lambda key: False) -> dict:
        """Settings by key; reports unknown and repeated keys. Later settings replace earlier ones."""
        found: dict[str, ast.Setting] = {}
        for setting in settings:
            if setting.key not in allowed and not extra_ok(setting.key):
                hint = suggest(setting.key, allowed) or f"{where} takes: {', '.join(allowed)}"
                self.report("N107", f"unknown key '{setting.key}' in {where}", setting.span, hint)
                continue
            found[setting.key] = setting
        return found

    def _no_repeats(self, settings: list[ast.Setting], where: str):
        seen: dict[str, ast.Setting] = {}
        for setting in settings:
            if setting.key in seen:
                first = seen[setting.key].span
                line = f" (first set on line {first.line})" if first else ""
                self.report("N106", f"'{setting.key}' is set twice in {where}{line}", setting.span,
                            "remove one of them")
            seen[setting.key] = setting

    def _eval(self, expr: ex.Expr, env: dict | None = None) -> Value:
        try:
            return evaluate(expr, env)
        except EvalError as exc:
            self.report(exc.code, exc.message, exc.span or expr.span, exc.hint)
            raise _Skip from None

    def _number(self, expr: ex.Expr, what: str, env: dict | None = None, rate_ok: bool = False) -> float:
        """A plain number; with ``rate_ok`` a rate in Hz too (rates in eigraph are in Hz)."""
        value = self._eval(expr, env)
        if rate_ok and units.dim_key(value.dim) == (("s", -1),):
            return value.magnitude
        if not units.is_plain(value.dim):
            self.report("U505", f"{what} must be a plain number, not {units.describe(value.dim)}", expr.span,
                        "remove the unit")
            raise _Skip
        return value.magnitude

    def _integer(self, expr: ex.Expr, what: str) -> int:
        value = self._number(expr, what)
        if value != int(value):
            self.report("T412", f"{what} must be a whole number, got {ex.format_number(value)}", expr.span,
                        "round it to a whole number")
            raise _Skip
        return int(value)

    def _time(self, expr: ex.Expr, what: str, allowed=units.TIME_UNITS) -> tuple[float | None, float | None]:
        """(seconds, steps): exactly one is set, from a quantity with a time unit."""
        value = self._eval(expr, None)
        if units.is_plain(value.dim):
            self.report("U501", f"{what} needs a time unit", expr.span,
                        f"write it with a unit: {', '.join(allowed)} (for example '{ex.to_text(expr)} ms')")
            raise _Skip
        key = units.dim_key(value.dim)
        if key == (("s", 1),) and ("ms" in allowed or "s" in allowed):
            return value.magnitude, None
        if key == (("steps", 1),) and "steps" in allowed:
            return None, value.magnitude
        self.report("U505", f"{what} must be a time ({', '.join(allowed)}), not {units.describe(value.dim)}",
                    expr.span, f"use one of: {', '.join(allowed)}")
        raise _Skip

    def _word(self, expr: ex.Expr, choices, what: str) -> str:
        if isinstance(expr, ex.Name) and len(expr.parts) == 1 and expr.dotted in choices:
            return expr.dotted
        shown = ex.to_text(expr)
        hint = suggest(shown, choices) if isinstance(expr, ex.Name) else ""
        self.report("N109", f"'{shown}' is not a valid {what}", expr.span,
                    (hint + " " if hint else "") + f"choose one of: {', '.join(choices)}")
        raise _Skip

    def _flag(self, expr: ex.Expr, what: str) -> bool:
        word = self._word(expr, ("on", "off", "true", "false"), what)
        return word in ("on", "true")

    def _bind(self, call: ex.Expr, table: dict, what: str) -> tuple[str, dict[str, ex.Expr]]:
        """Bind a Name or Call against a table of (parameter names, required count)."""
        if isinstance(call, ex.Name) and len(call.parts) == 1:
            name, args, kwargs, span = call.dotted, (), (), call.span
        elif isinstance(call, ex.Call):
            name, args, kwargs, span = call.func, call.args, call.kwargs, call.func_span or call.span
        else:
            self.report("N108", f"'{ex.to_text(call)}' is not a {what}", call.span,
                        f"{_plural(what)}: {', '.join(table)}")
            raise _Skip
        if name not in table:
            hint = suggest(name, table)
            self.report("N108", f"unknown {what} '{name}'", span,
                        (hint + " " if hint else "") + f"{_plural(what)}: {', '.join(table)}")
            raise _Skip
        params, required = table[name]
        return name, self._bind_args(name, params, required, args, kwargs, call, what)

    def _bind_args(self, name, params, required, args, kwargs, call, what) -> dict[str, ex.Expr]:
        bound: dict[str, ex.Expr] = {}
        signature = f"{name}({', '.join(params)})"
        if len(args) > len(params):
            self.report("N111", f"{what} '{name}' takes {len(params)} argument(s), got {len(args) + len(kwargs)}",
                        args[len(params)].span, f"write {signature}")
            raise _Skip
        for param, arg in zip(params, args):
            bound[param] = arg
        for kw in kwargs:
            if kw.name not in params:
                hint = suggest(kw.name, params) or f"write {signature}"
                self.report("N104", f"{what} '{name}' has no parameter '{kw.name}'", kw.span, hint)
                raise _Skip
            if kw.name in bound:
                self.report("N106", f"parameter '{kw.name}' of '{name}' is given twice", kw.span, f"write {signature}")
                raise _Skip
            bound[kw.name] = kw.value
        missing = [p for p in params[:required] if p not in bound]
        if missing:
            self.report("N111", f"{what} '{name}' needs {', '.join(missing)}", call.span, f"write {signature}")
            raise _Skip
        return bound

    def _file(self, expr: ex.Expr, what: str) -> Path:
        if not isinstance(expr, ex.String):
            self.report("U505", f"{what} must be a file name in double quotes", expr.span,
                        'for example: mask("mask.npy")')
            raise _Skip
        self._visible_string(expr, what)
        return (self.base / expr.value).resolve()

    def _visible_string(self, expr: ex.String, what: str) -> None:
        """N114: a string value (a file name, a task argument) holding a control character."""
        self._refuse_invisible("N114", expr, what, "write strings on one line with visible characters only: "
                               "remove the character (or rename the file)")

    def _refuse_invisible(self, code: str, expr: ex.String, what: str, hint: str) -> None:
        """Report ``code`` with the caret on the first invisible character of ``expr`` (and skip
        the declaration); nothing when every character is visible."""
        found = invisible_char(expr.value)
        if found is not None:
            index, char = found
            self.report(code, f"{what} holds {char} at character {index + 1}",
                        char_span(expr.span, expr.value, index), hint)
            raise _Skip

    # declarations ----------------------------------------------------------------------------
    def resolve(self) -> Model:
        prelude = prelude_document()
        self._network()
        self._celltypes(prelude.celltypes, builtin=True)
        self._celltypes(self.doc.celltypes, builtin=False)
        self._rules(prelude.rules, builtin=True)
        self._rules(self.doc.rules, builtin=False)
        self._populations()
        self._runs()
        self._phases()
        self._bias_phases()
        self._projections()
        self._ties()
        self._rule_uses()
        return Model(self.doc.path, self.network, self.celltypes, self.populations, self.projections,
                     self.rules, self.run_spec, self.doc, self.diagnostics, phases=self.phases)

    def _network(self):
        decls = self.doc.network
        for extra in decls[1:]:
            self.report("N106", f"a second network declaration ('{extra.name}')", extra.span,
                        f"a model has one network block; the first is '{decls[0].name}' on line {decls[0].span.line}")
        if not decls:
            return
        decl = decls[0]
        net = self.network
        net.name, net.span = decl.name, decl.span
        self._no_repeats(decl.settings, "the network block")
        settings = self._settings(decl.settings, catalog.NETWORK_KEYS, "the network block")
        for key, setting in settings.items():
            net.spans[key] = setting.value.span or setting.span
            try:
                if key == "dt":
                    seconds, steps = self._time(setting.value, "dt", ("ms", "s"))
                    if seconds <= 0:
                        self.report("U507", "dt must be greater than 0", setting.value.span, "for example: dt = 1 ms")
                    else:
                        net.dt = seconds
                elif key == "seed":
                    seed = self._integer(setting.value, "seed")
                    if not 0 <= seed < 2**32:
                        self.report("T413", "seed must be between 0 and 2^32 - 1", setting.value.span, "for example: seed = 1")
                    else:
                        net.seed = seed
                elif key == "precision":
                    net.precision = self._word(setting.value, PRECISIONS, "precision")
                elif key == "dale":
                    net.dale = self._flag(setting.value, "value for dale")
                elif key == "spectral_radius":
                    radius = self._number(setting.value, "spectral_radius")
                    if radius <= 0:
                        self.report("U507", "spectral_radius must be greater than 0", setting.value.span,
                                    "typical values are 0.8 to 1.5")
                    else:
                        net.spectral_radius = radius
            except _Skip:
                pass

    def _celltypes(self, decls: list[ast.CellTypeDecl], builtin: bool):
        declared: dict[str, ast.CellTypeDecl] = {}
        for decl in decls:
            if decl.name in declared:
                first = declared[decl.name].span
                self.report("N106", f"cell type '{decl.name}' is declared twice", decl.span,
                            f"the first declaration is on line {first.line}; rename one of them")
                continue
            declared[decl.name] = decl
            if decl.sign not in SIGNS:
                hint = suggest(decl.sign, SIGNS)
                self.report("N109", f"'{decl.sign}' is not a sign", decl.sign_span,
                            (hint + " " if hint else "") + "a cell type is excitatory, inhibitory or unsigned")
                continue
            role = "hidden"
            if decl.role is not None:
                if decl.role not in ROLES:
                    hint = suggest(decl.role, ROLES)
                    self.report("N109", f"'{decl.role}' is not a role", decl.role_span,
                                (hint + " " if hint else "") + "the role is input or readout, or nothing for hidden")
                    continue
                role = decl.role
            self._no_repeats(decl.settings, f"cell type '{decl.name}'")
            compartments: tuple[str, ...] = ()
            gains: dict[str, float] = {}
            defaults = []
            for setting in decl.settings:
                if setting.key == "compartments":
                    compartments = self._compartments(setting)
                elif setting.key.endswith("_gain"):
                    try:
                        gains[setting.key[: -len("_gain")]] = self._number(setting.value, setting.key)
                    except _Skip:
                        pass
                else:
                    defaults.append(setting)
            self._settings(defaults, catalog.POPULATION_KEYS, f"cell type '{decl.name}'")
            for comp, _gain in gains.items():
                if comp not in compartments:
                    span = next(s.span for s in decl.settings if s.key == f"{comp}_gain")
                    hint = suggest(comp, compartments) or f"declare it: compartments = [{comp}]"
                    self.report("C302", f"cell type '{decl.name}' has no compartment '{comp}'", span, hint)
            defaults = [s for s in defaults if s.key in catalog.POPULATION_KEYS]
            self.celltypes[decl.name] = CellType(decl.name, SIGNS[decl.sign], role, defaults, compartments,
                                                 gains, builtin, decl.span)

    def _compartments(self, setting: ast.Setting) -> tuple[str, ...]:
        value = setting.value
        items = value.items if isinstance(value, ex.ListExpr) else (value,)
        names = []
        for item in items:
            if isinstance(item, ex.Name) and len(item.parts) == 1 and item.dotted not in ("soma", "x", "r", "fprime"):
                if item.dotted in names:
                    self.report("N106", f"compartment '{item.dotted}' is listed twice", item.span, "remove the second one")
                names.append(item.dotted)
            else:
                self.report("N109", f"'{ex.to_text(item)}' is not a compartment name", item.span,
                            "write compartments = [apical, basal]; soma, x, r and fprime are taken (post.fprime is "
                            "the derivative of the activation)")
        return tuple(dict.fromkeys(names))

    def _rules(self, decls: list[ast.RuleDecl], builtin: bool):
        from eigraph.frontend.emit import rule_text

        declared: dict[str, ast.RuleDecl] = {}
        for decl in decls:
            if decl.name in declared:
                self.report("N106", f"rule '{decl.name}' is declared twice", decl.span,
                            f"the first declaration is on line {declared[decl.name].span.line}; rename one of them")
                continue
            declared[decl.name] = decl
            params, spans = {}, {}
            names = _name_params(decl)
            for param in decl.params:
                if param.name in params or param.name in catalog.RULE_SYMBOLS:
                    why = "is a rule symbol" if param.name in catalog.RULE_SYMBOLS else "is declared twice"
                    self.report("R603", f"parameter '{param.name}' of rule '{decl.name}' {why}", param.span,
                                "rename the parameter")
                    continue
                spans[param.name] = param.span
                params[param.name] = None
                if param.default is not None:
                    try:
                        params[param.name] = self._rule_value(decl.name, param.name, param.default, names)
                    except _Skip:
                        pass
            timing = "step"
            if decl.timing is not None:
                if decl.timing not in catalog.RULE_TIMINGS:
                    hint = suggest(decl.timing, catalog.RULE_TIMINGS)
                    self.report("N109", f"'on {decl.timing}' is not a rule timing", decl.timing_span,
                                (hint + " " if hint else "") + "write 'on step' (the default) or 'on trial'")
                else:
                    timing = decl.timing
            if self._check_rule_body(decl, params):
                self._check_rule_units(decl, params, names)
            self.rules[decl.name] = Rule(decl.name, params, timing, decl.body, builtin, decl.span, spans,
                                         rule_text(decl), names)

    def _rule_value(self, rule: str, param: str, expr: ex.Expr, names: set[str]):
        """A rule argument: a number (SI units; Hz read as a plain rate), or, for a parameter the rule
        reads as ``post.PARAM`` or ``X@PARAM``, a compartment or phase name (``compartment = apical``)."""
        if param in names:
            if isinstance(expr, ex.Name) and len(expr.parts) == 1 and expr.phase is None:
                return expr.dotted
            self.report("U505", f"parameter '{param}' of rule '{rule}' names a compartment or a phase (the rule "
                                f"reads post.{param} or X@{param})", expr.span,
                        f"write {param} = NAME (a compartment or phase name, for example apical or free)")
            raise _Skip
        value = self._eval(expr)
        if units.dim_key(value.dim) == (("s", -1),):
            return value.magnitude
        if param.startswith("tau") and units.dim_key(value.dim) == (("steps", 1),):
            if not self.network.dt:
                self.report("U510", f"time constant '{param}' of rule '{rule}' is in steps, which needs the network's dt",
                            expr.span, "set dt in the network block, or write the time constant in ms or s")
                raise _Skip
            value = Value(value.magnitude * self.network.dt, {"s": 1})
        if param.startswith("tau"):
            if units.is_plain(value.dim):
                self.report("U501", f"time constant '{param}' of rule '{rule}' needs a time unit", expr.span,
                            f"write it with a unit: ms or s (for example '{ex.to_text(expr)} ms')")
                raise _Skip
            if units.dim_key(value.dim) != (("s", 1),):
                self.report("U505", f"time constant '{param}' of rule '{rule}' must be a time in ms or s",
                            expr.span, "use ms or s")
                raise _Skip
            if value.magnitude <= 0:
                self.report("U507", f"time constant '{param}' must be greater than 0", expr.span,
                            "a time constant is a positive time, for example 100 ms")
                raise _Skip
        elif not units.is_plain(value.dim) and units.dim_key(value.dim) != (("s", 1),):
            self.report("U505", f"parameter '{param}' of rule '{rule}' cannot be {units.describe(value.dim)}",
                        expr.span, "use a plain number or a time")
            raise _Skip
        return value.magnitude

    def _check_rule_body(self, decl: ast.RuleDecl, params: dict) -> bool:
        """Symbols, functions and assignments of a rule body; True when it found nothing wrong."""
        before = len(self.diagnostics)
        traces = {s.target: s for s in decl.body if s.kind == "ode"}
        written: dict[str, ast.Statement] = {}
        defined = set(params) | set(traces)
        for statement in decl.body:
            if statement.kind == "init":
                if statement.target not in traces:
                    hint = suggest(statement.target, traces) or "an initial value belongs to a trace: theta' = ..."
                    self.report("R604", f"'{statement.target}(0)' sets the start of '{statement.target}', "
                                        f"which is not a trace of rule '{decl.name}'", statement.span, hint)
                if not (isinstance(statement.at, ex.Number) and statement.at.value == 0 and statement.at.unit is None):
                    self.report("R606", "an initial value is written NAME(0) = VALUE", statement.at.span,
                                f"write {statement.target}(0) = ...")
                self._check_rule_expr(decl, statement.value, set(params), inits=True)
                continue
            target = statement.target
            if target in catalog.RULE_SYMBOLS or target in params:
                what = "a rule symbol" if target in catalog.RULE_SYMBOLS else "a parameter of the rule"
                self.report("R603", f"'{target}' is {what} and cannot be assigned", statement.span,
                            "give the temporary or trace another name")
                continue
            if statement.kind == "ode" and target == catalog.WEIGHT_CHANGE:
                self.report("R603", "'dw' is the weight change, not a trace", statement.span,
                            "write dw = ... (an increment per update)")
                continue
            if statement.kind == "ode" and statement.annotation not in (None, "shared"):
                self.report("R605", f"unknown trace annotation ': {statement.annotation}'", statement.annotation_span,
                            "the only annotation is ': shared' (one value for the whole batch)")
            key = (statement.kind, target)
            if target in written and (written[target].kind == statement.kind or target == catalog.WEIGHT_CHANGE):
                first = written[target].span
                self.report("R602", f"'{target}' is written twice in rule '{decl.name}' (first on line {first.line})",
                            statement.span, "combine the two into one equation")
                continue
            if target in written or (statement.kind == "let" and target in traces):
                self.report("R602", f"'{target}' is both a trace and a temporary in rule '{decl.name}'",
                            statement.span, "give them different names")
                continue
            del key
            self._check_rule_expr(decl, statement.value, defined)
            written[target] = statement
            if statement.kind == "let":
                defined.add(target)
        if catalog.WEIGHT_CHANGE not in written:
            self.report("R601", f"rule '{decl.name}' never sets dw, the weight change", decl.span,
                        "add a line: dw = ... (for example dw = eta * pre * post)")
        return len(self.diagnostics) == before

    def _check_rule_units(self, decl: ast.RuleDecl, params: dict, names: set[str]):
        """Dimensions in a rule body: rates, weights and traces are plain numbers, dt and t times;
        a trace's right side is a rate of change (per second) and dw a plain increment."""
        time, per_time = {"s": 1}, {"s": -1}
        dims: dict[str, dict | None] = {"dt": time, "t": time}
        for name, value in params.items():
            if name in names:
                continue
            is_time = name.startswith("tau") and value is not None
            dims[name] = time if is_time else ({} if value is not None else None)
        for statement in decl.body:
            if statement.kind == "ode":
                dims[statement.target] = {}
        for statement in decl.body:
            if statement.kind == "init":
                continue
            try:
                dim = _rule_dim(statement.value, dims)
            except EvalError as exc:
                self.report(exc.code, exc.message, exc.span, exc.hint)
                continue
            if dim is None:
                continue
            if statement.kind == "ode" and units.dim_key(dim) != units.dim_key(per_time):
                self.report("U511", f"the right side of {statement.target}' is {units.describe(dim)}, but a trace "
                                    "equation gives a rate of change (per second)", statement.value.span,
                            f"divide by a time constant: {statement.target}' = (... - {statement.target}) / tau")
            elif statement.kind == "let":
                if statement.target == catalog.WEIGHT_CHANGE and not units.is_plain(dim):
                    self.report("U511", f"dw is {units.describe(dim)}, but it is a plain increment per update",
                                statement.value.span, "dw is not per second: remove the time factor, or multiply "
                                "a rate of change by dt")
                dims[statement.target] = dim

    def _check_rule_expr(self, decl: ast.RuleDecl, expr: ex.Expr, defined: set, inits: bool = False):
        known = set(catalog.RULE_SYMBOLS) | defined
        if inits:
            known = set(defined)
        for node in ex.walk(expr):
            if isinstance(node, ex.Name):
                if node.phase is not None:
                    if inits or node.base not in ("pre", "post") and not (len(node.parts) == 2
                                                                         and node.parts[0] == "post"):
                        self.report("N105", f"'{node.dotted}': only pre, post, post.x and post.COMPARTMENT have "
                                            "values at the end of a phase", node.span,
                                    "write pre@PHASE, post@PHASE or post.COMPARTMENT@PHASE")
                    continue  # the phase itself is checked where the rule is used
                if len(node.parts) == 1:
                    if node.dotted not in known:
                        later = [s for s in decl.body if s.kind == "let" and s.target == node.dotted]
                        if later and not inits:
                            hint = f"'{node.dotted}' is defined later, on line {later[0].span.line}: move it up"
                        else:
                            hint = suggest(node.dotted, known) or ("symbols: " + ", ".join(sorted(known)))
                        where = "an initial value" if inits else f"rule '{decl.name}'"
                        self.report("N105", f"unknown symbol '{node.dotted}' in {where}", node.span, hint)
                elif node.parts[0] == "post" and len(node.parts) == 2 and not inits:
                    continue  # post.x or post.COMPARTMENT: checked where the rule is used
                else:
                    self.report("N105", f"unknown symbol '{node.dotted}' in rule '{decl.name}'", node.span,
                                "only post has state and compartments: post.x, post.COMPARTMENT")
            elif isinstance(node, ex.Call):
                if inits and node.func in catalog.RULE_ONLY_FUNCTIONS:
                    self.report("R613", f"'{node.func}(...)' is a function of a rule's equations; an initial "
                                        "value is one number for every neuron", node.func_span or node.span,
                                f"use {node.func}(...) in an equation of the rule, and a number here")
                    continue
                if node.func not in catalog.RULE_FUNCTIONS:
                    hint = suggest(node.func, catalog.RULE_FUNCTIONS)
                    self.report("N108", f"unknown function '{node.func}' in rule '{decl.name}'",
                                node.func_span or node.span,
                                (hint + " " if hint else "") + "functions: " + ", ".join(catalog.RULE_FUNCTIONS))
                    continue
                want = catalog.RULE_FUNCTIONS[node.func]
                if node.kwargs or len(node.args) != want:
                    example = {"top_fraction": "top_fraction(plateau, 0.1): 1 for the 10% largest of the "
                                               "population where > 0, else 0",
                               "bernoulli": "bernoulli(p): 1 with probability p, else 0",
                               "uniform": "uniform() draws in [0, 1): write a + (b - a) * uniform() for [a, b)",
                               }.get(node.func, "for example clip(x, 0, 1), min(a, b), mean(post)")
                    self.report("N111", f"'{node.func}' takes {want} argument(s)", node.span, example)
                elif node.func in ("top_fraction", "bernoulli"):
                    self._check_population_call(decl, node)
                elif node.func == "mean" and not (isinstance(node.args[0], ex.Name)
                                                  and node.args[0].dotted in ("pre", "post")):
                    self.report("N111", "mean() takes pre or post: the population mean", node.args[0].span,
                                "write mean(pre) or mean(post)")
            elif isinstance(node, (ex.String, ex.ListExpr)):
                self.report("U505", "a rule equation holds numbers, not strings or lists", node.span,
                            "write a number, a symbol or a function call")
            elif isinstance(node, ex.Number) and node.unit is not None:
                try:
                    evaluate(node)
                except EvalError as exc:
                    self.report(exc.code, exc.message, exc.span, exc.hint)

    def _check_population_call(self, decl: ast.RuleDecl, node: ex.Call) -> None:
        """top_fraction(x, f) and bernoulli(p) are per post neuron: their argument may not read
        pre, w or what depends on them (R611); f is a constant fraction in [0, 1] (R612)."""
        from eigraph.compile.rules import PRE, SYN, expression_sides, statement_sides

        try:
            known = statement_sides(decl.body)
            sides = expression_sides(node.args[0], known)
        except KeyError:  # an unknown symbol, reported on its own (N105)
            sides = set()
        if sides & {PRE, SYN, "w"}:
            what = "x" if node.func == "top_fraction" else "p"
            self.report("R611", f"the argument of {node.func}() reads the pre population or w, but {node.func}() "
                                "is one value per post neuron", node.args[0].span,
                        f"{what} may read post, post.COMPARTMENT, post@PHASE, target, reward, the rule's "
                        "parameters and what depends on them only; multiply by the pre factor outside: "
                        f"{node.func}(...) * pre")
        if node.func != "top_fraction":
            return
        fraction = node.args[1]
        params = {p.name for p in decl.params}
        other = [n for n in ex.walk(fraction) if isinstance(n, ex.Name) and n.dotted not in params]
        if other or any(isinstance(n, ex.Call) and n.func in catalog.RULE_ONLY_FUNCTIONS for n in ex.walk(fraction)):
            bad = other[0].dotted if other else "a function of the population"
            self.report("R612", f"the fraction of top_fraction() reads {bad}: it is one number for the whole "
                                "population", (other[0].span if other else fraction.span) or node.span,
                        "write a number or a parameter of the rule: top_fraction(x, max_pop_fraction)")
        elif not any(isinstance(n, ex.Name) for n in ex.walk(fraction)):
            try:
                value = evaluate(fraction).magnitude
            except EvalError as exc:
                self.report(exc.code, exc.message, exc.span, exc.hint)
                return
            self._check_fraction(value, fraction.span or node.span, "")

    def _check_fraction(self, value: float, span, where: str) -> None:
        if not 0 <= value <= 1:
            self.report("R612", f"the fraction of top_fraction() is {ex.format_number(value)}{where}; it must be in "
                                "[0, 1]", span, "0 selects no neuron, 1 every neuron whose value is above 0")

    def _populations(self):
        seen: dict[str, ast.PopulationDecl] = {}
        for decl in self.doc.populations:
            if decl.name in seen:
                self.report("N106", f"population '{decl.name}' is declared twice", decl.span,
                            f"the first declaration is on line {seen[decl.name].span.line}; rename one of them")
                continue
            seen[decl.name] = decl
            celltype = self.celltypes.get(decl.celltype)
            self.dropped.add(decl.name)
            if celltype is None:
                hint = suggest(decl.celltype, self.celltypes)
                self.report("N102", f"unknown cell type '{decl.celltype}'", decl.celltype_span,
                            (hint + " " if hint else "") + "declare it with: celltype NAME : excitatory|inhibitory|unsigned")
                continue
            try:
                population = self._population(decl, celltype)
            except _Skip:
                continue
            self.populations[decl.name] = population
            self.dropped.discard(decl.name)

    def _population(self, decl: ast.PopulationDecl, celltype: CellType) -> Population:
        self._no_repeats(decl.settings, f"population '{decl.name}'")
        own = self._settings(decl.settings, catalog.POPULATION_KEYS, f"population '{decl.name}'")
        merged = {s.key: s for s in celltype.defaults}
        merged.update(own)
        spans = {}
        for key, setting in merged.items():
            span = setting.value.span or setting.span
            spans[key] = decl.span if span is None or span.file == "<prelude>" else span
        spans["size"] = decl.size.span or decl.span
        size_value = self._eval(decl.size)
        if not units.is_plain(size_value.dim) or size_value.magnitude != int(size_value.magnitude):
            self.report("T401", f"the size of population '{decl.name}' must be a whole number of neurons",
                        decl.size.span, "for example: E(80)")
            raise _Skip
        size = int(size_value.magnitude)
        if size > MAX_SIZE:
            self.report("T401", f"population '{decl.name}' has {size:,} neurons, more than eigraph's limit of "
                                f"{MAX_SIZE:,}", decl.size.span, "is there a typo in the size?")
            raise _Skip
        role = celltype.role
        sign = celltype.sign
        sign_override = False
        if "sign" in merged:
            try:
                word = self._word(merged["sign"].value, ("excitatory", "inhibitory"), "sign")
                sign, sign_override = SIGNS[word], True
            except _Skip:
                pass
        dt = self.network.dt
        tau = tau_steps = None
        alpha = 1.0
        default_activation = "linear" if role in ("input", "readout") else "relu"
        if role != "input":
            if "tau" in merged:
                owner = f"population '{decl.name}'" if "tau" in own else f"cell type '{celltype.name}'"
                try:
                    tau, tau_steps = self._time(merged["tau"].value, f"tau of {owner}")
                except _Skip:
                    tau = DEFAULT_TAU
            else:
                tau = DEFAULT_TAU
            if tau is not None:
                if tau <= 0:
                    self.report("U507", f"tau of population '{decl.name}' must be greater than 0", spans.get("tau"),
                                "a time constant is a positive time, for example tau = 20 ms")
                    tau = DEFAULT_TAU
                tau_steps = tau / dt if dt else None
            elif tau_steps is not None:
                if tau_steps < 1:
                    self.report("U502", f"tau of population '{decl.name}' is {ex.format_number(tau_steps)} steps; "
                                        "it must be at least 1 step", spans.get("tau"),
                                "'tau = 1 steps' is the discrete update x = input")
                    tau_steps = 1.0
                tau = tau_steps * dt if dt else None
            alpha = 1.0 / tau_steps if tau_steps else 1.0
        activation = default_activation
        if "activation" in merged:
            try:
                activation = self._word(merged["activation"].value, ACTIVATIONS, "activation")
            except _Skip:
                pass
        bias = 0.0
        if "bias" in merged:
            try:
                value = merged["bias"].value
                if isinstance(value, ex.Call) and value.func in catalog.DISTRIBUTIONS:
                    bias = self._distribution(value, {"fan_in": Value(1.0), "fan_out": Value(1.0)})
                else:
                    bias = self._number(value, "bias", rate_ok=True)
            except _Skip:
                pass
        noise = x0 = 0.0
        for key in ("noise", "x0"):
            if key in merged:
                try:
                    number = self._number(merged[key].value, key, rate_ok=key == "x0")
                    if key == "noise":
                        noise = number
                    else:
                        x0 = number
                except _Skip:
                    pass
        population = Population(decl.name, celltype.name, sign, role, size, tau, tau_steps, alpha, activation, bias,
                                noise, x0, decl.area, celltype.compartments, dict(celltype.compartment_gains),
                                decl.span, spans, sign_override)
        self._bias_learning(population, merged)
        return population

    def _bias_learning(self, population: Population, merged: dict) -> None:
        """``learn_bias = RULE(...)``, ``bias_phase`` and ``bias_bounds``: the bias is the weight of a
        synapse from an always-on unit (docs/language.md, learned biases). ``bias_phase`` is resolved
        with the phases (:meth:`_bias_phases`)."""
        spans = population.spans
        if "learn_bias" in merged:
            if population.role == "input":
                self.report("R614", f"population '{population.name}' is an input population: it has no bias to "
                                    "learn (its rates are the task's input)", spans["learn_bias"],
                            "remove learn_bias, or learn the bias of a hidden or readout population")
            else:
                try:
                    population.learn_bias = self._learn(merged["learn_bias"].value, "learn_bias")
                except _Skip:
                    pass
        for key in ("bias_phase", "bias_bounds"):
            if key in merged and "learn_bias" not in merged:
                self.report("R614", f"{key} = ... on population '{population.name}', whose bias is not learned",
                            spans[key], f"remove {key}, or learn the bias: learn_bias = RULE(...)")
        if "bias_bounds" in merged and "learn_bias" in merged:
            population.bias_bounds = self._bounds(merged["bias_bounds"].value, "bias_bounds")
        if "bias_phase" in merged and "learn_bias" in merged:
            population.bias_phase_expr = merged["bias_phase"].value

    def _bias_phases(self) -> None:
        for population in self.populations.values():
            if population.bias_phase_expr is None:
                continue
            phases = self._phase_refs(population.bias_phase_expr, "bias_phase")
            population.bias_phase_expr = None
            if population.learn_bias is not None and phases is not None:
                population.learn_bias["phases"] = phases

    def _distribution(self, expr: ex.Expr, env: dict) -> dict:
        name, bound = self._bind(expr, catalog.DISTRIBUTIONS, "distribution")
        args = {key: self._number(value, f"argument '{key}' of {name}", env) for key, value in bound.items()}
        return {"dist": name, "args": args, "text": ex.to_text(expr)}

    def _runs(self):
        decls = self.doc.runs
        for extra in decls[1:]:
            self.report("N106", "a second run block", extra.span, "a model has one run block; merge them")
        if not decls:
            return
        decl = decls[0]
        spec = RunSpec(span=decl.span)
        self._no_repeats(decl.settings, "the run block")
        settings = self._settings(decl.settings, catalog.RUN_KEYS, "the run block")
        for key, setting in settings.items():
            value = setting.value
            spec.spans[key] = value.span or setting.span
            try:
                if key == "task":
                    spec.task = self._task(value)
                elif key in ("inputs", "targets"):
                    items = value.items if isinstance(value, ex.ListExpr) else (value,)
                    names = []
                    for item in items:
                        names.append(self._population_ref(item, f"{key} of the run block"))
                    setattr(spec, key, names)
                elif key == "record":
                    items = value.items if isinstance(value, ex.ListExpr) else (value,)
                    spec.record = [self._record_ref(item) for item in items]
                elif key in ("trials", "batch", "steps", "seed"):
                    number = self._integer(value, key)
                    if key == "seed" and number >= 2**32:
                        self.report("T413", "seed must be between 0 and 2^32 - 1", value.span, "for example: seed = 1")
                    elif number < (0 if key == "seed" else 1):
                        self.report("T414", f"{key} must be at least {0 if key == 'seed' else 1}", value.span,
                                    f"for example: {key} = {100 if key == 'trials' else (0 if key == 'seed' else 10)}")
                    else:
                        setattr(spec, key, number)
            except _Skip:
                pass
        self.run_spec = spec

    def _task(self, expr: ex.Expr) -> dict:
        table = {name: (tuple(params), sum(v is catalog.REQUIRED for v in params.values()))
                 for name, params in catalog.TASKS.items()}
        name, bound = self._bind(expr, table, "task")
        args = {}
        for key, default in catalog.TASKS[name].items():
            if key not in bound:
                args[key] = default
                continue
            value = bound[key]
            if key in ("file", "name") and not isinstance(value, ex.String):
                self.report("U505", f"task argument '{key}' is a string", value.span,
                            f'write it in double quotes: {name}({key} = "...")')
                raise _Skip
            if isinstance(value, ex.String):
                self._visible_string(value, f"task argument '{key}'")
                args[key] = str((self.base / value.value).resolve()) if key == "file" else value.value
            elif isinstance(value, ex.Name) and len(value.parts) == 1:
                args[key] = value.dotted
            elif isinstance(value, ex.ListExpr):
                args[key] = [self._number(item, f"an item of '{key}'") for item in value.items]
            else:
                args[key] = self._number(value, f"task argument '{key}'")
        return {"name": name, "args": args, "text": ex.to_text(expr)}

    def _population_ref(self, item: ex.Expr, where: str, area: str | None = None) -> str:
        if not isinstance(item, ex.Name):
            self.report("N101", f"'{ex.to_text(item)}' is not a population name ({where})", item.span,
                        "write a population name, or a list of them: [stim, context]")
            raise _Skip
        name = self._lookup(item.dotted, area)
        if name is None and self._was_dropped(item.dotted, area):
            raise _Skip
        if name is None:
            hint = suggest(item.dotted, self.populations)
            self.report("N101", f"unknown population '{item.dotted}' in {where}", item.span,
                        hint or "declare it with: population NAME : CELLTYPE(SIZE)")
            raise _Skip
        return name

    def _record_ref(self, item: ex.Expr) -> str:
        if isinstance(item, ex.Name) and len(item.parts) >= 2 and item.parts[-1] in ("r", "x"):
            population = self._population_ref(ex.Name(item.parts[:-1], span=item.span), "record")
            return f"{population}.{item.parts[-1]}"
        self.report("N101", f"'{ex.to_text(item)}' is not a recordable variable", item.span,
                    "record POP.r (rates) or POP.x (states), for example record = [E.r, I.r]")
        raise _Skip

    def _was_dropped(self, name: str, area: str | None) -> bool:
        scope = area
        while scope:
            if f"{scope}.{name}" in self.dropped:
                return True
            scope = scope.rpartition(".")[0] or None
        return name in self.dropped

    def _lookup(self, name: str, area: str | None) -> str | None:
        """Resolve a population name written inside ``area``: innermost area first, then outwards."""
        scope = area
        while scope:
            candidate = f"{scope}.{name}"
            if candidate in self.populations:
                return candidate
            scope = scope.rpartition(".")[0] or None
        return name if name in self.populations else None

    def _projections(self):
        first_by_name: dict[str, ast.ProjectionDecl] = {}
        for decl in self.doc.projections:
            try:
                projection = self._projection(decl)
            except _Skip:
                continue
            if projection.name in first_by_name:
                first = first_by_name[projection.name]
                self.report("N106", f"a second projection named '{projection.name}' (first on line {first.span.line})",
                            decl.span, 'several projections between one pair need different names: add name = "..."')
                continue
            first_by_name[projection.name] = decl
            self.projections[projection.name] = projection

    def _target(self, decl: ast.ProjectionDecl) -> tuple[str, str | None]:
        name = self._lookup(decl.target, decl.area)
        if name is not None:
            return name, None
        if self._was_dropped(decl.target, decl.area) or self._was_dropped(decl.target.rpartition(".")[0], decl.area):
            raise _Skip
        head, _, compartment = decl.target.rpartition(".")
        if head:
            population = self._lookup(head, decl.area)
            if population is not None:
                return population, compartment
        hint = suggest(decl.target, self.populations)
        self.report("N101", f"unknown population '{decl.target}'", decl.target_span,
                    hint or "declare it with: population NAME : CELLTYPE(SIZE)")
        raise _Skip

    def _projection(self, decl: ast.ProjectionDecl) -> Projection:
        source = self._lookup(decl.source, decl.area)
        if source is None and self._was_dropped(decl.source, decl.area):
            raise _Skip
        if source is None:
            hint = suggest(decl.source, self.populations)
            self.report("N101", f"unknown population '{decl.source}'", decl.source_span,
                        hint or "declare it with: population NAME : CELLTYPE(SIZE)")
            target_ok = True
            try:
                self._target(decl)
            except _Skip:
                target_ok = False
            del target_ok
            raise _Skip
        target, compartment = self._target(decl)
        pre, post = self.populations[source], self.populations[target]
        spans = {"source": decl.source_span, "target": decl.target_span, "connectivity": decl.connectivity.span}
        if compartment is not None and compartment not in post.compartments:
            hint = suggest(compartment, post.compartments)
            have = ", ".join(post.compartments) if post.compartments else "none"
            self.report("C302", f"population '{target}' (cell type {post.celltype}) has no compartment '{compartment}'",
                        decl.target_span, (hint + " " if hint else "") +
                        f"its compartments: {have}; declare them in the cell type: compartments = [{compartment}]")
            raise _Skip
        self._no_repeats(decl.settings, "a projection")
        settings = self._settings(decl.settings, catalog.PROJECTION_KEYS, f"projection {decl.source} -> {decl.target}")
        for key, setting in settings.items():
            spans[key] = setting.value.span or setting.span
        name = f"{source}->{target}" + (f".{compartment}" if compartment else "")
        if "name" in settings:
            value = settings["name"].value
            if isinstance(value, ex.String):
                self._refuse_invisible("N113", value, "the projection name",
                                       "names are written on one line with visible characters only: remove it, "
                                       'for example name = "E->E slow"')
            if isinstance(value, ex.String) and value.value.strip():
                name = value.value
            else:
                self.report("U505", "a projection name must be a non-empty string", value.span,
                            'write it in double quotes: name = "E->E slow"')
                raise _Skip
        autapses = False
        if "autapses" in settings:
            try:
                autapses = self._flag(settings["autapses"].value, "value for autapses")
            except _Skip:
                pass
        connectivity = self._connectivity(decl.connectivity, pre, post, source == target and not autapses)
        fan_in, fan_out = connectivity.pop("fan_in"), connectivity.pop("fan_out")
        if "of_span" in connectivity:
            spans["of"] = connectivity.pop("of_span")
        env = {"fan_in": Value(float(fan_in)), "fan_out": Value(float(fan_out))}
        init = None
        if connectivity["kind"] == "transpose":
            for key in ("init", "learn", "bounds", "normalize"):
                if key in settings:
                    self.report("N115", f"{key} cannot be set on a tied projection: its weights are always "
                                        f"{ex.format_number(connectivity.get('scale', 1.0))} x the transpose of "
                                        f"'{connectivity.get('of', '?')}'", spans[key],
                                f"remove {key}; set it on '{connectivity.get('of', 'the projection it is tied to')}'")
            settings = {k: v for k, v in settings.items() if k not in ("init", "learn", "bounds", "normalize")}
        if "init" in settings:
            if connectivity["kind"] == "weights":
                self.report("N112", "init cannot be combined with weights(file): the file gives the initial weights",
                            spans["init"], "remove init, or use mask(file) with init")
            else:
                try:
                    init = self._distribution(settings["init"].value, env)
                except _Skip:
                    pass
        elif connectivity["kind"] not in ("weights", "transpose"):
            init = self._default_init(pre, env)
        delay, delay_time = (0 if pre.role == "input" else 1), None
        if "delay" in settings:
            try:
                seconds, steps = self._time(settings["delay"].value, "delay")
                if seconds is not None:
                    delay_time = seconds
                    steps = seconds / self.network.dt if self.network.dt else None
                if steps is not None:
                    delay = round(steps) if math.isfinite(steps) and steps >= 0 else -1
                    connectivity["delay_steps_exact"] = steps
            except _Skip:
                pass
        learn = None
        if "learn" in settings:
            try:
                learn = self._learn(settings["learn"].value)
            except _Skip:
                pass
        if "phase" in settings:
            phases = self._phase_refs(settings["phase"].value, "phase")
            if "learn" not in settings:
                self.report("P705", "phase = ... says in which phases a projection learns, but this one does not "
                                    "learn", spans["phase"], "remove phase, or add learn = RULE(...)")
            elif learn is not None and phases is not None:
                learn["phases"] = phases
        bounds = None
        if "bounds" in settings:
            bounds = self._bounds(settings["bounds"].value)
        normalize = None
        if "normalize" in settings:
            try:
                normalize = self._number(settings["normalize"].value, "normalize")
                if normalize <= 0:
                    self.report("U507", "normalize (the row sum) must be greater than 0", spans["normalize"],
                                "for example: normalize = 1")
                    normalize = None
            except _Skip:
                pass
        gain = 1.0
        if "gain" in settings:
            try:
                gain = self._number(settings["gain"].value, "gain")
            except _Skip:
                pass
        carry = "rate"
        if "carry" in settings:
            carry = self._carry(settings["carry"].value, name, pre, post, compartment, learn, spans)
        return Projection(name, source, target, compartment, connectivity, init, delay, delay_time, learn, bounds,
                          normalize, gain, autapses, float(fan_in), float(fan_out), decl.span, spans, carry)

    def _carry(self, value: ex.Expr, name: str, pre: Population, post: Population, compartment: str | None,
               learn: dict | None, spans: dict) -> str:
        """``carry = rate`` (the default) or ``carry = error``: the source's error, target - rate, on the
        steps the task gives the source a target (0 elsewhere), into a compartment that does not drive the
        soma, through fixed signed weights (a learning signal: no Dale check)."""
        if not (isinstance(value, ex.Name) and len(value.parts) == 1 and value.phase is None
                and value.dotted in catalog.CARRIES):
            hint = suggest(ex.to_text(value), catalog.CARRIES) if isinstance(value, ex.Name) else None
            self.report("N109", f"'{ex.to_text(value)}' is not what a projection can carry", value.span,
                        (hint + " " if hint else "") + "write carry = rate (the default) or carry = error")
            raise _Skip  # neither: its other checks (Dale's law) would depend on a guess
        if value.dotted == "rate":
            return "rate"
        where = spans.get("carry", value.span)
        if compartment is None:
            self.report("C305", f"{name} carries the error of '{pre.name}' onto the soma of '{post.name}': an error "
                                "feedback goes into a compartment that rules read, not into the soma", spans["target"],
                        f"declare a compartment (compartments = [fb] in the cell type of '{post.name}') and project "
                        f"onto it: {pre.name} -> {post.name}.fb")
        elif post.compartment_gains.get(compartment, 0.0) != 0.0:
            self.report("C305", f"{name} carries an error into {post.name}.{compartment}, but {compartment}_gain = "
                                f"{ex.format_number(post.compartment_gains[compartment])} adds that compartment to "
                                "the soma: a learning signal must not drive the neuron", where,
                        f"remove {compartment}_gain from the cell type (or set it to 0), or use a compartment of "
                        "its own for the feedback")
        if learn is not None:
            self.report("C306", f"{name} carries an error (a learning signal through fixed weights) and cannot "
                                "learn", spans.get("learn", where),
                        "remove learn = ...; feedback alignment keeps its random feedback weights fixed")
        if pre.role == "input":
            self.report("C307", f"{name} carries the error of '{pre.name}', an input population: inputs have no "
                                "target", where, "carry the error of a population the task has a target for")
        elif self.run_spec is not None and pre.name not in self.run_spec.targets:
            self.report("C307", f"{name} carries the error of '{pre.name}', but '{pre.name}' gets no target from "
                                "the task, so its error is always 0", where,
                        f"add it to the run block: targets = {pre.name}")
        return "error"

    def _phase_refs(self, expr: ex.Expr, what: str) -> list[str] | None:
        """Phase names (one or a list) that must be declared; None when one is not."""
        items = expr.items if isinstance(expr, ex.ListExpr) else (expr,)
        names, ok = [], True
        declared = [p.name for p in self.phases]
        if not items:
            self.report("P703", f"{what} = [] names no phase", expr.span,
                        f"name the phases, for example {what} = nudged (leave it out to learn in every phase)")
            return None
        for item in items:
            if not (isinstance(item, ex.Name) and len(item.parts) == 1 and item.phase is None):
                self.report("P703", f"'{ex.to_text(item)}' is not a phase name", item.span,
                            f"write {what} = PHASE or a list [PHASE, ...]")
                ok = False
            elif item.dotted not in declared:
                self._unknown_phase(item.dotted, item.span)
                ok = False
            elif item.dotted not in names:
                names.append(item.dotted)
        return names if ok and names else None

    def _unknown_phase(self, name: str, span: Span | None, where: str = "") -> None:
        declared = [p.name for p in self.phases]
        if not declared:
            self.report("P703", f"unknown phase '{name}'{where}: the model declares no phases", span,
                        "declare the phases of a trial: phase free { steps = 20 }  phase nudged { steps = 20; "
                        "nudge = OUT }")
        else:
            hint = suggest(name, declared)
            self.report("P703", f"unknown phase '{name}'{where}", span,
                        (hint + " " if hint else "") + f"the phases: {', '.join(declared)}")

    def _phases(self):
        seen: dict[str, ast.PhaseDecl] = {}
        targets = set(self.run_spec.targets) if self.run_spec else None
        for decl in self.doc.phases:
            if decl.name in seen:
                first = seen[decl.name].span
                self.report("N106", f"a second phase named '{decl.name}'" + (f" (first on line {first.line})" if first
                                                                             else ""), decl.span,
                            "give each phase its own name")
                continue
            seen[decl.name] = decl
            phase = Phase(decl.name, len(self.phases), span=decl.span)
            self._no_repeats(decl.settings, f"phase '{decl.name}'")
            settings = self._settings(decl.settings, catalog.PHASE_KEYS, f"phase '{decl.name}'")
            for key, setting in settings.items():
                phase.spans[key] = setting.value.span or setting.span
                value = setting.value
                try:
                    if key == "steps":
                        steps = self._integer(value, "steps")
                        if steps < 1:
                            self.report("P706", f"phase '{decl.name}' must run at least 1 step", value.span,
                                        "for example: steps = 20")
                        else:
                            phase.steps = steps
                    elif key in ("nudge", "clamp"):
                        items = value.items if isinstance(value, ex.ListExpr) else (value,)
                        names = [self._population_ref(item, f"{key} of phase '{decl.name}'") for item in items]
                        for item, name in zip(items, names):
                            if key == "clamp" and self.populations[name].activation == "softmax":
                                self.report("P706", f"phase '{decl.name}' cannot clamp '{name}': its softmax rates "
                                                    "are a distribution over its neurons, not values to set",
                                            item.span, "nudge it instead (nudge = ...), or give it another activation")
                            if self.populations[name].role == "input":
                                self.report("P701", f"phase '{decl.name}' cannot {key} '{name}': it is an input "
                                                    "population", item.span, f"{key} a population the task has a "
                                                                             "target for (the run's targets)")
                            elif targets is not None and name not in targets:
                                self.report("P701", f"phase '{decl.name}' would {key} '{name}' toward the task's "
                                                    f"target, but '{name}' gets no target", item.span,
                                            f"add it to the run block: targets = {name}")
                        setattr(phase, key, names)
                    elif key == "beta":
                        beta = self._number(value, "beta")
                        if not beta > 0:
                            self.report("P706", f"beta (the nudge's strength) must be greater than 0, got "
                                                f"{ex.format_number(beta)}", value.span, "for example: beta = 0.5")
                        else:
                            phase.beta = beta
                    elif key == "couple":
                        items = value.items if isinstance(value, ex.ListExpr) else (value,)
                        for item in items:
                            phase.couple.append(self._compartment_ref(item, f"couple of phase '{decl.name}'"))
                    elif key == "couple_gain":
                        phase.couple_gain = self._number(value, "couple_gain")
                    elif key == "couple_clip":
                        phase.couple_clip = self._bounds(value)
                    elif key == "couple_from":
                        if not (isinstance(value, ex.Name) and len(value.parts) == 1):
                            self.report("P703", f"'{ex.to_text(value)}' is not a phase name", value.span,
                                        "write couple_from = PHASE, an earlier phase")
                        elif value.dotted not in [p.name for p in self.phases]:
                            later = value.dotted == decl.name or any(d.name == value.dotted for d in self.doc.phases)
                            if later:
                                self.report("P702", f"phase '{decl.name}' couples the change since the end of phase "
                                                    f"'{value.dotted}', which does not come before it", value.span,
                                            "couple_from names an earlier phase")
                            else:
                                self._unknown_phase(value.dotted, value.span)
                        else:
                            phase.couple_from = value.dotted
                except _Skip:
                    pass
            for key, needs in (("beta", "nudge"), ("couple_gain", "couple"), ("couple_clip", "couple"),
                               ("couple_from", "couple")):
                if key in settings and needs not in settings:
                    self.report("P707", f"{key} in phase '{decl.name}' has no effect without {needs}",
                                phase.spans.get(key), f"add {needs} = ..., or remove {key}", severity="warning")
            both = set(phase.nudge) & set(phase.clamp)
            if both:
                self.report("P706", f"phase '{decl.name}' both nudges and clamps '{sorted(both)[0]}'",
                            phase.spans.get("clamp"), "choose one: nudge (toward the target) or clamp (set to it)")
            if phase.index == 0 and (phase.nudge or phase.clamp):
                key = "nudge" if phase.nudge else "clamp"
                self.report("P704", f"the first phase ('{decl.name}') is the free phase: evaluation runs it without "
                                    f"targets, so it cannot {key}", phase.spans.get(key),
                            f"declare a free phase first: phase free {{ steps = 20 }}, then one that {key}s")
            self.phases.append(phase)

    def _compartment_ref(self, item: ex.Expr, where: str) -> tuple[str, str]:
        if not (isinstance(item, ex.Name) and len(item.parts) >= 2 and item.phase is None):
            self.report("C302", f"'{ex.to_text(item)}' is not a compartment ({where})", item.span,
                        "write POP.COMPARTMENT, for example H1.E.apical")
            raise _Skip
        population = self._population_ref(ex.Name(item.parts[:-1], span=item.span), where)
        compartment = item.parts[-1]
        have = self.populations[population].compartments
        if compartment not in have:
            hint = suggest(compartment, have)
            self.report("C302", f"population '{population}' has no compartment '{compartment}'", item.span,
                        (hint + " " if hint else "") + f"its compartments: {', '.join(have) or 'none'}")
            raise _Skip
        return population, compartment

    def _ties(self):
        """transpose(of, scale): the projection it names exists, is dense and not tied itself, has the
        transposed shape, and under Dale's law its magnitudes stay magnitudes here."""
        for projection in list(self.projections.values()):
            c = projection.connectivity
            if c.get("kind") != "transpose" or c.get("invalid"):
                continue
            span = projection.spans.get("of") or projection.spans.get("connectivity")
            other = self.projections.get(c["of"])
            problem = None
            if other is None:
                hint = suggest(c["of"], self.projections)
                problem = (f"transpose(...) names '{c['of']}', which is not a projection of this model",
                           (hint + " " if hint else "") + "projection names are SOURCE->TARGET, or the name = set")
            elif other.name == projection.name:
                problem = ("a projection cannot be tied to itself", "name another projection")
            elif other.connectivity.get("kind") == "transpose":
                problem = (f"'{other.name}' is tied itself", f"tie to '{other.connectivity.get('of')}' instead")
            elif other.connectivity.get("kind") != "dense":
                problem = (f"'{other.name}' is {other.connectivity.get('text', other.connectivity.get('kind'))}: a "
                           "tied projection needs a dense one", f"make '{other.name}' dense")
            else:
                pre, post = self.populations[projection.source], self.populations[projection.target]
                o_pre, o_post = self.populations[other.source], self.populations[other.target]
                if (post.size, pre.size) != (o_pre.size, o_post.size):
                    problem = (f"{projection.name} is {post.size} x {pre.size} (post x pre), but the transpose of "
                               f"'{other.name}' is {o_pre.size} x {o_post.size}",
                               "tie projections whose populations match: B -> A to A -> B")
            if problem:
                self.report("N115", problem[0], span, problem[1])
                del self.projections[projection.name]
                continue
            sign = self.populations[projection.source].sign
            o_sign = self.populations[other.source].sign
            scale = c["scale"]
            if sign != 0 and (o_sign == 0 or scale < 0):
                why = (f"'{other.name}' comes from an unsigned population, so its weights can be negative" if o_sign == 0
                       else f"scale = {ex.format_number(scale)} is negative")
                self.report("D207", f"{projection.name} is tied to '{other.name}' under Dale's law, but {why}: "
                                    f"the magnitudes of {projection.name} (from {SIGN_NAMES[sign]} "
                                    f"'{projection.source}') would be negative",
                            span, "tie to a projection from a signed population, with scale >= 0, or set "
                                  "dale = off", severity="error" if self.network.dale else "warning")

    def _default_init(self, pre: Population, env: dict) -> dict:
        sigma = 1.0 / math.sqrt(max(env["fan_in"].magnitude, 1.0))
        if pre.sign != 0:
            return {"dist": "halfnormal", "args": {"sigma": sigma}, "text": "halfnormal(1 / sqrt(fan_in))",
                    "default": True}
        return {"dist": "normal", "args": {"mu": 0.0, "sigma": sigma}, "text": "normal(0, 1 / sqrt(fan_in))",
                "default": True}

    def _connectivity(self, expr: ex.Expr, pre: Population, post: Population, no_self: bool) -> dict:
        try:
            kind, bound = self._bind(expr, catalog.CONNECTIVITIES, "connectivity")
        except _Skip:
            return {"kind": "dense", "invalid": True, "fan_in": pre.size, "fan_out": post.size}
        n_pre = pre.size - (1 if no_self else 0)
        n_post = post.size - (1 if no_self else 0)
        out = {"kind": kind, "text": ex.to_text(expr)}
        fan_in, fan_out = max(n_pre, 0), max(n_post, 0)
        try:
            if kind == "sparse":
                p = self._number(bound["p"], "p")
                out["p"] = p
                fan_in, fan_out = p * n_pre, p * n_post
            elif kind == "fixed_in":
                k = self._integer(bound["k"], "k")
                out["k"] = k
                fan_in, fan_out = k, k * post.size / max(pre.size, 1)
            elif kind == "one_to_one":
                fan_in = fan_out = 1
            elif kind == "transpose":
                if not isinstance(bound["of"], ex.String) or not bound["of"].value.strip():
                    self.report("N115", "transpose(...) names the projection it is tied to, in double quotes",
                                bound["of"].span, 'for example: transpose("H2.E->Output.E", scale = 1)')
                    raise _Skip
                self._visible_string(bound["of"], "the projection transpose(...) is tied to")
                out["of"] = bound["of"].value
                out["of_span"] = bound["of"].span
                out["scale"] = self._number(bound["scale"], "scale") if "scale" in bound else 1.0
            elif kind in ("mask", "weights"):
                path = self._file(bound["file"], f"the file of {kind}(...)")
                out["file"] = str(path)
                out.update(_inspect_array(path, (post.size, pre.size)))
                if "rows_nonzero_mean" in out:
                    fan_in, fan_out = out["rows_nonzero_mean"], out["cols_nonzero_mean"]
        except _Skip:
            out["invalid"] = True
        out["fan_in"], out["fan_out"] = fan_in, fan_out
        return out

    def _learn(self, expr: ex.Expr, key: str = "learn") -> dict:
        if isinstance(expr, ex.Name) and len(expr.parts) == 1:
            name, args, kwargs, span = expr.dotted, (), (), expr.span
        elif isinstance(expr, ex.Call):
            name, args, kwargs, span = expr.func, expr.args, expr.kwargs, expr.func_span or expr.span
        else:
            self.report("N103", f"'{ex.to_text(expr)}' is not a learning rule", expr.span,
                        f"write {key} = RULE(param = value, ...)")
            raise _Skip
        rule = self.rules.get(name)
        if rule is None:
            hint = suggest(name, self.rules)
            self.report("N103", f"unknown rule '{name}'", span,
                        (hint + " " if hint else "") + "built-in rules: " +
                        ", ".join(r for r, spec in self.rules.items() if spec.builtin))
            raise _Skip
        params = tuple(rule.params)
        bound = self._bind_args(name, params, 0, args, kwargs, expr, "rule")
        values = dict(rule.params)
        for key, value in bound.items():
            values[key] = self._rule_value(name, key, value, rule.name_params)
        missing = [key for key, value in values.items() if value is None]
        if missing:
            self.report("R607", f"rule '{name}' needs a value for {', '.join(missing)}", expr.span,
                        f"write {key} = {name}({', '.join(f'{m} = ...' for m in missing)})")
            raise _Skip
        return {"rule": name, "args": values, "text": ex.to_text(expr)}

    def _bounds(self, expr: ex.Expr, key: str = "bounds"):
        if not (isinstance(expr, ex.ListExpr) and len(expr.items) == 2):
            self.report("U505", f"{key} are written [lo, hi]", expr.span, f"for example: {key} = [0, 1]")
            return None
        try:
            lo, hi = (self._number(item, "a bound") for item in expr.items)
        except _Skip:
            return None
        if not lo < hi:
            self.report("U509", f"the lower bound ({ex.format_number(lo)}) must be below the upper "
                                f"({ex.format_number(hi)})", expr.span, f"write {key} = [lo, hi] with lo < hi")
            return None
        return (lo, hi)

    def _rule_uses(self):
        """Per projection and learned bias: compartments and targets the rule reads must exist for its
        post population, and phase values must exist when it learns. A learned bias is a projection
        from an always-on unit onto its population (``pre = 1``): every rule symbol has a value there."""
        targets = set(self.run_spec.targets) if self.run_spec else set()
        users = [(q.name, q.learn, q.target, q.spans.get("learn"), "phase", "projection")
                 for q in self.projections.values()]
        users += [(p.bias_name, p.learn_bias, p.name, p.spans.get("learn_bias"), "bias_phase", "population")
                  for p in self.populations.values()]
        for name, learn, target_name, span, phase_key, owner in users:
            if learn is None:
                continue
            projection = _Use(name, learn, target_name)
            rule = self.rules[projection.learn["rule"]]
            post = self.populations[projection.target]
            order = {p.name: p.index for p in self.phases}
            learning = projection.learn.get("phases") or [p.name for p in self.phases]
            reported_phases: set[str] = set()
            self._check_fractions(rule, projection, span)
            self._check_baseline(rule, projection, span)
            for statement in rule.statements:
                for node in ex.walk(statement.value):
                    if not isinstance(node, ex.Name):
                        continue
                    # a user's rule is pointed at where it reads the symbol; a built-in one at its use
                    inside = node.span if not rule.builtin and node.span is not None else span
                    where = "" if inside is span else f" (used by {projection.name} on line {span.line})"
                    phase = node.phase
                    if isinstance(projection.learn["args"].get(phase), str):  # a parameter naming the phase
                        phase, inside, where = projection.learn["args"][phase], span, ""
                        node = ex.Name(node.parts, phase=phase, span=node.span)
                    if phase is not None and phase not in reported_phases:
                        reported_phases.add(phase)
                        if phase not in order:
                            self._unknown_phase(phase, inside, f" in rule '{rule.name}'{where}")
                        else:
                            early = [p for p in learning if order[p] <= order[node.phase]]
                            if early:
                                later = [p.name for p in self.phases if p.index > order[node.phase]]
                                self.report("P702", f"rule '{rule.name}' on {projection.name} reads "
                                                    f"{node.dotted}, the value at the end of phase '{node.phase}', "
                                                    f"but it learns in phase '{early[0]}', when that value does "
                                                    f"not exist yet{where}", inside,
                                            (f"learn in a later phase: {phase_key} = {later[0]} on the {owner}"
                                             if later else f"phase '{node.phase}' is the last phase: declare a "
                                                           "phase after it"))
                    if node.dotted == "target" and projection.target not in targets:
                        self.report("C303", f"rule '{rule.name}' on {projection.name} reads 'target', but population "
                                            f"'{projection.target}' gets no target{where}", inside,
                                    f"add it to the run block: targets = {projection.target}")
                        targets.add(projection.target)  # once per population
                    if node.parts == ("post", "fprime") and post.activation == "softmax":
                        self.report("C304", f"rule '{rule.name}' on {projection.name} reads post.fprime, but "
                                            f"population '{projection.target}' is softmax: its derivative is a "
                                            f"matrix over the neurons, not one value per neuron{where}", inside,
                                    "give the population another activation (linear, tanh, ...), or do not read "
                                    "post.fprime there")
                    if len(node.parts) == 2 and node.parts[0] == "post" and node.parts[1] not in catalog.POST_STATE:
                        compartment = node.parts[1]
                        value = projection.learn["args"].get(compartment)
                        if isinstance(value, str):
                            compartment, inside, where = value, span, ""  # the argument is at fault
                        if compartment not in post.compartments:
                            have = ", ".join(post.compartments) or "none"
                            self.report("C302", f"rule '{rule.name}' reads post.{compartment}, but population "
                                                f"'{projection.target}' has no compartment '{compartment}'{where}",
                                        inside, f"its compartments: {have}")

    def _check_baseline(self, rule, projection, span) -> None:
        """A rule reading reward_baseline: eigraph run keeps the running mean of the reward with
        the rule's parameters baseline_trials (at least 1) and baseline_per_type (0 or 1) (R615)."""
        if not any(isinstance(n, ex.Name) and n.dotted == "reward_baseline"
                   for st in rule.statements for n in ex.walk(st.value)):
            return
        args = projection.learn["args"]
        trials, per_type = args.get("baseline_trials"), args.get("baseline_per_type")
        if isinstance(trials, (int, float)) and not trials >= 1:
            self.report("R615", f"rule '{rule.name}' on {projection.name}: baseline_trials = "
                                f"{ex.format_number(trials)}: the running mean of the reward must span at least 1 "
                                "trial", span,
                        "R_bar <- R_bar + (R - R_bar) / baseline_trials: give 1 (the last reward) or more "
                        "(Miconi 2017: 4)")
        if isinstance(per_type, (int, float)) and per_type not in (0, 1):
            self.report("R615", f"rule '{rule.name}' on {projection.name}: baseline_per_type = "
                                f"{ex.format_number(per_type)}: it must be 0 (one baseline) or 1 (one per trial type)",
                        span, "baseline_per_type = 1 keeps a baseline per trial type of the task, 0 one for every "
                              "trial")

    def _check_fractions(self, rule, projection, span) -> None:
        """top_fraction's fraction with the values this projection gives the rule's parameters."""
        values = {k: Value(v) for k, v in projection.learn["args"].items() if isinstance(v, (int, float))}
        for statement in rule.statements:
            for node in ex.walk(statement.value):
                if not (isinstance(node, ex.Call) and node.func == "top_fraction" and len(node.args) == 2):
                    continue
                fraction = node.args[1]
                names = [n for n in ex.walk(fraction) if isinstance(n, ex.Name)]
                if not names:
                    continue  # a constant: checked in the rule
                try:
                    value = evaluate(fraction, values).magnitude
                except EvalError:
                    continue  # reported in the rule (R612)
                self._check_fraction(value, span, f" on {projection.name} ({ex.to_text(fraction)})")


@dataclass
class _Use:
    """A rule where it is used: a projection's learn, or a population's learn_bias (name ``bias->POP``)."""

    name: str
    learn: dict
    target: str


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def _name_params(decl: ast.RuleDecl) -> set[str]:
    """Parameters the rule reads as ``post.PARAM`` or ``X@PARAM``: their values are compartment or
    phase names (``compartment = apical``, ``free = forward``)."""
    params = {p.name for p in decl.params}
    found = set()
    for statement in decl.body:
        for node in ex.walk(statement.value):
            if isinstance(node, ex.Name) and len(node.parts) == 2 and node.parts[0] == "post" and node.parts[1] in params:
                found.add(node.parts[1])
            if isinstance(node, ex.Name) and node.phase in params:
                found.add(node.phase)
    return found


_PLAIN_FUNCTIONS = ("exp", "log", "sqrt", "tanh", "sigmoid", "relu", "heaviside")


def _rule_dim(expr: ex.Expr, dims: dict) -> dict | None:
    """The dimension of a rule expression; None where a parameter has no default (unknown)."""
    if isinstance(expr, ex.Number):
        return dict(units.UNITS[expr.unit][0]) if expr.unit in units.UNITS else {}
    if isinstance(expr, ex.Name):
        return dims.get(expr.dotted, {}) if len(expr.parts) == 1 else {}
    if isinstance(expr, ex.Neg):
        return _rule_dim(expr.operand, dims)
    if isinstance(expr, ex.Call):
        args = [_rule_dim(a, dims) for a in expr.args]
        if expr.func == "mean":
            return {}
        if expr.func in ("top_fraction", "bernoulli", "uniform"):  # 0 or 1, or a draw in [0, 1)
            plain = args[1:] if expr.func == "top_fraction" else args
            for arg, node in zip(plain, expr.args[1:] if expr.func == "top_fraction" else expr.args):
                if arg is not None and not units.is_plain(arg):
                    what = "a fraction" if expr.func == "top_fraction" else "a probability"
                    raise EvalError(f"{expr.func}() takes {what}, a plain number, got {units.describe(arg)}",
                                    node.span, "divide by a unit first", code="U511")
            return {}
        if expr.func in _PLAIN_FUNCTIONS:
            for arg, node in zip(args, expr.args):
                if arg is not None and not units.is_plain(arg):
                    raise EvalError(f"{expr.func}() needs a plain number, got {units.describe(arg)}", node.span,
                                    "divide by a time constant first", code="U511")
            return {}
        known = [a for a in args if a is not None]
        for arg, node in zip(args, expr.args):
            if arg is not None and known and units.dim_key(arg) != units.dim_key(known[0]):
                raise EvalError(f"the arguments of {expr.func}() have different units", node.span,
                                "give them the same units", code="U511")
        return known[0] if len(known) == len(args) else None
    if isinstance(expr, ex.BinOp):
        left, right = _rule_dim(expr.left, dims), _rule_dim(expr.right, dims)
        if expr.op in "+-":
            if left is not None and right is not None and units.dim_key(left) != units.dim_key(right):
                raise EvalError(f"cannot {'add' if expr.op == '+' else 'subtract'} {units.describe(left)} and "
                                f"{units.describe(right)}", expr.span, "give both sides the same units",
                                code="U511")
            return left if left is not None else right
        if left is None or right is None:
            return None
        if expr.op in "*/":
            sign = 1 if expr.op == "*" else -1
            out = dict(left)
            for key, value in right.items():
                out[key] = out.get(key, 0) + sign * value
            return {k: v for k, v in out.items() if v}
        if not units.is_plain(right):
            raise EvalError("an exponent must be a plain number", expr.right.span, "remove the unit from the exponent",
                        code="U511")
        if units.is_plain(left):
            return {}
        if isinstance(expr.right, ex.Number) and expr.right.value == int(expr.right.value):
            return {k: v * int(expr.right.value) for k, v in left.items()}
        raise EvalError("a quantity with units can only be raised to a whole number", expr.span,
                    "divide by a time constant first, then take the power", code="U511")
    return {}


def _inspect_array(path: Path, expected: tuple[int, int] | None = None) -> dict:
    """Shape and value facts about a mask/weights file, for the checks (the array is not kept).
    The header is read first: a file of another shape than ``expected`` is not loaded."""
    import numpy as np

    from eigraph.check.resources import FileProblem, load_array, npy_header

    info: dict = {}
    if not path.exists() and not path.is_symlink():
        info["missing"] = True
        return info
    try:
        shape, dtype = npy_header(path)
        if expected is not None and shape != tuple(expected):
            return {"shape": shape, "dtype": str(dtype)}
        array = load_array(path)  # regular files only, the .npy header checked before the data is read
    except FileProblem as exc:
        info["file_problem"] = (exc.code, exc.message)
        return info
    info["shape"] = tuple(int(n) for n in array.shape)
    info["dtype"] = str(array.dtype)
    if array.dtype.kind not in "biuf":
        info["unreadable"] = f"values of type {array.dtype} are not numbers"
        return info
    values = array.astype(np.float64, copy=False)
    info["nan"] = bool(np.isnan(values).any() or np.isinf(values).any())
    finite = values[np.isfinite(values)]
    info["negative"] = bool((finite < 0).any())
    info["positive"] = bool((finite > 0).any())
    info["binary"] = bool(np.isin(finite, (0.0, 1.0)).all())
    if array.ndim == 2:
        nonzero = np.nan_to_num(values) != 0
        info["rows_nonzero_mean"] = float(nonzero.sum(axis=1).mean()) if array.shape[0] else 0.0
        info["cols_nonzero_mean"] = float(nonzero.sum(axis=0).mean()) if array.shape[1] else 0.0
    return info


def resolve(document: ast.Document) -> Model:
    return Resolver(document).resolve()
