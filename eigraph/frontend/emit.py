"""Source tree -> text: the ``.ei`` form and the YAML twin (``eigraph convert``).

Both are printed from the tree, so converting never goes through a model that lost detail:
expressions keep the user's numbers as written.
"""

from __future__ import annotations

import json
import re

from eigraph.expr.ast import to_text
from eigraph.frontend import ast

INDENT = "    "


def rule_text(decl: ast.RuleDecl) -> str:
    params = ", ".join(p.name + (f" = {to_text(p.default)}" if p.default is not None else "") for p in decl.params)
    timing = f" on {decl.timing}" if decl.timing else ""
    lines = [f"rule {decl.name}({params}){timing} {{"]
    lines += [INDENT + statement_text(s) for s in decl.body]
    lines.append("}")
    return "\n".join(lines)


def statement_text(statement: ast.Statement) -> str:
    if statement.kind == "ode":
        shared = f" : {statement.annotation}" if statement.annotation else ""
        return f"{statement.target}' = {to_text(statement.value)}{shared}"
    if statement.kind == "init":
        return f"{statement.target}({to_text(statement.at)}) = {to_text(statement.value)}"
    return f"{statement.target} = {to_text(statement.value)}"


def _settings_inline(settings: list[ast.Setting]) -> str:
    return "; ".join(f"{s.key} = {to_text(s.value)}" for s in settings)


def _block(settings: list[ast.Setting], indent: str) -> list[str]:
    width = max((len(s.key) for s in settings), default=0)
    return [f"{indent}{INDENT}{s.key.ljust(width)} = {to_text(s.value)}" for s in settings]


def _short(name: str, area: str | None) -> str:
    return name[len(area) + 1:] if area and name.startswith(area + ".") else name


def _qualify(name: str, area: str | None, populations: set[str]) -> str:
    """A population name as written inside ``area``, made absolute (the resolver's lookup order)."""
    scope = area
    while scope:
        if f"{scope}.{name}" in populations:
            return f"{scope}.{name}"
        scope = scope.rpartition(".")[0] or None
    if name in populations:
        return name
    head, _, compartment = name.rpartition(".")
    if head:
        absolute = _qualify(head, area, populations)
        if absolute in populations:
            return f"{absolute}.{compartment}"
    return name


def _population_line(p: ast.PopulationDecl, indent: str) -> str:
    name = p.name.rpartition(".")[2] if p.area else p.name
    return f"{indent}population {name} : {p.celltype}({to_text(p.size)})" + (
        f" {{ {_settings_inline(p.settings)} }}" if p.settings else "")


def _projection_line(p: ast.ProjectionDecl, indent: str) -> str:
    options = "".join(f", {s.key} = {to_text(s.value)}" for s in p.settings)
    return f"{indent}{p.source} -> {p.target} : {to_text(p.connectivity)}{options}"


def to_ei(doc: ast.Document) -> str:
    """The document as ``.ei`` text."""
    out: list[str] = []
    for net in doc.network:
        out += [f"network {net.name} {{", *_block(net.settings, ""), "}", ""]
    for ct in doc.celltypes:
        role = f" {ct.role}" if ct.role else ""
        body = f" {{ {_settings_inline(ct.settings)} }}" if ct.settings else ""
        out.append(f"celltype {ct.name} : {ct.sign}{role}{body}")
    if doc.celltypes:
        out.append("")
    areas = _area_paths(doc)
    for p in doc.populations:
        if not p.area:
            out.append(_population_line(p, ""))
    out += _areas(doc, areas, None, "")
    if doc.populations:
        out.append("")
    for p in doc.projections:
        if not p.area:
            out.append(_projection_line(p, ""))
    if doc.projections:
        out.append("")
    for rule in doc.rules:
        out += [rule_text(rule), ""]
    for phase in doc.phases:
        out += [f"phase {phase.name} {{", *_block(phase.settings, ""), "}", ""]
    for run in doc.runs:
        out += ["run {", *_block(run.settings, ""), "}", ""]
    return "\n".join(out).rstrip() + "\n"


def _area_paths(doc: ast.Document) -> list[str]:
    paths: list[str] = []
    for area in doc.areas:
        paths.append(f"{area.parent}.{area.name}" if area.parent else area.name)
    for item in [*doc.populations, *doc.projections]:
        if item.area:
            parts = item.area.split(".")
            paths += [".".join(parts[: i + 1]) for i in range(len(parts))]
    return list(dict.fromkeys(paths))


def _areas(doc: ast.Document, paths: list[str], parent: str | None, indent: str) -> list[str]:
    out: list[str] = []
    for path in paths:
        if (path.rpartition(".")[0] or None) != parent:
            continue
        out.append(f"{indent}area {path.rpartition('.')[2]} {{")
        inner = indent + INDENT
        out += [_population_line(p, inner) for p in doc.populations if p.area == path]
        out += _areas(doc, paths, path, inner)
        out += [_projection_line(p, inner) for p in doc.projections if p.area == path]
        out.append(f"{indent}}}")
    return out


# YAML --------------------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z0-9_.+\-*/^()\[\], =\"']+$")


def yaml_scalar(text: str) -> str:
    """A YAML scalar for ``text``: plain when YAML reads it back unchanged, else double-quoted."""
    risky = (
        not text
        or not _PLAIN.match(text)
        or text[0] in "[]{}\"'&*!|>%@`?:,#"
        or text == "-"
        or text.startswith("- ")
        or ": " in text
        or " #" in text
        or text != text.strip()
        or text in ("null", "~", "Null", "NULL")
    )
    return json.dumps(text, ensure_ascii=False) if risky else text


def yaml_value(value) -> str:
    """A value for the YAML twin: lists of simple items as YAML flow sequences, the rest as text."""
    from eigraph.expr import ast as ex

    if isinstance(value, ex.ListExpr) and value.items:
        items = [to_text(item) for item in value.items]
        if all(_PLAIN.match(i) and not any(c in i for c in ",[]{}\"'") and yaml_scalar(i) == i for i in items):
            return "[" + ", ".join(items) + "]"
    return yaml_scalar(to_text(value))


def to_yaml(doc: ast.Document) -> str:
    """The document as the YAML twin (LANGUAGE.md section 4)."""
    from eigraph.expr import ast as ex

    populations = {p.name for p in doc.populations}
    out: list[str] = []
    for net in doc.network:
        out.append("network:")
        out.append(f"  name: {yaml_scalar(net.name)}")
        out += [f"  {s.key}: {yaml_value(s.value)}" for s in net.settings]
    if doc.celltypes:
        out.append("celltypes:")
        for ct in doc.celltypes:
            out.append(f"  {ct.name}:")
            out.append(f"    sign: {ct.sign}")
            if ct.role:
                out.append(f"    role: {ct.role}")
            out += [f"    {'population_sign' if s.key == 'sign' else s.key}: {yaml_value(s.value)}"
                    for s in ct.settings]
    if doc.populations:
        out.append("populations:")
        for p in doc.populations:
            out.append(f"  {p.name}:")
            out.append(f"    celltype: {p.celltype}")
            out.append(f"    size: {yaml_scalar(to_text(p.size))}")
            out += [f"    {s.key}: {yaml_value(s.value)}" for s in p.settings]
    if doc.projections:
        out.append("projections:")
        for p in doc.projections:
            out.append(f"  - source: {yaml_scalar(_qualify(p.source, p.area, populations))}")
            out.append(f"    target: {yaml_scalar(_qualify(p.target, p.area, populations))}")
            out.append(f"    connectivity: {yaml_scalar(to_text(p.connectivity))}")
            for s in p.settings:
                value = to_text(s.value)
                if s.key == "name" and isinstance(s.value, ex.String):
                    value = s.value.value  # the text itself: yaml_scalar quotes it when YAML needs that
                elif s.key == "name" and value.startswith('"'):
                    value = value[1:-1]
                out.append(f"    {s.key}: {yaml_scalar(value) if s.key == 'name' else yaml_value(s.value)}")
    if doc.rules:
        out.append("rules:")
        for rule in doc.rules:
            out.append(f"  {rule.name}:")
            if rule.params:
                out.append("    params:")
                for param in rule.params:
                    value = yaml_scalar(to_text(param.default)) if param.default is not None else "null"
                    out.append(f"      {param.name}: {value}")
            if rule.timing:
                out.append(f"    timing: {rule.timing}")
            out.append("    body: |")
            out += [f"      {statement_text(s)}" for s in rule.body]
    if doc.phases:
        out.append("phases:")
        for phase in doc.phases:
            out.append(f"  {phase.name}:" if phase.settings else f"  {phase.name}: {{}}")
            out += [f"    {s.key}: {yaml_value(s.value)}" for s in phase.settings]
    for run in doc.runs:
        out.append("run:" if run.settings else "run: {}")
        out += [f"  {s.key}: {yaml_value(s.value)}" for s in run.settings]
    return "\n".join(out) + "\n"


# File references --------------------------------------------------------------------------------
_FILE_CALLS = ("mask", "weights")  # connectivity that reads a file: its first argument (or file = ...)


def _relocate_expr(expr, move):
    from dataclasses import replace

    from eigraph.expr import ast as ex

    if isinstance(expr, ex.Call):
        args = tuple(_relocate_expr(a, move) for a in expr.args)
        if expr.func in _FILE_CALLS and args and isinstance(args[0], ex.String):
            args = (replace(args[0], value=move(args[0].value)),) + args[1:]
        kwargs = []
        for kw in expr.kwargs:
            value = _relocate_expr(kw.value, move)
            if kw.name == "file" and isinstance(value, ex.String):
                value = replace(value, value=move(value.value))
            kwargs.append(replace(kw, value=value))
        return replace(expr, args=args, kwargs=tuple(kwargs))
    if isinstance(expr, ex.BinOp):
        return replace(expr, left=_relocate_expr(expr.left, move), right=_relocate_expr(expr.right, move))
    if isinstance(expr, ex.Neg):
        return replace(expr, operand=_relocate_expr(expr.operand, move))
    if isinstance(expr, ex.ListExpr):
        return replace(expr, items=tuple(_relocate_expr(i, move) for i in expr.items))
    return expr


def relocate(doc: ast.Document, source_folder, target_folder) -> ast.Document:
    """The document with its relative file names (``mask("m.npy")``, ``weights(...)``, a task's
    ``file = "..."``) rewritten to name the same files from ``target_folder``: a converted model
    written elsewhere still finds its arrays. Absolute names are kept as written."""
    import copy
    import os
    from pathlib import Path, PurePosixPath

    source_folder, target_folder = Path(source_folder).resolve(), Path(target_folder).resolve()
    if source_folder == target_folder:
        return doc

    def move(name: str) -> str:
        if not name or Path(name).is_absolute() or PurePosixPath(name).is_absolute():
            return name
        where = (source_folder / name).resolve()
        try:
            return Path(os.path.relpath(where, target_folder)).as_posix()
        except ValueError:  # another drive (Windows): no relative name exists
            return where.as_posix()

    out = copy.copy(doc)
    out.projections = [copy.copy(p) for p in doc.projections]
    for p in out.projections:
        p.connectivity = _relocate_expr(p.connectivity, move)
        p.settings = [copy.copy(s) for s in p.settings]
        for s in p.settings:
            s.value = _relocate_expr(s.value, move)
    out.runs = [copy.copy(r) for r in doc.runs]
    for r in out.runs:
        r.settings = [copy.copy(s) for s in r.settings]
        for s in r.settings:
            s.value = _relocate_expr(s.value, move)
    return out
