"""From a path to a checked model: read, parse, resolve, build the graph, check."""

from __future__ import annotations

from pathlib import Path

from eigraph.check import apply_dale_setting, run_checks
from eigraph.diagnostics import Diagnostic, ModelError, sort_key
from eigraph.frontend.dsl import parse_document
from eigraph.frontend.source import SourceFile, read_source
from eigraph.frontend.yaml import parse_yaml
from eigraph.model.graph import build_graph
from eigraph.model.resolve import resolve
from eigraph.model.spec import Model


def parse_source(source: SourceFile):
    if source.kind == "yaml":
        return parse_yaml(source.text, source.path)
    return parse_document(source.text, source.path)


def check_source(source: SourceFile) -> tuple[Model | None, list[Diagnostic]]:
    """Parse, resolve and check text already read; diagnostics sorted by position."""
    document, problems = parse_source(source)
    if document is None or any(d.is_error and d.code[0] in "SY" for d in problems):
        # like a compiler, stop at syntax errors: what follows them would be noise
        return None, sorted(problems, key=sort_key)
    model = resolve(document)
    model.graph = build_graph(model)
    found = problems + model.diagnostics + run_checks(model.graph)
    found = apply_dale_setting(found, model.network.dale)
    found = _unique(found)
    model.diagnostics = sorted(found, key=sort_key)
    return model, model.diagnostics


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for d in diagnostics:
        key = (d.code, d.message, d.span)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def check_path(path: str | Path) -> tuple[Model | None, list[Diagnostic], dict[str, str]]:
    """Read and check one file. Returns (model or None, diagnostics, {file: text})."""
    source, problems = read_source(path)
    if source is None:
        return None, problems, {}
    model, found = check_source(source)
    return model, found, {source.path: source.text}


def load_model(path: str | Path, strict: bool = False) -> Model:
    model, found, sources = check_path(path)
    failing = [d for d in found if d.is_error or strict]
    if model is None or failing:
        raise ModelError(failing or found, sources)
    return model
