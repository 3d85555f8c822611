"""No user text becomes code (issue 10): hostile text in every place the generator writes user text.

What of the user's can reach generated source (the Numba kernel, ``eigraph compile``'s kernel.py
and program.txt), and how each is covered here:

=================================  ==========================================  ===================
user text                          reaches                                     test
=================================  ==========================================  ===================
model file name (.ei / .yaml)      kernel docstring, ``[file:line]`` comments  file-name tests
                                   (legal on disk: any character but / NUL)    (+ one numba run)
population name                    comments, run_chunk argument comments,     Program-level
                                   program.txt                                 rename; YAML N113
projection name (a string!)        comments, constants' comments, program.txt  .ei and YAML N113;
                                                                               Program-level
rule name, parameter names         comments; P_<rule>_<param> identifiers      YAML N113;
                                                                               Program-level
compartment names                  c_<pop>_<comp>, GAIN_ identifiers, comments Program-level
                                                                               (ident_part)
trace / temporary names            tr_/tm_ identifiers, comments               grammar NAMEs only;
                                                                               ident_part unit
cell type, network names           (validated; not emitted)                    YAML N113
source/target/celltype references  (resolved to declared names)                YAML N113
mask/weights files, task strings   (not emitted; messages)                     N114
model lines in comments            only as ``[file:line]``                     file-name tests
=================================  ==========================================  ===================

Names that come from model files are refused by validate when they hold a control character
(N113/N114). The generator does not rely on that: the Program-level tests give every name kind
hostile text directly and check the kernel still parses, has only the allowed top level, keeps
the text out of every token but comments and the docstring, and runs no payload.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import json
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest

from eigraph.backends.numba_gen import generate
from eigraph.cli import main
from eigraph.compile import cache
from eigraph.compile.codetext import (GeneratedCodeError, comment_text, docstring_text, ident_part,
                                      verify_kernel_source, visible)
from eigraph.compile.lower import lower
from eigraph.diagnostics import SNIPPET_WIDTH, Span, error, render_one
from eigraph.model.load import check_path, load_model

MARK = "PWNED"
CALL = f'__import__("os").system("touch {MARK}")'
OPEN = f'open("{MARK}", "w")'

# hostile texts for names given straight to the generator (any character at all)
HOSTILE = {
    "triple_double": f'x"""; {CALL}; """',
    "triple_single": f"x'''; {CALL}; '''",
    "cr": f"x\r{CALL}\r",
    "lf": f"x\n{CALL}\n",
    "crlf": f"x\r\n{OPEN}\r\n",
    "u2028": f"x\u2028{CALL}\u2028",
    "u2029": f"x\u2029{OPEN}",
    "nel": f"x\x85{OPEN}",
    "vt_ff": f"x\x0b{OPEN}\x0c{CALL}",
    "fs": f"x\x1c{OPEN}",
    "nul": f"x\x00{OPEN}",
    "hash": f"x # {CALL} #",
    "backslash": f"x\\\n{CALL}\\",
    "trailing_backslash": "x\\",
    "coding_cookie": "# -*- coding: utf-7 -*- +AAo-" + CALL,
    "bidi": f"x\u202e{OPEN}\u2066",
    "surrogate": "x\ud800y",
    "escape_seq": "x\x1b[2J\x1b]0;title\x07",
    "tab": f"x\t{CALL}",
}

# the same, as far as a file name can carry them (no '/', no NUL)
FILE_NAMES = {key: text for key, text in HOSTILE.items() if "/" not in text and "\x00" not in text
              and key != "surrogate"}

BASE = """\
network hostile { dt = 1 ms; seed = 3 }
celltype Pyr : excitatory { tau = 5 ms; compartments = [apical]; apical_gain = 0.5 }
population inp : input(3)
population E : Pyr(8)
population I : I(4)
population out : readout(2) { activation = softmax }
rule trace_rule(eta = 0.01, tau_m = 10 ms) {
    m' = (post - m) / tau_m : shared
    s = pre * post
    dw = eta * (s - m) * w
}
inp -> E : dense
inp -> I : dense
E -> I : sparse(p = 0.5)
I -> E : dense
I -> E.apical : dense, gain = 0.3
E -> E : sparse(p = 0.5), learn = trace_rule(eta = 0.02)
E -> out : dense, learn = delta(eta = 0.01), name = "PROJ"
run { task = spirals(arms = 2); inputs = [inp]; targets = out }
"""


def _model_text(projection_name: str = "read out") -> str:
    return BASE.replace("PROJ", projection_name)


def _assert_safe_kernel(source: str, cwd: Path, hostile: list[str]) -> None:
    """(a) it parses and has only the allowed top level; the hostile text sits in comments or
    the docstring only; (b) executing the module runs nothing of it."""
    compile(source, "<kernel>", "exec")
    verify_kernel_source(source)
    assert source.replace("\n", "").isprintable()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id not in ("__import__", "open", "exec", "eval"), node.id
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    docstring = next(t for t in tokens if t.type == tokenize.STRING)
    for tok in tokens:
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE) or tok is docstring:
            continue
        assert "__import__" not in tok.string and MARK not in tok.string, tok
    # the hostile text is still there for a reader, escaped, in comments or the docstring
    commented = "\n".join(t.string for t in tokens if t.type == tokenize.COMMENT) + ast.get_docstring(tree, False)
    for text in hostile:
        if "__import__" in text or MARK in text:
            assert MARK in commented
    namespace = {"__name__": "hostile_kernel"}
    module_file = cwd / "kernel_module.py"  # numba's cache=True wants the file to exist
    module_file.write_text(source, encoding="utf-8")
    exec(compile(source, str(module_file), "exec"), namespace)  # numba compiles lazily: only defines
    assert callable(namespace["run_chunk"])
    assert not (cwd / MARK).exists(), "a payload in a name ran"


# ------------------------------------------------------------------------------------------------
# The generator on its own: every name kind given hostile text directly
# ------------------------------------------------------------------------------------------------
def _rename_everything(program, text: str):
    """Give every user-named thing of a lowered Program a name made of ``text``."""
    pmap = {name: f"{text}P{k}" for k, name in enumerate(program.populations)}
    qmap = {name: f"{text}Q{k}" for k, name in enumerate(program.projections)}
    cmaps = {}
    populations = {}
    for name, p in program.populations.items():
        cmap = {c: f"{text}C{j}" for j, c in enumerate(p.compartments)}
        cmaps[name] = cmap
        p.name = pmap[name]
        p.compartments = tuple(cmap[c] for c in p.compartments)
        p.compartment_gains = {cmap[c]: g for c, g in p.compartment_gains.items()}
        p.span = dataclasses.replace(p.span, file=f"folder/{text}.ei")
        populations[p.name] = p
    projections = {}
    for name, q in program.projections.items():
        if q.compartment is not None:
            q.compartment = cmaps[q.target][q.compartment]
        q.name, q.source, q.target = qmap[name], pmap[q.source], pmap[q.target]
        q.span = dataclasses.replace(q.span, file=f"folder/{text}.ei")
        if q.rule is not None:
            q.rule.name = f"{text}R{q.index}"
        projections[q.name] = q
    for op in program.ops:
        op.name = pmap.get(op.name) or qmap.get(op.name) or op.name
    program.populations, program.projections = populations, projections
    program.file = f"folder/{text}.ei"
    program.name = f"{text}N"
    return program


@pytest.fixture(scope="module")
def base_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "base.ei"
    path.write_text(_model_text(), encoding="utf-8")
    return path


@pytest.mark.parametrize("key", sorted(HOSTILE))
@pytest.mark.parametrize("batch", [2, 8])  # 8: the SIMD sparse rows
def test_generator_keeps_every_name_kind_out_of_the_code(key, batch, base_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = _rename_everything(lower(load_model(base_path).graph), HOSTILE[key])
    assert any(p.compartments for p in program.populations.values()) and program.plastic
    source, args = generate(program, batch)
    _assert_safe_kernel(source, tmp_path, [HOSTILE[key]])
    # the argument table still names the (renamed) state, unescaped, for the backend to bind
    assert any(what == f"dense:{q.name}" or what == f"data:{q.name}" for _, what in args
               for q in program.projections.values())
    # program.txt: one line per step, whatever the names hold
    listing = program.describe()
    assert len(listing.split("\n")) == 3 + len(program.ops)
    assert listing.replace("\n", "").isprintable()


def test_ident_part_keeps_names_and_mangles_anything_else():
    assert ident_part("apical") == "apical" and ident_part("tau_m2") == "tau_m2"
    seen = set()
    for text in list(HOSTILE.values()) + ["a b", "a-b", "é", "apical\u200b"]:
        part = ident_part(text)
        assert re.fullmatch(r"[A-Za-z0-9_]+", part), part
        assert part.isidentifier() or ("x" + part).isidentifier()
        seen.add(part)
    assert len(seen) == len(HOSTILE) + 4  # different names stay different


def test_escape_helpers():
    assert visible("a\rb\u2028c\x00") == "a\\x0db\\u2028c\\x00"
    assert comment_text("a\\b\r") == "a\\\\b\\x0d"
    text = docstring_text('x"""\\')
    assert '"""' not in text and ast.literal_eval(f'"""{text}"""') == 'x"""\\'
    for value in HOSTILE.values():
        assert "\n" not in comment_text(value) and comment_text(value).isprintable()
        assert ast.literal_eval(f'"""{docstring_text(value)} """')  # a docstring it cannot end


# ------------------------------------------------------------------------------------------------
# The model file's name: legal on disk, so it is escaped (never refused)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".ei", ".yaml"])
@pytest.mark.parametrize("key", sorted(FILE_NAMES))
def test_file_name_never_becomes_code(key, suffix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / (FILE_NAMES[key] + suffix)
    if suffix == ".ei":
        path.write_text(_model_text(), encoding="utf-8")
    else:
        path.write_text("network: {name: n, dt: 1 ms}\npopulations:\n  a: {celltype: input, size: 2}\n"
                        "  b: {celltype: E, size: 3}\n  c: {celltype: I, size: 2}\nprojections:\n"
                        "  - {source: a, target: b}\n  - {source: b, target: c}\n  - {source: c, target: b}\n"
                        "  - {source: b, target: b, connectivity: \"sparse(p = 0.5)\"}\n", encoding="utf-8")
    model = load_model(path)
    source, _ = generate(lower(model.graph), 8)
    _assert_safe_kernel(source, tmp_path, [FILE_NAMES[key]])


def test_file_name_payload_through_numba_compile_run_and_eigraph_compile(tmp_path, monkeypatch):
    """The reported case end to end, one numba compile: the kernel compiles, runs, matches the
    NumPy reference, and the payload in the name never runs; `eigraph compile` writes a kernel.py
    that passes the same check and a program.txt with one line per step."""
    monkeypatch.chdir(tmp_path)
    name = f'x""";{CALL};"""\r\u2028#\\.ei'
    path = tmp_path / name
    path.write_text("network n { seed = 2; dt = 1 ms }\npopulation a : input(2)\npopulation b : E(3)\n"
                    "population c : I(2)\na -> b : dense\nb -> c : dense\nc -> b : dense, name = \"c: b\"\n",
                    encoding="utf-8")
    model = load_model(path)
    inputs = {"a": np.linspace(0.1, 1.0, 2 * 5).reshape(5, 1, 2).astype(np.float32)}  # time x batch x neurons
    sims = {backend: model.compile(backend=backend, batch=1) for backend in ("numba", "numpy")}
    for sim in sims.values():
        sim.run(inputs)
    assert not (tmp_path / MARK).exists()
    assert "touch PWNED" in sims["numba"].backend.source()
    np.testing.assert_allclose(sims["numba"].read("b.r"), sims["numpy"].read("b.r"), rtol=1e-5, atol=1e-6)
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out), "--backend", "numba"]) == 0
    kernel = (out / "kernel.py").read_text(encoding="utf-8")
    _assert_safe_kernel(kernel, tmp_path, [name])
    listing = (out / "program.txt").read_text(encoding="utf-8")
    assert listing.count("\n") == 3 + len(lower(model.graph).ops)
    assert not (tmp_path / MARK).exists()


# ------------------------------------------------------------------------------------------------
# The compile cache: a module is found only under its own hash and runs from checked text
# ------------------------------------------------------------------------------------------------
GOOD = '"""doc"""\nimport numpy as np\nVALUE = 1\n'


def test_cache_never_runs_a_poisoned_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EIGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    key = hashlib.sha256(GOOD.encode()).hexdigest()[:24]
    folder = tmp_path / "cache" / "numba"
    folder.mkdir(parents=True)
    poisoned = folder / f"eigraph_{key}.py"
    poisoned.write_text(f"{OPEN}\nVALUE = 2\n", encoding="utf-8")  # left there by someone else
    module, path = cache.load_module(GOOD, key, "numba")
    assert module.VALUE == 1 and path == poisoned
    assert path.read_text(encoding="utf-8") == GOOD
    assert not (tmp_path / MARK).exists()


def test_cache_refuses_a_key_that_is_not_the_hash_and_a_source_that_is_not_a_kernel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EIGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(GeneratedCodeError, match="not the hash"):
        cache.load_module(GOOD, "0" * 24, "numba")
    bad = f'"""x"""; {OPEN}; """y"""\n'  # what the old docstring let a file name do
    with pytest.raises(GeneratedCodeError, match="top-level"):
        cache.load_module(bad, hashlib.sha256(bad.encode()).hexdigest()[:24], "numba")
    broken = '"""x"""\nA = 1  # ok\r  B = 2\n'
    with pytest.raises(GeneratedCodeError):
        cache.load_module(broken, hashlib.sha256(broken.encode()).hexdigest()[:24], "numba")
    assert not (tmp_path / MARK).exists()
    assert not list((tmp_path / "cache").rglob("*.py"))  # nothing refused was written


# ------------------------------------------------------------------------------------------------
# validate: names and strings with control characters are refused (N113, N114)
# ------------------------------------------------------------------------------------------------
BAD_CHARS = {"cr": "\r", "nul": "\x00", "vt": "\x0b", "ff": "\x0c", "fs": "\x1c", "nel": "\x85",
             "u2028": "\u2028", "u2029": "\u2029", "esc": "\x1b", "bidi": "\u202e"}


def _findings(path: Path) -> list:
    _model, found, _sources = check_path(path)
    return [d for d in found if d.is_error]


@pytest.mark.parametrize("key", sorted(BAD_CHARS))
def test_ei_projection_name_with_a_control_character_is_N113(key, tmp_path, capsys):
    pad = "# " + "p" * 9000 + "\n" if key == "nul" else ""  # NUL in the first 8 KiB is F003 (binary)
    head = pad + "network n { seed = 1; dt = 1 ms }\npopulation a : E(3)\npopulation b : I(2)\n"
    line = f'a -> b : dense, name = "ab{BAD_CHARS[key]}{CALL.replace(chr(34), chr(39))}"'
    path = tmp_path / "m.ei"
    path.write_text(head + line + "\nb -> a : dense\n", encoding="utf-8")
    found = _findings(path)
    assert [d.code for d in found] == ["N113"], found
    d = found[0]
    at = line.index(BAD_CHARS[key]) + 1
    assert (d.span.line, d.span.column) == (head.count("\n") + 1, at)
    assert f"U+{ord(BAD_CHARS[key]):04X}" in d.message and "character 3" in d.message
    assert "visible characters" in d.hint
    assert main(["validate", str(path)]) == 1
    text = capsys.readouterr().out
    lines = text.split("\n")
    shown = [ln for ln in lines if ln.lstrip().startswith(f"{d.span.line} |")][0]
    caret = lines[lines.index(shown) + 1]
    assert caret.index("^") == shown.index("|") + 2 + at - 1  # under the bad character
    assert shown[caret.index("^")] == "?"
    assert "hint:" in text and all(c.isprintable() or c == "\n" for c in text)


_NET = "network: {{name: n, dt: 1 ms}}\n"
_POPS = "populations:\n  z: {{celltype: E, size: 2}}\n"
def test_a_tab_in_a_projection_name_is_allowed_and_escaped_in_the_kernel(tmp_path):
    """A tab is white space on one line (the language allows it between tokens): not N113."""
    path = tmp_path / "tab.ei"
    path.write_text(_model_text("read\tout"), encoding="utf-8")
    program = lower(load_model(path).graph)
    assert "read\tout" in program.projections
    source, _ = generate(program, 2)
    assert "read\\x09out" in source and "\t" not in source
    verify_kernel_source(source)


YAML_PLACES = {  # (model with {v} where the name goes, the line of the finding)
    "network name": ("network: {{name: \"{v}\", dt: 1 ms}}\n" + _POPS, 1),
    "cell type name": (_NET + "celltypes:\n  \"{v}\": {{sign: excitatory}}\n" + _POPS, 3),
    "population name": (_NET + _POPS + "  \"{v}\": {{celltype: E, size: 2}}\n", 4),
    "population celltype": (_NET + _POPS + "  a: {{celltype: \"{v}\", size: 2}}\n", 4),
    "rule name": (_NET + "rules:\n  \"{v}\": {{body: \"dw = pre\"}}\n" + _POPS, 3),
    "parameter name": (_NET + "rules:\n  r: {{params: {{\"{v}\": 1}}, body: \"dw = pre\"}}\n" + _POPS, 3),
    "projection source": (_NET + _POPS + "projections:\n  - {{source: \"{v}\", target: z}}\n", 5),
    "projection target": (_NET + _POPS + "projections:\n  - {{source: z, target: \"{v}\"}}\n", 5),
    "projection name": (_NET + _POPS + "projections:\n  - {{source: z, target: z, name: \"{v}\"}}\n", 5),
}
YAML_CHARS = {"nul": "\\0", "u2028": "\\L", "nel": "\\N", "vt": "\\v", "esc": "\\e", "bidi": "\\u202e"}


@pytest.mark.parametrize("char", sorted(YAML_CHARS))
@pytest.mark.parametrize("place", sorted(YAML_PLACES))
def test_yaml_names_with_a_control_character_are_N113(place, char, tmp_path):
    template, line = YAML_PLACES[place]
    path = tmp_path / "m.yaml"
    path.write_text(template.format(v=f"ab{YAML_CHARS[char]}c"), encoding="utf-8")
    found = _findings(path)
    assert [d.code for d in found] == ["N113"], (place, found)
    assert found[0].span.line == line and found[0].hint
    rendered = render_one(found[0], {})
    assert "^" in rendered and all(c.isprintable() or c == "\n" for c in rendered)


def test_strings_with_a_control_character_are_N114(tmp_path):
    np.save(tmp_path / "m.npy", np.ones((2, 2)))
    path = tmp_path / "m.ei"
    path.write_text('network n { seed = 1; dt = 1 ms }\npopulation a : E(2)\n'
                    'a -> a : mask("m\u2028.npy"), init = halfnormal(0.1)\n', encoding="utf-8")
    found = _findings(path)
    assert [(d.code, d.span.line, d.span.column) for d in found] == [("N114", 3, 17)]
    path = tmp_path / "t.yaml"
    path.write_text("populations:\n  a: {celltype: input, size: 2}\n  b: {celltype: readout, size: 2}\n"
                    "projections:\n  - {source: a, target: b}\n"
                    "run: {task: {data: {file: \"d\\L.npz\"}}, inputs: a, targets: b}\n", encoding="utf-8")
    found = _findings(path)
    assert [(d.code, d.span.line) for d in found] == [("N114", 6)], found


# ------------------------------------------------------------------------------------------------
# Diagnostics: long lines are cut around the caret, and control characters never print
# ------------------------------------------------------------------------------------------------
def test_a_200000_character_line_is_cut_around_the_caret(tmp_path, capsys):
    before, after = " " * 100_000, " " * 100_000
    line = f"population a : E(3){before}@{after}"  # 200,020 characters, a stray '@'
    assert len(line) > 200_000
    path = tmp_path / "long.ei"
    path.write_text(f"network n {{ seed = 1 }}\n{line}\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert len(out) < 2000
    lines = out.splitlines()
    shown = next(ln for ln in lines if ln.lstrip().startswith("2 |"))
    caret = lines[lines.index(shown) + 1]
    assert shown.count("...") == 2 and len(shown) <= SNIPPET_WIDTH + 20
    assert shown[caret.index("^")] == "@"


@pytest.mark.parametrize("column", [1, 50, 100_001, 200_028, 200_030, 200_031])
def test_snippet_window_keeps_the_caret_on_its_character(column):
    line = "".join(chr(ord("a") + k % 26) for k in range(200_030))
    d = error("S001", "stray \x1b[2J text\r", Span("f.ei", 1, column, 1, column + 4), "hint\x00")
    out = render_one(d, {"f.ei": line + "\n"})
    head, shown, caret = out.splitlines()[:3]
    assert "\\x1b" in head and "\\x0d" in head and "\\x00" in out
    assert len(shown) <= SNIPPET_WIDTH + 20 and len(caret) <= SNIPPET_WIDTH + 20
    start = caret.index("^")
    if column <= len(line):
        assert shown[start] == line[column - 1]
        width = caret.count("^")
        assert shown[start:start + width] == line[column - 1:column - 1 + width]
    else:  # one past the end of the line (where an unexpected end of file is reported)
        assert start == len(shown) and shown.endswith(line[-10:])
    assert shown.startswith("    1 | ...") == (column - 1 > SNIPPET_WIDTH // 3)
    assert shown.endswith("...") == (column < len(line) - SNIPPET_WIDTH)


def test_short_lines_are_shown_whole():
    d = error("S001", "bad", Span("f.ei", 2, 5, 2, 7), "")
    out = render_one(d, {"f.ei": "x\nabcdefgh\n"})
    assert out.splitlines()[1:] == ["    2 | abcdefgh", "      |     ^^"]


def test_json_output_is_unchanged_by_the_cut(tmp_path, capsys):
    path = tmp_path / "long.ei"
    path.write_text("network n { seed = 1 }\npopulation a : E(3)" + " " * 5000 + "@\n", encoding="utf-8")
    assert main(["validate", "--format", "json", str(path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["diagnostics"][0]["span"]["column"] == 5020


def test_a_file_name_with_line_breaks_is_reported_on_one_line():
    out = render_one(error("S001", "bad", Span("a\nb\r\u2028.ei", 1, 1), "two\nlines"), {})
    assert out.splitlines()[0] == "a\\x0ab\\x0d\\u2028.ei:1:1: error[S001]: bad"
    assert out.endswith("hint: two\nlines")


def test_github_annotations_carry_no_control_characters():
    from eigraph.diagnostics import render_github

    out = render_github([error("N113", "the name 'a\x1b[2Jb\u2028' is bad", Span("m\r.ei", 2, 3), "fix\x00")])
    assert out.count("\n") == 0 and out.isprintable()
    assert "a\\x1b[2Jb\\u2028" in out and "file=m\\x0d.ei" in out
