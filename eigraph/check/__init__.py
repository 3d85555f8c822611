"""The checks of ``eigraph validate``, one module per family (LANGUAGE.md section 6).

Each family reads the population graph and returns diagnostics; :func:`run_checks` runs them
all and applies the network's ``dale = off`` (Dale findings become warnings).
"""

from __future__ import annotations

from eigraph.check import celltypes, dale, numerics, resources, rules, structure
from eigraph.diagnostics import WARNING, Diagnostic

FAMILIES = (dale, celltypes, structure, numerics, rules, resources)


def run_checks(graph) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for family in FAMILIES:
        found += family.check(graph)
    return found


def apply_dale_setting(diagnostics: list[Diagnostic], dale_on: bool) -> list[Diagnostic]:
    if dale_on:
        return diagnostics
    return [d.as_severity(WARNING) if d.code.startswith("D") else d for d in diagnostics]
