"""Reading a model file: every way a file can be unreadable becomes a diagnostic, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eigraph.diagnostics import Diagnostic, Span, error

MODEL_SUFFIXES = (".ei", ".yaml", ".yml")
MAX_BYTES = 64 * 1024 * 1024


@dataclass
class SourceFile:
    path: str
    text: str

    @property
    def kind(self) -> str:
        return "yaml" if self.path.lower().endswith((".yaml", ".yml")) else "ei"


def read_source(path: str | Path) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Read a model file as UTF-8 text; on failure return ``None`` and a diagnostic saying why."""
    name = str(path)
    p = Path(path)
    at = Span(name, 1, 1)
    if not p.exists():
        hint = "check the path; eigraph validate also takes a folder and checks every .ei/.yaml file in it"
        return None, [error("F001", f"no such file: '{name}'", None, hint)]
    if p.is_dir():
        return None, [error("F002", f"'{name}' is a folder, not a model file", None, "pass a .ei or .yaml file")]
    if not name.lower().endswith(MODEL_SUFFIXES):
        hint = "model files end in .ei (the eigraph language) or .yaml/.yml (its YAML twin)"
        return None, [error("F006", f"'{name}' is not a model file: unknown extension '{p.suffix}'", None, hint)]
    try:
        data = p.read_bytes() if p.stat().st_size <= MAX_BYTES else None
    except OSError as exc:
        return None, [error("F007", f"cannot read '{name}': {exc.strerror or exc}", None, "check the file's permissions")]
    if data is None:
        return None, [error("F008", f"'{name}' is larger than {MAX_BYTES >> 20} MiB", at, "a model file is text")]
    return decode_source(name, data)


def decode_source(name: str, data: bytes) -> tuple[SourceFile | None, list[Diagnostic]]:
    if b"\x00" in data[:8192]:
        return None, [error("F003", f"'{name}' is a binary file, not model text", Span(name, 1, 1),
                            "model files are UTF-8 text; was a .npy or an archive passed by mistake?")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, [error("F004", f"'{name}' is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                            Span(name, line, column), "save the file as UTF-8")]
    if not text.strip():
        return None, [error("F005", f"'{name}' is empty", Span(name, 1, 1),
                            "a model declares at least one population; see docs/language.md")]
    return SourceFile(name, text), []


def find_model_files(path: str | Path) -> list[Path]:
    """The model files under a folder, sorted, skipping hidden folders."""
    root = Path(path)
    found = []
    for candidate in sorted(root.rglob("*")):
        relative = candidate.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        if candidate.is_file() and candidate.name.lower().endswith(MODEL_SUFFIXES):
            found.append(candidate)
    return found
