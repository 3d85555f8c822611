"""No input makes eigraph print a Python traceback.

The example models (``models/*.ei``, ``models/*.yaml``, the example of the language spec and its
YAML twin) are mutated by seeded, deterministic mutators: deleted, swapped and duplicated tokens
and lines, random bytes (invalid UTF-8, NUL, control characters), huge numbers, deep nesting,
long operator chains, deeply nested YAML, YAML aliases, extremely long lines, unicode names.
Every outcome must be a success or a list of clean diagnostics: a stable code, a message, and a
span inside the file; never an exception, never an internal-error diagnostic (S999, X001).
A mutant that still validates must also survive the conversion round trip unchanged.

Unreadable inputs (binary, non-UTF-8, empty, whitespace only, missing, a folder, a .txt file)
each get their own clear message.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from eigraph.cli import main
from eigraph.diagnostics import ERROR, WARNING, Diagnostic
from eigraph.frontend.dsl import parse_document
from eigraph.frontend.emit import to_ei, to_yaml
from eigraph.frontend.source import decode_source, read_source
from eigraph.frontend.yaml import parse_yaml
from eigraph.model.graph import signature
from eigraph.model.load import check_path, check_source

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
INTERNAL = {"S999", "X001"}
CODE = re.compile(r"^[A-Z]\d{3}$")
FOLDER = "/virtual/fuzz"  # mutants are checked as files of this (nonexistent) folder

from conftest import SPEC_EXAMPLE  # noqa: E402

# What the spec example does not use: areas, compartments, a rule with a trace, delays, bounds.
AREAS_EXAMPLE = """\
network layers { dt = 1 ms; seed = 7 }
celltype Pyr : excitatory { tau = 20 ms; compartments = [apical]; apical_gain = 0.5 }
population stim : input(4)
area H1 {
    population E : Pyr(30, noise = 0.1) { x0 = 0.5 }
    population SomaI : I(10)
    E -> SomaI : fixed_in(k = 5), delay = 2 ms, init = lognormal(-2, 0.5)
    SomaI -> E.apical : dense, learn = mine(eta = 2e-3), bounds = [0, 1], normalize = 2
}
population out : readout(2) { sign = excitatory }
stim -> H1.E : dense ; H1.E -> out : dense, learn = bcm(tau_theta = 500 ms), name = "read: out"
rule mine(eta = 1e-3, tau_m = 20 ms) on trial {
    m' = (pre * post - m) / tau_m : shared
    m(0) = 1
    dw = eta * (m - clip(post.apical, 0, 1)^2) * -w
}
run { task = spirals(arms = 3); inputs = [stim]; targets = out; record = [H1.E.r, out.x] }
"""


def _twin(name: str, text: str) -> tuple[str, str] | None:
    """The other form of a model (to_yaml of an .ei file, to_ei of a YAML one), when it parses."""
    kind = "yaml" if name.endswith((".yaml", ".yml")) else "ei"
    doc, problems = (parse_yaml if kind == "yaml" else parse_document)(text, f"{FOLDER}/{name}")
    if doc is None or any(d.is_error for d in problems):
        return None
    stem = name.rsplit(".", 1)[0]
    return (f"{stem}.twin.ei", to_ei(doc)) if kind == "yaml" else (f"{stem}.twin.yaml", to_yaml(doc))


def corpus() -> dict[str, str]:
    """name -> text for every seed model: the spec's example, models/, and the twins of all."""
    seeds = {"spec_decision.ei": SPEC_EXAMPLE, "areas.ei": AREAS_EXAMPLE}
    for path in sorted([*MODELS.glob("*.ei"), *MODELS.glob("*.yaml")]):
        seeds[f"models_{path.name}"] = path.read_text(encoding="utf-8")
    out = dict(seeds)
    for name, text in seeds.items():
        twin = _twin(name, text)
        if twin is not None:
            out[twin[0]] = twin[1]
    return out


CORPUS = corpus()


# invariants --------------------------------------------------------------------------------------
def line_count(data: bytes, text: str | None) -> int:
    """Lines of the file, however they are counted: ``\\n`` (the .ei lexer), or every line break
    ``str.splitlines`` knows (PyYAML also breaks lines at ``\\r``, NEL and U+2028)."""
    counts = [data.count(b"\n") + 1]
    if text is not None:
        counts += [len(text.splitlines()) + 1, text.count("\n") + 1]
    return max(counts)


def line_length(text: str, line: int, name: str) -> int:
    """The length of ``line`` (1-based) as the front end counts lines: ``\\n`` for .ei, every YAML line
    break for YAML. Past the last line: 0 (the end of the file). Tabs count as one column."""
    breaks = r"\r\n|\r|\n|\x85|\u2028|\u2029" if name.endswith((".yaml", ".yml")) else r"\n"
    lines = re.split(breaks, text)
    return len(lines[line - 1]) if 1 <= line <= len(lines) else 0


def problems_with(name: str, data: bytes) -> tuple[list[str], object]:
    """Check one input as the file ``name``. Returns (what is wrong, the model or None)."""
    wrong: list[str] = []
    try:
        source, found = decode_source(name, data)
        model = None
        if source is not None:
            model, found = check_source(source)
    except BaseException as exc:  # noqa: BLE001 - RecursionError, MemoryError: all are failures here
        if isinstance(exc, KeyboardInterrupt):
            raise
        return [f"exception {type(exc).__name__}: {str(exc)[:200]}"], None
    text = source.text if source is not None else None
    lines = line_count(data, text)
    if not isinstance(found, list):
        return [f"diagnostics are a {type(found).__name__}, not a list"], None
    for d in found:
        if not isinstance(d, Diagnostic):
            wrong.append(f"not a Diagnostic: {d!r}")
            continue
        label = f"{d.code} {d.message[:120]!r}"
        if not isinstance(d.code, str) or not CODE.match(d.code):
            wrong.append(f"bad code {label}")
        if d.code in INTERNAL:
            wrong.append(f"internal error {label}")
        if d.severity not in (ERROR, WARNING):
            wrong.append(f"bad severity {d.severity!r}: {label}")
        if not isinstance(d.message, str) or not d.message.strip():
            wrong.append(f"empty message: {label}")
        if d.span is None:
            wrong.append(f"no span: {label}")
            continue
        span = d.span
        if span.file != name:
            wrong.append(f"span in another file {span.file!r}: {label}")
        if not (isinstance(span.line, int) and isinstance(span.column, int)):
            wrong.append(f"span line/column not integers {span!r}: {label}")
        elif not (1 <= span.line <= lines + 1 and span.column >= 1):
            wrong.append(f"span {span.line}:{span.column} outside the file ({lines} lines): {label}")
        elif text is not None and span.column > line_length(text, span.line, name) + 1:
            wrong.append(f"span {span.line}:{span.column} past the end of line {span.line} "
                         f"({line_length(text, span.line, name)} characters): {label}")
    if source is None and not any(d.is_error for d in found):
        wrong.append("unreadable input without an error")
    if source is not None and model is None and not any(d.is_error for d in found):
        wrong.append("no model and no error")
    return wrong, model


def round_trip_problems(name: str, model) -> list[str]:
    """A mutant that validates cleanly converts to the other form and back with the same graph."""
    if model is None or any(d.is_error for d in model.diagnostics):
        return []
    kind = "yaml" if name.endswith((".yaml", ".yml")) else "ei"
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    other = "ei" if kind == "yaml" else "yaml"
    try:
        expected = signature(model.graph)
        there = (to_ei if other == "ei" else to_yaml)(model.document)
        converted, found = check_source(decode_source(f"{FOLDER}/{stem}.{other}", there.encode("utf-8"))[0])
        if converted is None or any(d.is_error for d in found):
            errors = [f"{d.code} {d.span}: {d.message}" for d in found if d.is_error]
            return [f"the {other} form of a valid model has errors: {errors[:3]}"]
        if signature(converted.graph) != expected:
            return [f"{kind} -> {other} changed the graph"]
        back = (to_ei if kind == "ei" else to_yaml)(converted.document)
        returned, found = check_source(decode_source(f"{FOLDER}/{stem}.{kind}", back.encode("utf-8"))[0])
        if returned is None or any(d.is_error for d in found) or signature(returned.graph) != expected:
            return [f"{kind} -> {other} -> {kind} changed the graph or has errors"]
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        return [f"exception while converting: {type(exc).__name__}: {str(exc)[:200]}"]
    return []


def show(data: bytes, limit: int = 300) -> str:
    text = repr(data)
    return text if len(text) <= limit else f"{text[:limit // 2]} ... {text[-limit // 2:]} ({len(data)} bytes)"


# mutators ----------------------------------------------------------------------------------------
TOKEN = re.compile(r'\s+|[^\W\d]\w*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|"[^"\n]*"|->|.', re.S)
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
NAME = re.compile(r"\b[A-Za-z_]\w*\b")
PUNCTUATION = ["{", "}", "(", ")", "[", "]", ":", ";", ",", "=", "->", "'", '"', ".", "#", "^", "-", "*", "/", "+",
               "\n", ": shared", "network", "celltype", "population", "area", "rule", "run", "on", "- ", "  ", "|",
               "&a", "*a", "!!str", "---", "...", "? ", "%YAML 1.2"]


def _tokens(text: str) -> tuple[list[str], list[int]]:
    pieces = TOKEN.findall(text)
    solid = [i for i, p in enumerate(pieces) if not p.isspace()]
    return pieces, solid


def mutate_tokens(rng: random.Random, text: str, kind: str) -> str:
    pieces, solid = _tokens(text)
    for _ in range(rng.randint(1, 4)):
        if not solid:
            break
        i = rng.choice(solid)
        op = rng.choice(["delete", "swap", "duplicate", "replace"])
        if op == "delete":
            pieces[i] = ""
        elif op == "swap":
            j = rng.choice(solid)
            pieces[i], pieces[j] = pieces[j], pieces[i]
        elif op == "duplicate":
            pieces[i] = pieces[i] + rng.choice(["", " "]) + pieces[i]
        else:
            pieces[i] = rng.choice(PUNCTUATION + [pieces[rng.choice(solid)]])
    return "".join(pieces)


def mutate_lines(rng: random.Random, text: str, kind: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        op = rng.choice(["delete", "swap", "duplicate", "indent", "dedent", "truncate"])
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = " " * rng.choice([1, 2, 3, 4, 8]) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip()
        else:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    return "\n".join(lines)


def mutate_truncate_splice(rng: random.Random, text: str, kind: str) -> str:
    op = rng.choice(["truncate", "splice", "repeat", "shuffle", "reverse"])
    if op == "truncate":
        return text[: rng.randrange(len(text) + 1)]
    if op == "splice":
        other = CORPUS[rng.choice(sorted(CORPUS))]
        return text[: rng.randrange(len(text) + 1)] + other[rng.randrange(len(other) + 1):]
    if op == "repeat":
        return text * rng.randint(2, 3)
    lines = text.split("\n")
    if op == "shuffle":
        rng.shuffle(lines)
    else:
        lines.reverse()
    return "\n".join(lines)


RAW_BYTES = [b"\x00", b"\xff", b"\xfe\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
             b"\xef\xbb\xbf", b"\r", b"\r\n", b"\x0b", b"\x0c", b"\x1b[31m", b"\x7f", b"\x85", b"\t",
             "\u2028".encode(), "\u2029".encode(), "\u0085".encode(), "\ufeff".encode(), "\u00a0".encode(),
             b"\x1c\x1d\x1e", b"\x01\x02\x03", "\U0001f600".encode()]


def mutate_bytes(rng: random.Random, text: str, kind: str) -> bytes:
    data = bytearray(text.encode("utf-8"))
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        if rng.random() < 0.5:
            chunk = rng.choice(RAW_BYTES)
        else:
            chunk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.3 and at < len(data):
            data[at: at + len(chunk)] = chunk  # overwrite
        else:
            data[at:at] = chunk
    return bytes(data)


HUGE = ["1e400", "9" * 400, "-0", "1e-400", "0" * 400 + "1", "1" + "0" * 5000, "1e309", "1e999999999999",
        "4294967296", "1e308 * 10", "-1e308 - 1e308", "2^1024", "10^400", "1/0", "0/0", "1e-320", "1e308",
        "123456789012345678901234567890", "0.000000000000000000000000000001", "1e15", "1e16", "nan", "inf",
        "-1e400", "1e400 ms", "1e-400 ms", "1e400 steps", "9" * 400 + " ms", "exp(1000)", "log(0)", "sqrt(-1)",
        "(1 ms)^1e300", "(1 ms)^0.5", "1e306", "1e305", "1e-306", "5e307", "2^-2000", "0^-1", "(-8)^(1/3)",
        "1 Hz * 1 s", "1e308 * 1e308 * 0"]


def mutate_numbers(rng: random.Random, text: str, kind: str) -> str:
    spots = list(NUMBER.finditer(text))
    if not spots:
        return text + rng.choice(HUGE)
    out = text
    for match in sorted(rng.sample(spots, min(len(spots), rng.randint(1, 3))), key=lambda m: -m.start()):
        out = out[: match.start()] + rng.choice(HUGE) + out[match.end():]
    return out


def _deep(rng: random.Random, kind: str) -> str:
    n = rng.choice([65, 201, 999, 1500, 10_000])
    shape = rng.choice(["parens", "brackets", "braces", "chain", "neg", "pow", "calls", "open", "close", "mixed",
                        "list_chain", "mul_chain", "sub_chain", "div_chain"])
    if shape == "parens":
        return "(" * n + "1" + ")" * n
    if shape == "brackets":
        return "[" * n + "1" + "]" * n
    if shape == "braces":
        return "{" * n + "}" * n
    if shape == "chain":
        return "+".join(["1"] * n)
    if shape == "mul_chain":
        return " * ".join(["1"] * n)
    if shape == "sub_chain":
        return "-".join(["1"] * n)
    if shape == "div_chain":
        return "/".join(["1"] * n)
    if shape == "neg":
        return "-" * n + "1"
    if shape == "pow":
        return "^".join(["1"] * n)
    if shape == "calls":
        return "sqrt(" * n + "1" + ")" * n
    if shape == "open":
        return "(" * n
    if shape == "close":
        return ")" * n
    if shape == "list_chain":
        return "[" + ", ".join(["1"] * n) + "]"
    return "".join(rng.choice("([{-+") for _ in range(n)) + "1"


def mutate_nesting(rng: random.Random, text: str, kind: str) -> str:
    """Deep brackets and long operator chains put where a value goes (10,000 deep at most)."""
    deep = _deep(rng, kind)
    spots = list(NUMBER.finditer(text))
    if kind == "yaml" and rng.random() < 0.5:
        deep = '"' + deep + '"'  # quoted: the language text inside a YAML string
    if spots and rng.random() < 0.8:
        m = rng.choice(spots)
        return text[: m.start()] + deep + text[m.end():]
    if kind == "ei":
        # inside a rule body, where expressions are not evaluated but printed and checked
        return text + f"\nrule deep(eta = 1) {{\n    dw = {deep}\n}}\n"
    return text + f"\nextra: {deep}\n"


def _yaml_deep(rng: random.Random) -> str:
    n = rng.choice([100, 1000, 5000, 10_000])
    shape = rng.choice(["flow_seq", "flow_map", "block_map", "block_seq", "laughs", "self_alias", "undefined_alias",
                        "merge", "tags", "documents", "anchors_everywhere", "big_alias_list"])
    if shape == "flow_seq":
        return "x: " + "[" * n + "]" * n
    if shape == "flow_map":
        return "x: " + "{a: " * n + "1" + "}" * n
    if shape == "block_map":
        n = min(n, 2000)
        return "\n".join(" " * i + f"k{i}:" for i in range(n)) + " 1"
    if shape == "block_seq":
        n = min(n, 2000)
        return "x:\n" + "\n".join(" " * (2 * i + 2) + "-" for i in range(n)) + " 1"
    if shape == "laughs":  # the billion laughs, in YAML aliases
        lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        for i in range(1, 10):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
        return "\n".join(lines) + "\npopulations:\n  E:\n    celltype: E\n    size: *a9\n"
    if shape == "self_alias":
        return "x: &a [*a]"
    if shape == "undefined_alias":
        return "populations:\n  E: *nothing"
    if shape == "merge":
        return "base: &b {celltype: E, size: 3}\npopulations:\n  E:\n    <<: *b\n    size: 4"
    if shape == "tags":
        return rng.choice(["x: !!python/object/apply:os.system ['true']", "x: !!binary aGVsbG8=",
                           "populations: !!set {E: null}", "x: !custom 1", "populations:\n  E: !!str 5"])
    if shape == "documents":
        return "---\npopulations: {}\n---\npopulations: {}\n..."
    if shape == "anchors_everywhere":
        return "populations: &p\n  E: &e {celltype: &c E, size: &s 3}\n  F: *e\nrun: *p"
    return "a: &a [1, 2, 3]\nb: [" + ", ".join(["*a"] * n) + "]"


def mutate_yaml(rng: random.Random, text: str, kind: str) -> str:
    """Deeply nested YAML, aliases, anchors, tags, several documents: anywhere in the file."""
    block = _yaml_deep(rng)
    lines = text.split("\n")
    op = rng.random()
    if op < 0.4:
        return text.rstrip("\n") + "\n" + block + "\n"
    if op < 0.7:
        at = rng.randrange(len(lines) + 1)
        return "\n".join(lines[:at] + block.split("\n") + lines[at:])
    # replace the value of one key: "key: value" -> "key: <nested>"
    keyed = [i for i, line in enumerate(lines) if re.match(r"\s*[\w.-]+:\s*\S", line)]
    if not keyed:
        return block
    i = rng.choice(keyed)
    key = lines[i].split(":", 1)[0]
    value = block.split(": ", 1)[1] if block.startswith("x: ") else "*nothing"
    lines[i] = f"{key}: {value}"
    return "\n".join(lines)


def mutate_long(rng: random.Random, text: str, kind: str) -> str:
    """Extremely long lines, names, strings and comments; very many lines."""
    n = rng.choice([10_000, 100_000, 1_000_000])
    op = rng.choice(["name", "comment", "string", "spaces", "number", "many_lines", "one_line", "value"])
    if op == "name":
        names = list(NAME.finditer(text))
        m = rng.choice(names)
        return text[: m.start()] + "x" * n + text[m.end():]
    if op == "comment":
        return "#" + "c" * n + "\n" + text
    if op == "string":
        return text.replace('"', '"' + "s" * n, 1) if '"' in text else text + f'\nname = "{"s" * n}"\n'
    if op == "spaces":
        return " " * n + text
    if op == "number":
        return mutate_numbers(rng, text, kind).replace("1", "1" * min(n, 100_000), 1)
    if op == "many_lines":
        return "\n" * min(n, 200_000) + text
    if op == "one_line":
        return text.replace("\n", " " if kind == "yaml" else ";")
    spots = list(NUMBER.finditer(text))
    m = rng.choice(spots) if spots else None
    return text[: m.start()] + "1" * min(n, 100_000) + text[m.end():] if m else text


UNICODE_NAMES = ["Ëlan", "π", "变量", "E\u200b", "\u202eE", "\U0001f600", "e\u0301", "Ｅ", "ﬁ", "İ", "ß",
                 "Ωmega",
                 "\u0000", "E\u00a0", "\u2028E", "٣", "𝔼", "Å", "ǅ", "_\u0308", "a\ufe0f", "\ud7ff", "\U000e0041"]


def mutate_unicode(rng: random.Random, text: str, kind: str) -> str:
    names = list(NAME.finditer(text))
    out = text
    for m in sorted(rng.sample(names, min(len(names), rng.randint(1, 3))), key=lambda m: -m.start()):
        replacement = rng.choice(UNICODE_NAMES)
        if rng.random() < 0.5:
            replacement = m.group() + replacement
        out = out[: m.start()] + replacement + out[m.end():]
    if rng.random() < 0.3:
        at = rng.randrange(len(out) + 1)
        out = out[:at] + chr(rng.choice([rng.randrange(0x80, 0xD800), rng.randrange(0xE000, 0x110000)])) + out[at:]
    return out


def mutate_line_endings(rng: random.Random, text: str, kind: str) -> str:
    ending = rng.choice(["\r\n", "\r", "\n\r", "\u2028", "\x0c\n", "\n\t", "\t\n", "\x85"])
    if rng.random() < 0.5:
        return text.replace("\n", ending)
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    lines[i] = lines[i] + ending
    return "\n".join(lines)


YAML_VALUES = ["[]", "{}", "null", "~", "", "[1, 2]", "{a: 1}", "{a: 1, b: 2}", "true", "!!int 3", "!!float .nan",
               "|\n      text", ">\n      halfnormal(0.1)", "|-\n      1 ms", "'q'", '""', '"\\t\\u00e9"',
               "- 1\n    - 2",
               "{halfnormal: {sigma: [1]}}", "{halfnormal: [1, 2, 3]}", "{uniform: null}", "{dense: {}}",
               "{sparse: {p: {q: 1}}}", "{mask: [1]}", "{decision: {coherences: [[0.1]]}}", "[[[]]]", "&a 1", "*a",
               ".inf", "-.inf", "0x1F", "0o17", "1_000", "2001-12-14", "yes", "off", "1 ms ms", "12:30:00",
               '"halfnormal(1 /\n      sqrt(fan_in) + foo)"', "'uniform(0,\n      bar)'", '"\\t1 + foo"',
               "halfnormal(1 /\n      sqrt(fan_in) + foo)", ">\n      1 +\n      foo"]
DSL_VALUES = ["[]", "[1, [2]]", '"s"', "f()", "f(a = 1, 2)", "x.y.z", "1 ms ms", "1 Hz", "1 ms * 1 ms", "(1 ms)^0.5",
              "halfnormal()", "halfnormal(1, 2, 3)", "halfnormal(sigma = 1, sigma = 2)", "uniform(b = 1)",
              "sparse(q = 1)", "mask(1)", 'mask("")', 'mask("/")', 'weights("nope.npy")', 'mask("../../etc/passwd")',
              "sqrt(-1)", "log(0)", "exp(1e3)", "fan_in", "pi", "e", "-e", "dense(1)", "one_to_one(p = 1)", "relu",
              "on", "true", "1 / 0", "0 ^ -1", "2 ^ 0.5 ^ 2", "-(-(-1))", "decision(coherences = [1 ms])"]


def mutate_values(rng: random.Random, text: str, kind: str) -> str:
    """Values of the wrong shape or type: YAML lists, mappings, nulls, tags; odd calls and units."""
    lines = text.split("\n")
    if kind == "yaml":
        keyed = [i for i, line in enumerate(lines) if re.match(r"\s*-?\s*[\w.-]+:\s*\S", line)]
        for i in rng.sample(keyed, min(len(keyed), rng.randint(1, 2))):
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(YAML_VALUES)}"
        return "\n".join(lines)
    keyed = [i for i, line in enumerate(lines) if re.search(r"=\s*[^=]", line) and not line.lstrip().startswith("#")]
    for i in rng.sample(keyed, min(len(keyed), rng.randint(1, 2))):
        lines[i] = re.sub(r"=\s*[^,;}\n]+", lambda m: "= " + rng.choice(DSL_VALUES), lines[i], count=1)
    return "\n".join(lines)


def mutate_cross_form(rng: random.Random, text: str, kind: str) -> str:
    """A mutated model read as the other form (.ei text as YAML and the reverse): see run_mutator."""
    return mutate_tokens(rng, text, kind) if rng.random() < 0.5 else text


MUTATORS: dict[str, tuple[Callable, int]] = {  # name -> (mutator, mutations per seed model)
    "tokens": (mutate_tokens, 24),
    "lines": (mutate_lines, 24),
    "truncate_splice": (mutate_truncate_splice, 12),
    "bytes": (mutate_bytes, 20),
    "numbers": (mutate_numbers, 20),
    "nesting": (mutate_nesting, 8),
    "yaml": (mutate_yaml, 6),
    "long": (mutate_long, 3),
    "unicode": (mutate_unicode, 12),
    "line_endings": (mutate_line_endings, 6),
    "cross_form": (mutate_cross_form, 6),
    "values": (mutate_values, 20),
}
TOTAL_BUDGET = 3000  # mutations in all, across the mutators and the seed models


def per_model(mutator: str) -> int:
    weight = MUTATORS[mutator][1]
    total_weight = sum(w for _, w in MUTATORS.values())
    return max(1, round(TOTAL_BUDGET * weight / total_weight / max(len(CORPUS), 1)))


def mutants(mutator: str):
    """(file name to check as, bytes, description) for every mutation of every seed model."""
    function, _ = MUTATORS[mutator]
    for name, text in sorted(CORPUS.items()):
        kind = "yaml" if name.endswith((".yaml", ".yml")) else "ei"
        for i in range(per_model(mutator)):
            rng = random.Random(f"{mutator}/{name}/{i}")
            data = function(rng, text, kind)
            data = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
            as_kind = kind
            if mutator == "cross_form":
                as_kind = "ei" if kind == "yaml" else "yaml"
            stem = name.rsplit(".", 1)[0].replace(".", "_")
            yield f"{FOLDER}/{stem}.{as_kind}", data, f"{mutator}/{name}/{i}"


def run_mutator(mutator: str) -> list[str]:
    failures = []
    for path, data, label in mutants(mutator):
        wrong, model = problems_with(path, data)
        if not wrong:
            wrong = round_trip_problems(path, model)
        if wrong:
            failures.append(f"{label} as {path.rsplit('/', 1)[-1]}: {'; '.join(wrong[:3])}\n    input: {show(data)}")
    return failures


# the fuzz tests ----------------------------------------------------------------------------------
def test_corpus_has_the_example_models():
    assert "spec_decision.ei" in CORPUS and "spec_decision.twin.yaml" in CORPUS
    for path in [*MODELS.glob("*.ei"), *MODELS.glob("*.yaml")]:
        assert f"models_{path.name}" in CORPUS


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_seed_models_are_clean(name: str):
    """Every unmutated seed model checks without exceptions (and converts when it is valid)."""
    kind = "yaml" if name.endswith((".yaml", ".yml")) else "ei"
    path = f"{FOLDER}/{name.rsplit('.', 1)[0].replace('.', '_')}.{kind}"
    wrong, model = problems_with(path, CORPUS[name].encode("utf-8"))
    assert not wrong
    assert not round_trip_problems(path, model)


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
def test_mutants_give_clean_diagnostics(mutator: str):
    failures = run_mutator(mutator)
    count = sum(1 for _ in mutants(mutator))
    assert not failures, f"{len(failures)} of {count} '{mutator}' mutants failed:\n" + "\n".join(failures[:15])


def test_mutation_budget():
    """A few thousand mutations in all."""
    total = sum(per_model(m) for m in MUTATORS) * len(CORPUS)
    assert 1500 <= total <= 6000, total


@pytest.mark.parametrize("mutator", sorted(MUTATORS))
def test_cli_never_prints_a_traceback(mutator: str, tmp_path: Path, capsys, monkeypatch):
    """A few mutants of each kind go through the command line: exit 0 or 1, no traceback."""
    monkeypatch.delenv("EIGRAPH_DEBUG", raising=False)
    failures = []
    chosen = [m for i, m in enumerate(mutants(mutator)) if i % 37 == 0][:8]
    for i, (path, data, label) in enumerate(chosen):
        file = tmp_path / f"m{i}_{Path(path).name}"
        file.write_bytes(data)
        for argv in (["validate", str(file)], ["validate", "--format", "json", str(file)],
                     ["convert", str(file)]):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse only; never for an existing file
                code = exc.code
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, KeyboardInterrupt):
                    raise
                code = f"exception {type(exc).__name__}: {str(exc)[:200]}"
            out, err = capsys.readouterr()
            said = out + err
            bad = []
            if code not in (0, 1):
                bad.append(f"exit code {code!r}")
            if "Traceback" in said:
                bad.append("printed a traceback")
            if "internal error" in said or "X001" in said or "S999" in said:
                bad.append("internal error: " + next(line for line in said.splitlines()
                                                     if "internal" in line or "X001" in line or "S999" in line))
            if bad:
                failures.append(f"{label}: eigraph {' '.join(argv[:-1])}: {'; '.join(bad)}\n    input: {show(data)}")
    assert not failures, "\n".join(failures)


# unreadable inputs -------------------------------------------------------------------------------
def only_error(found: list[Diagnostic], code: str) -> Diagnostic:
    assert len(found) == 1, found
    d = found[0]
    assert d.code == code and d.is_error and d.message.strip() and d.hint.strip(), d
    return d


def validate(capsys, *paths) -> tuple[int, str]:
    code = main(["validate", *map(str, paths)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def test_binary_file(tmp_path: Path, capsys):
    path = tmp_path / "weights.ei"
    path.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}" + bytes(range(256)))
    source, found = read_source(path)
    assert source is None
    d = only_error(found, "F003")
    assert "binary" in d.message and str(path) in d.message
    assert d.span is not None and (d.span.line, d.span.column) == (1, 1)
    code, said = validate(capsys, path)
    assert code == 1 and "F003" in said and "binary" in said


def test_binary_yaml_file(tmp_path: Path, capsys):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 64)
    code, said = validate(capsys, path)
    assert code == 1 and "F003" in said


def test_non_utf8_file(tmp_path: Path, capsys):
    path = tmp_path / "latin1.ei"
    path.write_bytes("# café\npopulation E : E(3) # naïve\n".encode("latin-1"))
    source, found = read_source(path)
    assert source is None
    d = only_error(found, "F004")
    assert "UTF-8" in d.message and "0xe9" in d.message
    assert (d.span.line, d.span.column) == (1, 6)  # the byte at fault
    code, said = validate(capsys, path)
    assert code == 1 and "F004" in said and "UTF-8" in said


def test_non_utf8_yaml_on_a_later_line(tmp_path: Path):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"populations:\n  E:\n    celltype: E\n    size: 3 \xff\n")
    d = only_error(read_source(path)[1], "F004")
    assert (d.span.line, d.span.column) == (4, 13)


def test_utf16_file(tmp_path: Path, capsys):
    path = tmp_path / "utf16.ei"
    path.write_bytes("population E : E(3)\n".encode("utf-16"))
    source, found = read_source(path)
    assert source is None and len(found) == 1 and found[0].code in ("F003", "F004")
    code, said = validate(capsys, path)
    assert code == 1 and "Traceback" not in said


def test_utf8_bom_is_accepted(tmp_path: Path):
    path = tmp_path / "bom.ei"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC_EXAMPLE.encode("utf-8"))
    model, found, _ = check_path(path)
    assert model is not None and not [d for d in found if d.is_error]


@pytest.mark.parametrize("suffix", [".ei", ".yaml"])
def test_empty_file(tmp_path: Path, capsys, suffix: str):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    source, found = read_source(path)
    assert source is None
    d = only_error(found, "F005")
    assert "empty" in d.message
    code, said = validate(capsys, path)
    assert code == 1 and "F005" in said and "empty" in said


@pytest.mark.parametrize("content", [b" ", b"\n\n\n", b" \t \n  \r\n", b"\xef\xbb\xbf\n"])
def test_whitespace_only_file(tmp_path: Path, capsys, content: bytes):
    path = tmp_path / "blank.ei"
    path.write_bytes(content)
    d = only_error(read_source(path)[1], "F005")
    assert "empty" in d.message
    code, said = validate(capsys, path)
    assert code == 1 and "F005" in said


@pytest.mark.parametrize("content", ["# only a comment\n", "network n { dt = 1 ms }\n"])
def test_model_without_populations(tmp_path: Path, capsys, content: str):
    path = tmp_path / "nothing.ei"
    path.write_text(content, encoding="utf-8")
    model, found, _ = check_path(path)
    assert any(d.is_error for d in found)
    assert all(d.span is not None and d.span.line >= 1 for d in found)
    code, said = validate(capsys, path)
    assert code == 1


@pytest.mark.parametrize("content", ["# only a comment\n", "---\n", "~\n", "null\n", "[]\n", "42\n", '"text"\n'])
def test_yaml_without_a_mapping(tmp_path: Path, capsys, content: str):
    path = tmp_path / "nothing.yaml"
    path.write_text(content, encoding="utf-8")
    model, found, _ = check_path(path)
    assert found and any(d.is_error for d in found)
    for d in found:
        assert d.code not in INTERNAL and d.span is not None and d.span.line >= 1
    code, said = validate(capsys, path)
    assert code == 1


def test_missing_file(tmp_path: Path, capsys):
    path = tmp_path / "nowhere.ei"
    source, found = read_source(path)
    assert source is None
    d = only_error(found, "F001")
    assert "no such file" in d.message and str(path) in d.message
    model, found, sources = check_path(path)
    assert model is None and found[0].code == "F001" and sources == {}
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2  # a path that does not exist is a usage error of the command line
    assert "no such file" in err and "Traceback" not in out + err


def test_directory_passed_as_a_file(tmp_path: Path, capsys):
    folder = tmp_path / "model.ei"
    folder.mkdir()
    source, found = read_source(folder)
    assert source is None
    d = only_error(found, "F002")
    assert "folder" in d.message
    # the command line takes folders, and says so when one holds no models
    code = main(["validate", str(folder)])
    out, err = capsys.readouterr()
    assert code == 2 and "no model files" in err and "Traceback" not in out + err
    code = main(["convert", str(folder)])
    out, err = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in out + err and "internal error" not in out + err


def test_txt_file(tmp_path: Path, capsys):
    path = tmp_path / "model.txt"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    source, found = read_source(path)
    assert source is None
    d = only_error(found, "F006")
    assert ".txt" in d.message
    code, said = validate(capsys, path)
    assert code == 1 and "F006" in said


def test_file_without_extension(tmp_path: Path, capsys):
    path = tmp_path / "Makefile"
    path.write_text("all:\n\ttrue\n", encoding="utf-8")
    code, said = validate(capsys, path)
    assert code == 1 and "F006" in said


def test_unreadable_file(tmp_path: Path, capsys):
    import os

    path = tmp_path / "secret.ei"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file (root)")
        d = only_error(read_source(path)[1], "F007")
        assert "cannot read" in d.message
        code, said = validate(capsys, path)
        assert code == 1 and "F007" in said
    finally:
        path.chmod(0o644)


def test_folder_with_mixed_files(tmp_path: Path, capsys):
    """A folder: only .ei/.yaml files are checked, and a broken one is reported with the others."""
    (tmp_path / "good.ei").write_text(SPEC_EXAMPLE, encoding="utf-8")
    (tmp_path / "bad.yaml").write_bytes(b"\x00\x01binary")
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    code, said = validate(capsys, tmp_path)
    assert code == 1 and "F003" in said and "2 file(s)" in said


# regressions: minimal inputs for what the fuzzer found ------------------------------------------
def assert_clean(name: str, text: str | bytes) -> object:
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    wrong, model = problems_with(name, data)
    assert not wrong, wrong
    return model


def assert_cli_clean(tmp_path: Path, capsys, filename: str, text: str, *commands: str) -> None:
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8")
    for command in commands or ("validate",):
        code = main([command, str(path)])
        out, err = capsys.readouterr()
        assert code in (0, 1), (command, code, out, err)
        assert "Traceback" not in out + err and "internal error" not in out + err, (command, out + err)


CHAIN = "+".join(["1"] * 10_000)  # 1+1+...+1, 10,000 terms
LONG_VALUES = {
    "plus_chain": CHAIN,
    "minus_chain": "-".join(["1"] * 10_000),
    "times_chain": " * ".join(["1"] * 10_000),
    "unary_minus": "-" * 10_000 + "1",
    "power_chain": "^".join(["1"] * 10_000),
}


@pytest.mark.parametrize("shape", sorted(LONG_VALUES))
def test_long_operator_chain_in_a_value(shape: str):
    """A value 10,000 operators long gets S008, not a RecursionError from evaluating it."""
    text = f"network n {{ dt = 1 ms }}\npopulation P : E(2, noise = {LONG_VALUES[shape]})\n"
    assert_clean(f"{FOLDER}/chain.ei", text)
    _, found = check_source(decode_source(f"{FOLDER}/chain.ei", text.encode())[0])
    assert any(d.code == "S008" for d in found)


@pytest.mark.parametrize("shape", sorted(LONG_VALUES))
def test_long_operator_chain_in_a_yaml_value(shape: str):
    text = ("network: {name: n, dt: 1 ms}\npopulations:\n  P:\n    celltype: E\n    size: 2\n"
            f"    noise: {LONG_VALUES[shape]}\n")
    assert_clean(f"{FOLDER}/chain.yaml", text)


@pytest.mark.parametrize("shape", sorted(LONG_VALUES))
def test_long_operator_chain_in_a_rule(shape: str):
    """The same in a rule body, where equations are checked for units and printed back."""
    text = f"network n {{ dt = 1 ms }}\npopulation P : E(2)\nrule r(eta = 1) {{\n    dw = {LONG_VALUES[shape]}\n}}\n"
    assert_clean(f"{FOLDER}/chain.ei", text)


def test_long_operator_chain_on_the_command_line(tmp_path: Path, capsys):
    assert_cli_clean(tmp_path, capsys, "chain.ei",
                     f"network n {{ dt = 1 ms }}\npopulation P : E(2, noise = {CHAIN})\n", "validate", "convert")




@pytest.mark.parametrize("value", ["1e306 s",
                                   "1e308 s", "1e300 * 1e5 s", "1e307 ms"])
def test_huge_dt(value: str):
    """dt = 1e306 s is a (silly) valid number: the Euler check must not overflow formatting it in ms."""
    assert_clean(f"{FOLDER}/dt.ei", f"network n {{ dt = {value} }}\npopulation P : E(1)\n")


@pytest.mark.parametrize("value", ["1e306 s", "1e308 s"])
def test_huge_tau(value: str):
    assert_clean(f"{FOLDER}/tau.ei", f"network n {{ dt = 1 ms }}\npopulation P : E(1) {{ tau = {value} }}\n")


def test_huge_dt_on_the_command_line(tmp_path: Path, capsys):
    assert_cli_clean(tmp_path, capsys, "dt.ei", "network n { dt = 1e306 s }\npopulation P : E(1)\n")


@pytest.mark.parametrize("text", [
    "population P : E(2)\n",  # no network block: dt is missing, the tau comes from the prelude
    "network n { dt = 20 ms }\npopulation P : E(2)\n",  # dt > the prelude's tau
])
def test_diagnostics_about_builtin_celltypes_point_into_the_model(text: str):
    """A finding about a default taken from a built-in cell type points at the model, not <prelude>."""
    model = assert_clean(f"{FOLDER}/prelude.ei", text)
    assert model is not None and any(d.is_error for d in model.diagnostics)


MULTILINE_YAML = {
    "plain": "    init: halfnormal(1 /\n      sqrt(fan_in) + foo)\n",
    "double_quoted": '    init: "halfnormal(1 /\n      sqrt(fan_in) + foo)"\n',
    "single_quoted": "    init: 'halfnormal(1 /\n      sqrt(fan_in) + foo)'\n",
    "literal": "    init: |-\n      halfnormal(1 /\n      sqrt(fan_in) + foo)\n",
    "folded": "    init: >-\n      halfnormal(1 /\n      sqrt(fan_in) + foo)\n",
}




@pytest.mark.parametrize("style", [s
                                   for s in sorted(MULTILINE_YAML)])
def test_yaml_multiline_scalar_spans(style: str):
    """An error inside a YAML value written over two lines points at the text at fault (line 9,
    where 'foo' is), not past the end of line 8."""
    text = ("network: {name: n, dt: 1 ms}\npopulations:\n  E: {celltype: E, size: 2}\n  I: {celltype: I, size: 2}\n"
            "projections:\n  - source: E\n    target: I\n" + MULTILINE_YAML[style])
    name = f"{FOLDER}/multiline.yaml"
    _, found = check_source(decode_source(name, text.encode())[0])
    assert [d.code for d in found] == ["N105"]
    span = found[0].span
    lines = text.split("\n")
    assert span.column <= len(lines[span.line - 1]) + 1, (span, lines[span.line - 1])
    at = next(i for i, line in enumerate(lines) if "foo" in line)
    assert (span.line, span.column) == (at + 1, lines[at].index("foo") + 1)


def test_yaml_escape_shifts_span():
    """A backslash escape in a double-quoted YAML value: the span still lands on the name at fault."""
    text = ("network: {name: n, dt: 1 ms}\npopulations:\n  E: {celltype: E, size: 2}\n  I: {celltype: I, size: 2}\n"
            'projections:\n  - source: E\n    target: I\n    init: "halfnormal(\\t1 + foo)"\n')
    _, found = check_source(decode_source(f"{FOLDER}/escape.yaml", text.encode())[0])
    assert [d.code for d in found] == ["N105"]
    assert (found[0].span.line, found[0].span.column) == (8, text.split("\n")[7].index("foo") + 1)




@pytest.mark.parametrize("style", [">", "|", ">-", "|-"])
def test_yaml_block_scalar_value(style: str):
    """A value written as a YAML block scalar is the language's text, like any other string."""
    text = ("network: {name: n, dt: 1 ms}\npopulations:\n  E: {celltype: E, size: 2}\n  I: {celltype: I, size: 2}\n"
            f"projections:\n  - source: E\n    target: I\n    init: {style}\n      halfnormal(0.1)\n")
    assert_clean(f"{FOLDER}/block.yaml", text)
    _, found = check_source(decode_source(f"{FOLDER}/block.yaml", text.encode())[0])
    assert not [d for d in found if d.is_error], [f"{d.code} {d.span}: {d.message}" for d in found]


# the command line: mutated arguments, hostile model and file names -------------------------------------
# In process (main(argv)), not 7,000 processes. `run` never trains here: Trainer.train is replaced by
# one that raises _Trained, so a run whose arguments all pass stops where training would begin.
TINY = """\
network tiny { dt = 10 ms; seed = 1 }
population stim : input(3)
population E : E(6)
population out : readout(2)
stim -> E : dense, init = uniform(0, 0.1)
E -> out : dense, init = constant(0), learn = delta(eta = 1e-2)
run { task = decision; inputs = stim; targets = out; trials = 4; batch = 2 }
"""
TINY_YAML = """\
network:
  name: tiny
  dt: 10 ms
populations:
  {stim}:
    celltype: input
    size: 3
  {E}:
    celltype: E
    size: 6
  {out}:
    celltype: readout
    size: 2
projections:
  - source: {stim}
    target: {E}
    connectivity: dense
    name: {p1}
  - source: {E}
    target: {out}
    connectivity: {conn}
    learn: delta(eta = 1e-2)
run:
  task: decision
  inputs: {stim}
  targets: {out}
"""
CLI_ARGV_BUDGET = 5600  # argument mutations
CLI_NAMES_BUDGET = 1500  # models and files with hostile names


class _Trained(BaseException):  # not an Exception: main() must not turn it into an internal error
    pass


HOSTILE_TEXT = ['"', '"""', "'", "'''", "\\", "\\n", "\n", "\r", "\t", "\x01", "\x1b[31m", "\x7f", "\u202e",
                "\u200b", "\ufeff", "é", "名前", "🧠", "\U0010ffff", "$(echo x)", "`x`", "{x}", "%s", "${HOME}",
                "..", ".", "/", "//", "a/b", "../", "~", "-", "--", "-o", "--force", " ", "", "NUL", "con",
                "x" * 300, "é" * 200, "a" * 5000, "#", ";", ":", ",", "=", "[", "]", "{", "}", "->", "*", "?"]
HOSTILE_NUMBERS = ["0", "-1", "-0", "1", "2", "3", "1e3", "1.5", "nan", "inf", "-inf", "1e308", "0x10", "٣",
                   "99999999999999999999999", "-99999999999999999999", " 1", "1_000", "", "x", "1e-300", "+2"]
HOSTILE_OPTIONS = ["--trials", "--batch", "--steps", "--seed", "--eval-every", "--checkpoint-every", "--backend",
                   "--task", "-o", "--output", "--force", "--resume", "--to", "--format", "--no-plots", "-q",
                   "--dpi", "--layout", "--bogus", "-", "--", "-x", "--help-me", "--summary", "--strict"]
TASKS = ["decision", "decision(coherences = [0.1])", "decision(coherences = [])", "spirals(arms = 0)",
         "data(\"nope.npz\")", "data(file = \"../../etc/passwd\")", "nope", "decision(", "decision(x = 1)",
         "spirals(arms = -1)", "decision(coherences = [nan])", '"""', "decision(coherences = [1e400])"]


def _cli_call(argv: list[str], capsys) -> tuple[object, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors, --help
        code = exc.code
    except _Trained:
        code = "trained"
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        code = f"exception {type(exc).__name__}: {str(exc)[:200]}"
    out, err = capsys.readouterr()
    return code, out + err


def _cli_wrong(code, said: str) -> list[str]:
    bad = []
    if code not in (0, 1, 2, "trained"):
        bad.append(f"exit code {code!r}")
    if "Traceback" in said:
        bad.append("printed a traceback")
    for marker in ("internal error", "X001", "S999"):
        if marker in said:
            bad.append("internal error: " + next(line for line in said.splitlines() if marker in line)[:300])
            break
    return bad


def _base_argv(rng: random.Random, command: str, model: str, out: str) -> list[str]:
    if command == "run":
        return ["run", model, "--backend", "numpy", "--trials", rng.choice(["1", "2"]), "--batch", "1", "-q",
                "--no-plots", "-o", out, *rng.choice([[], ["--force"], ["--resume"], ["--steps", "5"],
                                                      ["--task", rng.choice(TASKS)], ["--seed", "3"]])]
    if command == "compile":
        return ["compile", model, "--backend", "numpy", "--batch", rng.choice(["1", "4"]), "-o", out,
                *rng.choice([[], ["--force"]])]
    if command == "convert":
        return ["convert", model, *rng.choice([[], ["--to", "ei"], ["--to", "yaml"], ["-o", out + ".yaml"],
                                               ["-o", out + ".ei", "--force"]])]
    if command == "graph":
        return ["graph", model, *rng.choice([[], ["--format", "json"], ["--format", "graphml"],
                                             ["--format", "json", "-o", out + ".json"]])]
    if command == "viz":
        return ["viz", model, "-o", out + ".dot", *rng.choice([[], ["--dpi", "100"], ["--layout", "spring"],
                                                                ["--highlight", "E"], ["--detail", "areas"]])]
    return ["validate", model, *rng.choice([[], ["--format", "json"], ["--strict"], ["--summary"],
                                            ["--viz", out + ".dot"]])]


def _mutate_argv(rng: random.Random, argv: list[str], places: dict[str, str]) -> list[str]:
    argv = list(argv)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        how = rng.randrange(9)
        i = rng.randrange(1, len(argv)) if len(argv) > 1 else 0
        if how == 0 and len(argv) > 1:  # a value replaced by a hostile number
            argv[i] = rng.choice(HOSTILE_NUMBERS)
        elif how == 1 and len(argv) > 1:  # by hostile text
            argv[i] = rng.choice(HOSTILE_TEXT)
        elif how == 2 and len(argv) > 2:  # an argument dropped
            del argv[i]
        elif how == 3:  # an option added, with a value or not
            extra = [rng.choice(HOSTILE_OPTIONS)]
            if rng.random() < 0.7:
                extra.append(rng.choice(HOSTILE_NUMBERS + HOSTILE_TEXT + TASKS))
            argv[i:i] = extra
        elif how == 4 and len(argv) > 2:  # two arguments swapped
            j = rng.randrange(1, len(argv))
            argv[i], argv[j] = argv[j], argv[i]
        elif how == 5:  # the model, or an output, is somewhere else
            argv[i] = rng.choice(list(places.values()))
        elif how == 6 and len(argv) > 1:  # a value with hostile text inside
            argv[i] = argv[i][: rng.randrange(len(argv[i]) + 1)] + rng.choice(HOSTILE_TEXT) + argv[i][
                rng.randrange(len(argv[i]) + 1):]
        elif how == 7 and len(argv) > 1:  # an argument given twice
            argv.insert(i, argv[i])
        else:  # the command itself
            argv[0] = rng.choice(["run", "compile", "convert", "graph", "viz", "validate", "Run", "", "help"])
    # Only this test's folder: never the file system's root, the parent folder or a device (as root, an
    # output there would be written or replaced)
    argv = [a for a in argv if a not in WIDE and not a.startswith(("/dev", "/sys", "/etc", "/root", "/home"))
            and not (a.startswith("/") and not a.startswith("/proc/")) and ".." not in a.split("/")]
    if argv[0] in ("run", "compile") and "--backend" not in argv:  # no Numba compiles in the fuzz
        argv[1:1] = ["--backend", "numpy"]
    if argv[0] == "viz" and "-o" not in argv and "--output" not in argv:  # .dot is fast, .svg is not
        argv += ["-o", "drawing.dot"]
    return argv



def _cli_failures(label: str, argv: list[str], capsys) -> list[str]:
    """Run one command line in process; a one-line failure when it went wrong, else nothing."""
    code, said = _cli_call(argv, capsys)
    bad = _cli_wrong(code, said)
    return [f"{label}: eigraph {' '.join(map(repr, argv))}: {'; '.join(bad)}"] if bad else []

WIDE = {"/", "//", "..", "../", "~", ".", "a/b", "//x", "/x"}


@pytest.fixture
def no_training(monkeypatch):
    from eigraph.runtime import train

    def train_stub(self, *args, **kwargs):
        raise _Trained

    monkeypatch.setattr(train.Trainer, "train", train_stub)
    monkeypatch.delenv("EIGRAPH_DEBUG", raising=False)


def _places(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tiny.ei").write_text(TINY, encoding="utf-8")
    (tmp_path / "tiny.yaml").write_text(TINY_YAML.format(stim="stim", E="E", out="out", p1="p1", conn="dense"),
                                        encoding="utf-8")
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "a_folder.yaml").mkdir(exist_ok=True)
    (tmp_path / "empty.ei").write_text("")
    (tmp_path / "binary.ei").write_bytes(bytes(range(256)))
    results = tmp_path / "old_results"
    results.mkdir(exist_ok=True)
    (results / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
    for name, target in (("a_link", tmp_path / "tiny.ei"), ("dangling", tmp_path / "nowhere" / "x")):
        if not (tmp_path / name).is_symlink():
            (tmp_path / name).symlink_to(target)
    return {"ei": "tiny.ei", "yaml": "tiny.yaml", "under a file": "a_file/out", "a file": "a_file",
            "a folder": "a_folder.yaml", "missing": "missing/model.ei", "empty": "empty.ei", "binary": "binary.ei",
            "proc": "/proc/eigraph", "old results": "old_results", "link": "a_link", "dangling": "dangling",
            "long": "d" * 300 + ".ei", "deep": "/".join(["d"] * 200) + "/x.ei"}


def cli_argv_mutants():
    commands = ["run", "compile", "convert", "graph", "validate", "viz"]
    weights = [3, 2, 2, 2, 1, 1]
    for i in range(CLI_ARGV_BUDGET):
        rng = random.Random(f"cli-argv/{i}")
        command = rng.choices(commands, weights)[0]
        model = rng.choice(["tiny.ei", "tiny.ei", "tiny.yaml"])
        out = f"out{i}"
        yield i, rng, command, model, out


@pytest.mark.parametrize("part", range(4))
def test_cli_argument_mutations(part: int, tmp_path: Path, capsys, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    places = _places(tmp_path)
    failures, count = [], 0
    for i, rng, command, model, out in cli_argv_mutants():
        if i % 4 != part:
            continue
        argv = _mutate_argv(rng, _base_argv(rng, command, model, out), places)
        count += 1
        failures += _cli_failures(f"cli-argv/{i}", argv, capsys)
    assert count > 1000
    assert not failures, f"{len(failures)} of {count} argument mutants failed:\n" + "\n".join(failures[:20])


def _hostile_name(rng: random.Random) -> str:
    parts = [rng.choice(HOSTILE_TEXT) for _ in range(rng.randrange(1, 4))]
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(["E", "stim", "pop", "x1"]))
    return "".join(parts)


def _yaml_key(name: str) -> str:
    return json.dumps(name)  # a double-quoted YAML scalar: any text, control characters escaped


def _file_name(rng: random.Random) -> str:
    """A model file name: quotes, control characters, unicode, very long, path separators."""
    name = "".join(rng.choice(HOSTILE_TEXT[:24] + ["m", "model", " ", "-", ".", "/", "a/", "x" * 250])
                   for _ in range(rng.randrange(1, 5)))
    name = name.replace("\x00", "")
    return name + rng.choice([".ei", ".yaml", ".yml", ".EI", "", ".ei.yaml", ".txt"])


def cli_name_mutants():
    for i in range(CLI_NAMES_BUDGET):
        rng = random.Random(f"cli-names/{i}")
        kind = rng.choice(["populations", "projections", "file", "output"])
        yield i, rng, kind


def _write_model(tmp_path: Path, relative: str, text: str) -> Path | None:
    path = tmp_path / "names" / relative
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except (OSError, ValueError):  # a name the file system refuses (too long, a folder in the way)
        return None
    return path


@pytest.mark.parametrize("part", range(2))
def test_cli_hostile_names(part: int, tmp_path: Path, capsys, monkeypatch, no_training):
    monkeypatch.chdir(tmp_path)
    failures, count, written = [], 0, 0
    for i, rng, kind in cli_name_mutants():
        if i % 2 != part:
            continue
        names = {"stim": "stim", "E": "E", "out": "out", "p1": "p1", "conn": "dense"}
        relative, text = f"m{i}.yaml", None
        if kind == "populations":
            names[rng.choice(["stim", "E", "out"])] = _hostile_name(rng)
        elif kind == "projections":
            names["p1"] = _hostile_name(rng)
            if rng.random() < 0.4:
                names["conn"] = f'mask({_hostile_name(rng)!r})'.replace("'", '"')
        elif kind == "file":
            relative = f"f{i}/" + _file_name(rng)
            text = TINY if rng.random() < 0.5 else None
        if text is None:
            text = TINY_YAML.format(**{k: _yaml_key(v) for k, v in names.items()})
        if kind == "populations" and rng.random() < 0.3:  # the same hostile name in the .ei form
            text = TINY.replace(" E ", f" {names['E']} ").replace("E(6)", f"{names['E']}(6)")
            relative = relative.replace(".yaml", ".ei")
        model = _write_model(tmp_path, relative, text)
        if model is None:
            continue
        written += 1
        command = rng.choice(["validate", "convert", "graph", "compile", "viz", "run"])
        # joined as text: a name that starts with '/' must not make the output an absolute path (as root,
        # '/"""a' would be written at the file system's root)
        out = str(tmp_path / "outs" / f"o{i}") if kind != "output" else f"{tmp_path}/outs/{_file_name(rng)}"
        if not os.path.abspath(out).startswith(str(tmp_path) + os.sep):
            continue
        argv = _base_argv(rng, command, str(model), out)
        count += 1
        failures += _cli_failures(f"cli-names/{i} ({kind})", argv, capsys)
    assert written > 500
    assert not failures, f"{len(failures)} of {count} name mutants failed:\n" + "\n".join(failures[:20])


def test_fuzz_budget_in_all():
    """At least 10,000 mutations across the fuzz suite: the model mutators and the command line."""
    models = sum(per_model(m) for m in MUTATORS) * len(CORPUS)
    assert models + CLI_ARGV_BUDGET + CLI_NAMES_BUDGET >= 10_000, models
