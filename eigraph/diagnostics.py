"""Diagnostics: every finding eigraph reports about a model, with where it is and how to fix it.

A :class:`Diagnostic` carries a stable code (``D201``), a severity, a message, the
:class:`Span` of the text at fault and a hint. Renderers turn a list of them into text for a
person (source line and caret), JSON for tools, or GitHub Actions annotations for CI.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

ERROR = "error"
_YAML_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
WARNING = "warning"


@dataclass(frozen=True)
class Span:
    """A region of a source file. Lines and columns are 1-based; ``end_column`` is exclusive."""

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line if self.end_line is not None else self.line,
            "end_column": self.end_column if self.end_column is not None else self.column + 1,
        }

    @staticmethod
    def from_dict(data: dict) -> Span:
        return Span(data["file"], data["line"], data["column"], data.get("end_line"), data.get("end_column"))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One finding. ``code`` is stable across releases: scripts and docs may rely on it."""

    code: str
    severity: str
    message: str
    span: Span | None
    hint: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def as_severity(self, severity: str) -> Diagnostic:
        return replace(self, severity=severity)

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "notes": list(self.notes),
            "span": self.span.to_dict() if self.span else None,
        }


class ModelError(Exception):
    """Raised by the Python API when a model has errors; ``diagnostics`` holds all findings."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = sources or {}
        super().__init__(render_text(self.diagnostics, self.sources, color=False))


def error(code: str, message: str, span: Span | None, hint: str = "") -> Diagnostic:
    return Diagnostic(code, ERROR, message, span, hint)


def warning(code: str, message: str, span: Span | None, hint: str = "") -> Diagnostic:
    return Diagnostic(code, WARNING, message, span, hint)


def sort_key(diagnostic: Diagnostic) -> tuple:
    span = diagnostic.span
    if span is None:
        return ("", 0, 0, diagnostic.code)
    return (span.file, span.line, span.column, diagnostic.code)


def _source_line(span: Span, sources: dict[str, str]) -> str | None:
    text = sources.get(span.file)
    if text is None:
        try:
            text = Path(span.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        sources[span.file] = text
    if span.file.lower().endswith((".yaml", ".yml")):
        lines = _YAML_BREAKS.split(text)  # the line breaks YAML counts (PyYAML's marks)
    else:
        lines = text.split("\n")  # the .ei lexer counts only LF; a CR or U+2028 stays in its line
    if 1 <= span.line <= len(lines):
        return lines[span.line - 1].removesuffix("\r")
    return None


SNIPPET_WIDTH = 120  # characters of a long source line shown around the caret


def _window(shown: str, column: int, width: int) -> tuple[str, int, int]:
    """Cut a long line to about SNIPPET_WIDTH characters around the caret, with '...' where text
    is left out. Returns (text, caret offset, caret width), the caret still under the same text."""
    start = column - 1
    if len(shown) <= SNIPPET_WIDTH:
        return shown, start, width
    width = min(width, SNIPPET_WIDTH // 2)
    first = max(0, min(start - SNIPPET_WIDTH // 3, len(shown) - SNIPPET_WIDTH))
    last = min(len(shown), first + SNIPPET_WIDTH)
    head = "..." if first > 0 else ""
    tail = "..." if last < len(shown) else ""
    start = min(max(start, first), last)
    width = max(1, min(width, last - start))
    return head + shown[first:last] + tail, len(head) + start - first, width


def printable(text: str, newlines: bool = True) -> str:
    """Text for a terminal: control characters (and other invisible ones) written as escapes;
    line feeds kept when ``newlines`` (a hint may show two lines), escaped otherwise."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or (newlines and ch == "\n") else f"\\u{ord(ch):04x}" if ord(ch) > 0xff
                   else f"\\x{ord(ch):02x}" for ch in text)


def render_one(diagnostic: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    red, yellow, blue, bold, reset = ("\033[31m", "\033[33m", "\033[34m", "\033[1m", "\033[0m") if color else ("",) * 5
    tint = red if diagnostic.is_error else yellow
    where = f"{diagnostic.span}: " if diagnostic.span else ""
    where = printable(where, newlines=False)  # a file name can hold any character but / and NUL
    message = printable(diagnostic.message)
    out = [f"{bold}{where}{tint}{diagnostic.severity}[{diagnostic.code}]{reset}{bold}: {message}{reset}"]
    span = diagnostic.span
    if span is not None:
        line = _source_line(span, sources)
        if line is not None:
            gutter = f"{span.line:>5} | "
            shown = "".join(c if c.isprintable() else "?" for c in line.replace("\t", " "))
            width = 1
            if span.end_line in (None, span.line) and span.end_column and span.end_column > span.column:
                width = span.end_column - span.column
            width = max(1, min(width, max(1, len(shown) - span.column + 1)))
            shown, offset, width = _window(shown, span.column, width)
            out.append(f"{blue}{gutter}{reset}{shown}")
            out.append(f"{blue}{' ' * (len(gutter) - 2)}| {reset}{' ' * offset}{tint}{'^' * width}{reset}")
    for note in diagnostic.notes:
        out.append(f"  note: {printable(note)}")
    if diagnostic.hint:
        out.append(f"  {blue}hint{reset}: {printable(diagnostic.hint)}")
    return "\n".join(out)


def render_text(diagnostics: list[Diagnostic], sources: dict[str, str] | None = None, color: bool = False) -> str:
    sources = {} if sources is None else sources
    return "\n\n".join(render_one(d, sources, color) for d in diagnostics)


def render_json(diagnostics: list[Diagnostic], files: list[str]) -> str:
    errors = sum(d.is_error for d in diagnostics)
    payload = {
        "files": files,
        "errors": errors,
        "warnings": len(diagnostics) - errors,
        "diagnostics": [d.to_dict() for d in diagnostics],
    }
    return json.dumps(payload, indent=2)


def _github_escape(text: str, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(diagnostics: list[Diagnostic]) -> str:
    """GitHub Actions workflow commands: ``::error file=F,line=L,col=C,title=CODE::message``."""
    lines = []
    for d in diagnostics:
        level = "error" if d.is_error else "warning"
        props = []
        if d.span is not None:
            props += [f"file={_github_escape(printable(d.span.file, newlines=False), True)}", f"line={d.span.line}", f"col={d.span.column}"]
            if d.span.end_line is not None:
                props.append(f"endLine={d.span.end_line}")
            if d.span.end_column is not None and d.span.end_line in (None, d.span.line):
                props.append(f"endColumn={d.span.end_column}")
        props.append(f"title={_github_escape(d.code, True)}")
        message = printable(d.message + (f" (hint: {d.hint})" if d.hint else ""))
        lines.append(f"::{level} {','.join(props)}::{_github_escape(message)}")
    return "\n".join(lines)


_CHAR_NAMES = {
    "\t": "a tab", "\n": "a line feed", "\r": "a carriage return", "\x00": "a NUL character",
    "\x0b": "a vertical tab", "\x0c": "a form feed", "\x1b": "an escape character", "\x7f": "a DEL character",
    "\x85": "a next-line character", "\u2028": "a line separator", "\u2029": "a paragraph separator",
}


def invisible_char(text: str) -> tuple[int, str] | None:
    """(index, description) of the first character of ``text`` that is not printable (control
    characters, line breaks of any kind, invisible format characters), or None. A tab is
    allowed: it is white space on one line, as between the language's tokens."""
    if text.isprintable():
        return None
    import unicodedata

    for index, ch in enumerate(text):
        if not ch.isprintable() and ch != "\t":
            name = _CHAR_NAMES.get(ch) or unicodedata.name(ch, "").lower() or "a control character"
            return index, f"U+{ord(ch):04X} ({name})"
    return None  # pragma: no cover - isprintable() said otherwise


def char_span(span: Span | None, value: str, index: int) -> Span | None:
    """The span of ``value[index]`` inside ``span``, the span of ``value`` as written (bare or in
    quotes, on one line, without escapes); the whole span where the text was written otherwise."""
    if span is None or span.end_line not in (None, span.line) or span.end_column is None:
        return span
    width = span.end_column - span.column
    if width == len(value):
        column = span.column + index
    elif width == len(value) + 2:
        column = span.column + 1 + index
    else:
        return span
    return Span(span.file, span.line, column, span.line, column + 1)


def suggest(name: str, candidates) -> str:
    """A "did you mean" hint for an unknown name, or '' when nothing is close."""
    import difflib

    pool = sorted({c for c in candidates if c})
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"did you mean '{close[0]}'?" if close else ""
