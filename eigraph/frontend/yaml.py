"""The YAML front end: PyYAML's safe composer keeps every node's line and column.

Values are either the language's own text (``init: "halfnormal(0.1)"``), parsed by the same
grammar with spans placed inside the YAML file, or mappings (``init: {halfnormal: {sigma: 0.1}}``).
Nothing is constructed by YAML itself: no tags, no Python objects.
"""

from __future__ import annotations

import re

import yaml

from eigraph.diagnostics import Diagnostic, Span, char_span, error, invisible_char, suggest
from eigraph.expr import ast as ex
from eigraph.frontend import ast
from eigraph.frontend.dsl import parse

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TOP_KEYS = ("network", "celltypes", "populations", "projections", "rules", "phases", "run")
STRING_KEYS = ("file", "name")  # mapping-form arguments that are strings, not expressions
MAX_NODES = 1_000_000


class _Stop(Exception):
    pass


class _YamlReader:
    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.problems: list[Diagnostic] = []
        self.doc = ast.Document(file)
        self.visited = 0

    def span(self, node) -> Span:
        start, end = node.start_mark, node.end_mark
        return Span(self.file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)

    def report(self, code, message, node_or_span, hint=""):
        span = node_or_span if isinstance(node_or_span, Span) or node_or_span is None else self.span(node_or_span)
        self.problems.append(error(code, message, span, hint))

    # values ----------------------------------------------------------------------------------
    def _tick(self):
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _Stop("the YAML expands to more than a million values (aliases?)")

    def scalar_text(self, node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.report("Y003", f"{what} must be a single value, not a {_kind(node)}", node,
                        "write one value after the ':' (a list or mapping is not allowed here)")
            return None
        return node.value

    def is_name(self, name: str, node, what: str, dotted: bool = False) -> bool:
        """Names follow the language's rule (ASCII letters, digits, '_'), so every model converts."""
        parts = name.split(".") if dotted else [name]
        if all(_NAME.match(part) for part in parts):
            return True
        if not self.visible(name, node, what):
            return False
        self.report("N109", f"'{name}' is not a valid {what} name", node,
                    "names are ASCII letters, digits and '_', starting with a letter or '_'"
                    + ("; areas are written with dots: H1.E" if dotted else ""))
        return False

    def visible(self, text: str, node, what: str) -> bool:
        """N113: a name holding a control character, a line break of any kind (U+2028 too) or
        another invisible character. YAML can spell them all in quoted scalars ("a\\rb")."""
        found = invisible_char(text)
        if found is None:
            return True
        index, char = found
        span = self.span(node)
        raw = self.raw(node)
        if raw == text or (node.style in ("'", '"') and raw[1:-1] == text):  # written as it reads
            span = char_span(span, text, index)
        self.report("N113", f"the {what} name '{text}' holds {char} at character {index + 1}", span,
                    "names are written on one line with visible characters only: ASCII letters, digits and '_'")
        return False

    def expr(self, node, string_like: bool = False) -> ex.Expr | None:
        """A YAML node as an expression (text in the language, a sequence, or a call mapping)."""
        self._tick()
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null", "Null", "NULL"):
                self.report("Y004", "missing value", node, "write a value after the ':'")
                return None
            if string_like:
                if '"' in node.value or "\n" in node.value or "\r" in node.value:
                    self.report("U505", "a string cannot hold double quotes or line breaks", node,
                                "write it on one line, without double quotes")
                    return None
                return ex.String(node.value, span=self.span(node))
            return self.parse_scalar(node, "expr")
        if isinstance(node, yaml.SequenceNode):
            items = [self.expr(item) for item in node.value]
            if any(item is None for item in items):
                return None
            return ex.ListExpr(tuple(items), span=self.span(node))
        if isinstance(node, yaml.MappingNode):
            if len(node.value) != 1:
                self.report("Y005", f"a call written as a mapping has one key (the function), got {len(node.value)}",
                            node, "write {halfnormal: {sigma: 0.1}}, or the text form \"halfnormal(0.1)\"")
                return None
            key_node, args_node = node.value[0]
            func = self.scalar_text(key_node, "a function name")
            if func is None:
                return None
            args, kwargs = [], []
            if isinstance(args_node, yaml.MappingNode):
                for k_node, v_node in args_node.value:
                    key = self.scalar_text(k_node, "an argument name")
                    value = self.expr(v_node, string_like=key in STRING_KEYS)
                    if key is None or value is None:
                        return None
                    kwargs.append(ex.Keyword(key, value, span=self.span(k_node)))
            elif isinstance(args_node, yaml.SequenceNode):
                for v_node in args_node.value:
                    value = self.expr(v_node)
                    if value is None:
                        return None
                    args.append(value)
            elif not (args_node.tag == "tag:yaml.org,2002:null" and args_node.value in ("", "~", "null")):
                value = self.expr(args_node, string_like=func in ("mask", "weights", "data"))
                if value is None:
                    return None
                args.append(value)
            return ex.Call(func, tuple(args), tuple(kwargs), func_span=self.span(key_node), span=self.span(node))
        self.report("Y003", "unexpected YAML value", node, "write a value, a list or a one-key mapping")
        return None

    def raw(self, node) -> str:
        return self.text[node.start_mark.index:node.end_mark.index]

    def offsets(self, node) -> tuple[int, int, int]:
        mark = node.start_mark
        if node.style in ('"', "'"):
            return mark.line, mark.column + 1, mark.column + 1
        if node.style in ("|", ">"):
            lines = self.text.splitlines()
            indent = 0
            for line in lines[mark.line + 1:]:
                if line.strip():
                    indent = len(line) - len(line.lstrip(" "))
                    break
            return mark.line + 1, indent, indent
        return mark.line, mark.column, mark.column

    def parse_scalar(self, node, start: str):
        text, offsets = node.value, self.offsets(node)
        multiline = node.start_mark.line != node.end_mark.line
        if node.style is None and multiline:
            # YAML folds a multi-line plain scalar into one line; parse the lines as written (their
            # indentation included) so positions stay exact; the language's newline rules apply
            text = self.text[node.start_mark.index:node.end_mark.index]
            offsets = (node.start_mark.line, node.start_mark.column, 0)
        elif node.style in ('"', "'") and (multiline or "\\" in self.raw(node) or "''" in self.raw(node)):
            offsets = _quoted_mapper(self.text, node) or offsets
        elif node.style == ">" and multiline:
            offsets = _folded_mapper(self.text, node) or offsets
        if start == "expr":
            text = text.rstrip()  # a block scalar keeps its final line break
        result, problems = parse(text, self.file, start, offsets)
        self.problems += problems
        return result

    # declarations ----------------------------------------------------------------------------
    def mapping(self, node, what: str) -> list[tuple]:
        if not isinstance(node, yaml.MappingNode):
            self.report("Y002", f"{what} must be a mapping (key: value lines), not a {_kind(node)}", node,
                        "write 'key: value' lines indented under it")
            return []
        pairs = []
        seen = {}
        for key_node, value_node in node.value:
            self._tick()
            key = self.scalar_text(key_node, "a key")
            if key is None:
                continue
            if key in seen:
                self.report("N106", f"'{key}' appears twice in {what} (first on line {seen[key]})", key_node,
                            "YAML keeps only one of them: remove the other")
                continue
            seen[key] = key_node.start_mark.line + 1
            pairs.append((key, key_node, value_node))
        return pairs

    def settings(self, pairs, skip=()) -> list[ast.Setting]:
        out = []
        for key, key_node, value_node in pairs:
            if key in skip:
                continue
            value = self.expr(value_node, string_like=key in STRING_KEYS)
            if value is not None:
                out.append(ast.Setting(key, value, span=self.span(key_node)))
        return out

    def read(self, root) -> ast.Document:
        if root is None:
            self.report("F005", f"'{self.file}' holds no YAML document", Span(self.file, 1, 1), "")
            return self.doc
        for key, key_node, value_node in self.mapping(root, "the model file"):
            if key not in TOP_KEYS:
                hint = suggest(key, TOP_KEYS) or f"top-level keys: {', '.join(TOP_KEYS)}"
                self.report("N107", f"unknown top-level key '{key}'", key_node, hint)
                continue
            getattr(self, f"_{key}")(value_node)
        return self.doc

    def _network(self, node):
        pairs = self.mapping(node, "network")
        name = next((p for p in pairs if p[0] == "name"), None)
        name_text = self.scalar_text(name[2], "the network name") if name else None
        if name_text is not None and not self.is_name(name_text, name[2], "network"):
            name_text = None
        span = self.span(name[2]) if name else self.span(node)
        self.doc.network.append(ast.NetworkDecl(name_text or "model", self.settings(pairs, skip=("name",)), span=span))

    def _celltypes(self, node):
        for name, key_node, value_node in self.mapping(node, "celltypes"):
            if not self.is_name(name, key_node, "cell type"):
                continue
            pairs = self.mapping(value_node, f"cell type '{name}'")
            found = {k: (kn, vn) for k, kn, vn in pairs}
            if "sign" not in found:
                self.report("N110", f"cell type '{name}' needs a sign", key_node,
                            "add 'sign: excitatory' (or inhibitory, unsigned)")
                continue
            own = found["sign"][1]
            sign = self.scalar_text(own, "sign")
            role = self.scalar_text(found["role"][1], "role") if "role" in found else None
            if sign is None:
                continue
            # the cell type's own sign is 'sign'; a default sign for its populations is 'population_sign'
            defaults = [("sign" if k == "population_sign" else k, kn, vn) for k, kn, vn in pairs
                        if k not in ("sign", "role")]
            self.doc.celltypes.append(ast.CellTypeDecl(
                name, sign, role, self.settings(defaults), span=self.span(key_node),
                sign_span=self.span(own), role_span=self.span(found["role"][1]) if role else None))

    def _populations(self, node):
        for name, key_node, value_node in self.mapping(node, "populations"):
            if not self.is_name(name, key_node, "population", dotted=True):
                continue
            pairs = self.mapping(value_node, f"population '{name}'")
            found = {k: (kn, vn) for k, kn, vn in pairs}
            missing = [k for k in ("celltype", "size") if k not in found]
            if missing:
                self.report("N110", f"population '{name}' needs {' and '.join(missing)}", key_node,
                            "for example: {celltype: E, size: 80}")
                continue
            celltype = self.scalar_text(found["celltype"][1], "celltype")
            if celltype is not None and not self.visible(celltype, found["celltype"][1], "cell type"):
                celltype = None
            size = self.expr(found["size"][1])
            if celltype is None or size is None:
                continue
            area = name.rpartition(".")[0] or None
            self.doc.populations.append(ast.PopulationDecl(
                name, celltype, size, self.settings(pairs, skip=("celltype", "size")), span=self.span(key_node),
                celltype_span=self.span(found["celltype"][1]), area=area))

    def _projections(self, node):
        if not isinstance(node, yaml.SequenceNode):
            self.report("Y002", "projections must be a list (lines starting with '- ')", node,
                        "write each projection as '- source: A' followed by its keys")
            return
        for item in node.value:
            pairs = self.mapping(item, "a projection")
            found = {k: (kn, vn) for k, kn, vn in pairs}
            missing = [k for k in ("source", "target") if k not in found]
            if missing:
                self.report("N110", f"a projection needs {' and '.join(missing)}", item,
                            "for example: {source: E, target: I, connectivity: dense}")
                continue
            source = self.scalar_text(found["source"][1], "source")
            target = self.scalar_text(found["target"][1], "target")
            if source is not None and not self.visible(source, found["source"][1], "source population"):
                source = None
            if target is not None and not self.visible(target, found["target"][1], "target population"):
                target = None
            if "connectivity" in found:
                connectivity = self.expr(found["connectivity"][1])
            else:
                connectivity = ex.Name(("dense",), span=self.span(item))
            if source is None or target is None or connectivity is None:
                continue
            self.doc.projections.append(ast.ProjectionDecl(
                source, target, connectivity, self.settings(pairs, skip=("source", "target", "connectivity")),
                span=self.span(item), source_span=self.span(found["source"][1]),
                target_span=self.span(found["target"][1])))

    def _rules(self, node):
        for name, key_node, value_node in self.mapping(node, "rules"):
            if not self.is_name(name, key_node, "rule"):
                continue
            pairs = self.mapping(value_node, f"rule '{name}'")
            params, timing, timing_span, body = [], None, None, None
            for key, k_node, v_node in pairs:
                if key == "params":
                    for p_name, p_key, p_value in self.mapping(v_node, f"the parameters of rule '{name}'"):
                        if not self.is_name(p_name, p_key, "parameter"):
                            continue
                        is_null = isinstance(p_value, yaml.ScalarNode) and p_value.tag == "tag:yaml.org,2002:null"
                        default = None if is_null else self.expr(p_value)
                        params.append(ast.Param(p_name, default, span=self.span(p_key)))
                elif key == "timing":
                    timing = self.scalar_text(v_node, "timing")
                    timing_span = self.span(v_node)
                elif key == "body":
                    if self.scalar_text(v_node, "a rule body") is not None:
                        body = self.parse_scalar(v_node, "rule_body")
                        if body is None:
                            body = []
                else:
                    hint = suggest(key, ("params", "timing", "body")) or "a rule has params, timing and body"
                    self.report("N107", f"unknown key '{key}' in rule '{name}'", k_node, hint)
            if body is None:
                self.report("N110", f"rule '{name}' needs a body", key_node, "body: |\n  dw = eta * pre * post")
                continue
            self.doc.rules.append(ast.RuleDecl(name, params, timing, body, span=self.span(key_node),
                                               timing_span=timing_span))

    def _phases(self, node):
        for name, key_node, value_node in self.mapping(node, "phases"):
            if not self.is_name(name, key_node, "phase"):
                continue
            self.doc.phases.append(ast.PhaseDecl(name, self.settings(self.mapping(value_node, f"phase '{name}'")),
                                                 span=self.span(key_node)))

    def _run(self, node):
        self.doc.runs.append(ast.RunDecl(self.settings(self.mapping(node, "run")), span=self.span(node)))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _half_character(root):
    """The first scalar whose value holds a lone surrogate ("\\ud800" in double quotes): text that
    cannot be printed or written as UTF-8."""
    stack = [root] if root is not None else []
    seen = 0
    while stack and seen < 2_000_000:
        node = stack.pop()
        seen += 1
        if isinstance(node, yaml.ScalarNode):
            if _SURROGATE.search(node.value):
                return node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [key, value]
    return None


def _kind(node) -> str:
    return {yaml.ScalarNode: "value", yaml.SequenceNode: "list", yaml.MappingNode: "mapping"}.get(type(node), "node")


def parse_yaml(text: str, file: str) -> tuple[ast.Document | None, list[Diagnostic]]:
    """Parse the YAML twin into a :class:`~eigraph.frontend.ast.Document`."""
    reader = _YamlReader(text, file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        half = _half_character(root)
        if half is not None:
            return None, [error("F016", "a quoted YAML string has an escape for half a character (a lone UTF-16 "
                                "surrogate such as \\ud800)", Span(file, half.start_mark.line + 1,
                                                                     half.start_mark.column + 1),
                                "write the character itself, or one \\U escape: \\U0001F9E0, not "
                                "\\ud83e\\udde0")]
        doc = reader.read(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [error("Y001", f"YAML syntax error: {problem}", span,
                            "check the indentation and the ':' after each key")]
    except yaml.YAMLError as exc:
        return None, [error("Y001", f"YAML error: {exc}", Span(file, 1, 1), "")]
    except RecursionError:
        return None, [error("Y006", "the YAML is nested too deeply", Span(file, 1, 1), "flatten the structure")]
    except _Stop as exc:
        return None, [error("Y006", str(exc), Span(file, 1, 1), "")]
    return doc, reader.problems


def _marks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(line, column), 1-based, of every character of text[start:end]."""
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    out = []
    for ch in text[start:end]:
        out.append((line, column))
        if ch == "\n":
            line, column = line + 1, 1
        else:
            column += 1
    return out


def _mapper(value: str, positions: list[tuple[int, int]]):
    """A function from (line, column) in the scalar's value to (line, column) in the file."""
    starts = [0]
    for k, ch in enumerate(value):
        if ch == "\n":
            starts.append(k + 1)

    def place(line: int, column: int) -> tuple[int, int]:
        index = starts[min(max(line, 1), len(starts)) - 1] + column - 1
        if 0 <= index < len(positions):
            return positions[index]
        last_line, last_column = positions[-1] if positions else (1, 1)
        return last_line, last_column + 1

    return place


def _quoted_mapper(text: str, node):
    """Positions of a quoted scalar's characters, following YAML's escapes and line folding."""
    double = node.style == '"'
    start, end = node.start_mark.index + 1, node.end_mark.index - 1
    raw, marks = text[start:end], _marks(text, start, end)
    out: list[tuple[int, int]] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if double and ch == "\\":
            nxt = raw[i + 1] if i + 1 < n else ""
            if nxt in "\r\n":  # an escaped line break joins the lines
                i += 2 + (nxt == "\r" and raw[i + 2:i + 3] == "\n")
                while i < n and raw[i] in " \t":
                    i += 1
                continue
            out.append(marks[i])
            i += {"x": 4, "u": 6, "U": 10}.get(nxt, 2)
            continue
        if not double and ch == "'" and raw[i + 1:i + 2] == "'":
            out.append(marks[i])
            i += 2
            continue
        if ch in " \t":
            j = i
            while j < n and raw[j] in " \t":
                j += 1
            if j < n and raw[j] in "\r\n":  # spaces before a line break are folded away
                i = j
                continue
            out.extend(marks[i:j])
            i = j
            continue
        if ch in "\r\n":
            j, breaks = i, 0
            while j < n and raw[j] in " \t\r\n":
                breaks += raw[j] == "\n"
                j += 1
            out.extend([marks[i]] * (1 if breaks <= 1 else breaks - 1))
            i = j
            continue
        out.append(marks[i])
        i += 1
    if len(out) != len(node.value):
        return None  # a case this mapping does not model: keep the plain offsets
    return _mapper(node.value, out)


def _folded_mapper(text: str, node):
    """Positions of a folded block scalar (>) whose lines share one indentation."""
    lines = text[node.start_mark.index:node.end_mark.index].split("\n")[1:]
    first_line = node.start_mark.line + 2
    content = [(k, line) for k, line in enumerate(lines) if line.strip()]
    if not content:
        return None
    indent = min(len(line) - len(line.lstrip(" ")) for _, line in content)
    out: list[tuple[int, int]] = []
    previous = None
    for k, line in content:
        if previous is not None:
            gap = k - previous - 1
            out.extend([(first_line + previous, len(lines[previous]) + 1)] * (1 if gap == 0 else gap))
        out.extend((first_line + k, indent + c + 1) for c in range(len(line) - indent))
        previous = k
    value = node.value.rstrip("\n")
    if len(out) != len(value):
        return None
    return _mapper(value, out)
