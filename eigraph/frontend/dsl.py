"""The ``.ei`` front end: lark (LALR) parses the text; a transformer builds the source tree.

Syntax errors become diagnostics that say what was expected where. Nothing here evaluates the
user's text: expressions become :mod:`eigraph.expr.ast` nodes.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from eigraph.diagnostics import Diagnostic, Span, error
from eigraph.expr import ast as ex
from eigraph.frontend import ast

MAX_NESTING = 64  # brackets inside brackets
MAX_EXPRESSION_DEPTH = 200  # operators inside operators
MAX_AREA_DEPTH = 16

_CONTINUATION = {",", "=", "->", ":", "+", "-", "*", "/", "^", "("}
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}

_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a "string"',
    "_NL": "a new line",
    "$END": "the end of the file",
}


def grammar_text() -> str:
    """The grammar shipped as ``eigraph.grammar``; from a source checkout, ``grammar/`` beside the package."""
    try:
        return resources.files("eigraph.grammar").joinpath("eigraph.lark").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parents[2] / "grammar" / "eigraph.lark").read_text(encoding="utf-8")


class _Nesting(Exception):
    def __init__(self, token: Token, message: str, hint: str):
        self.token, self.message, self.hint = token, message, hint


class _PostLexer:
    """Drops newlines where a statement cannot end, and limits bracket nesting."""

    always_accept = ("_NL",)

    def __init__(self):
        self.open_braces: list[Token] = []

    def process(self, stream):
        self.open_braces = []
        brackets: list[Token] = []
        previous = None
        for token in stream:
            value = token.value if token.type != "STRING" else '"'
            if token.type == "_NL":
                if brackets or (previous is not None and previous.value in _CONTINUATION and previous.type != "STRING"):
                    continue
            elif value in _OPEN and token.type != "STRING":
                stack = self.open_braces if value == "{" else brackets
                stack.append(token)
                if len(brackets) + len(self.open_braces) > MAX_NESTING:
                    raise _Nesting(token, f"brackets nested more than {MAX_NESTING} deep",
                                   "split the expression, or close the brackets you opened")
            elif value in _CLOSE and token.type != "STRING":
                stack = self.open_braces if value == "}" else brackets
                if stack:
                    stack.pop()
            previous = token
            yield token


@lru_cache(maxsize=1)
def _parser() -> tuple[Lark, _PostLexer]:
    post = _PostLexer()
    parser = Lark(
        grammar_text(),
        parser="lalr",
        start=["start", "expr", "rule_body"],
        propagate_positions=False,
        maybe_placeholders=True,
        postlex=post,
    )
    return parser, post


def _shift(line: int, column: int, offsets: tuple[int, int, int]) -> tuple[int, int]:
    """Place (line, column) of a piece of text inside its file.

    ``offsets`` is (line offset, column offset of the first line, column offset of later lines):
    a YAML plain scalar shifts only its first line, a block scalar every line by its indent.
    """
    if callable(offsets):  # a YAML scalar with folding or escapes maps each character itself
        return offsets(line, column)
    line_offset, first, rest = offsets
    return line + line_offset, column + (first if line == 1 else rest)


def _tok_span(file: str, token: Token, offsets: tuple[int, int, int] = (0, 0, 0)) -> Span:
    line, col = _shift(token.line, token.column, offsets)
    end_line, end_col = _shift(token.end_line or token.line, token.end_column or token.column + len(token), offsets)
    return Span(file, line, col, end_line, end_col)


class _Build(Transformer_NonRecursive):
    """Tree -> source tree. Spans are shifted by the offsets when the text is part of a YAML file."""

    def __init__(self, file: str, offsets: tuple[int, int, int] = (0, 0, 0)):
        super().__init__()
        self.file = file
        self.offsets = offsets
        self.problems: list[Diagnostic] = []

    # spans: from tokens (lark's propagate_positions doubles the parse time) ---------------------
    def _tspan(self, token: Token) -> Span:
        return _tok_span(self.file, token, self.offsets)

    def _span_of(self, item) -> Span | None:
        if isinstance(item, Token):
            return self._tspan(item)
        if isinstance(item, tuple):  # a dotted name: (parts, span)
            return item[1]
        if isinstance(item, ex.Keyword):
            return _merge(item.span, item.value.span)
        return getattr(item, "span", None)

    def _between(self, first, last) -> Span | None:
        return _merge(self._span_of(first), self._span_of(last))

    # expressions -----------------------------------------------------------------------------
    def number(self, children):
        (tok,) = children
        return ex.Number(float(tok), None, text=str(tok), span=self._tspan(tok))

    def quantity(self, children):
        tok, unit = children
        return ex.Number(float(tok), str(unit), text=str(tok), unit_span=self._tspan(unit),
                         span=self._between(tok, unit))

    def dotted(self, children):
        return (tuple(str(c) for c in children), self._between(children[0], children[-1]))

    def name(self, children):
        ((parts, span),) = children
        return ex.Name(parts, span=span)

    def phase_name(self, children):
        (parts, span), _at, phase = children
        return ex.Name(parts, phase=str(phase), span=_merge(span, self._tspan(phase)))

    def string(self, children):
        (tok,) = children
        return ex.String(str(tok)[1:-1], span=self._tspan(tok))

    def list(self, children):
        items = tuple(c for c in children[1:-1] if c is not None and not isinstance(c, Token))
        return ex.ListExpr(items, span=self._between(children[0], children[-1]))

    def atom(self, children):  # "(" expr ")": the brackets only group
        return children[1]

    def kwarg(self, children):
        key, value = children
        return ex.Keyword(str(key), value, span=self._tspan(key))

    def arglist(self, children):
        return children

    def call(self, children):
        func, _open, arglist, close = children
        args, kwargs = [], []
        for item in arglist or []:
            if isinstance(item, ex.Keyword):
                kwargs.append(item)
            else:
                if kwargs:
                    self.problems.append(error(
                        "S002", f"positional argument after a keyword argument in '{func}(...)'",
                        item.span, "write positional arguments first, then key = value ones"))
                args.append(item)
        return ex.Call(str(func), tuple(args), tuple(kwargs), func_span=self._tspan(func),
                       span=self._between(func, close))

    def _binop(op):
        def build(self, children):
            left, right = children
            return ex.BinOp(op, left, right, span=self._between(left, right))

        return build

    add, sub, mul, div, pow = _binop("+"), _binop("-"), _binop("*"), _binop("/"), _binop("^")
    del _binop

    def neg(self, children):
        sign, operand = children
        return ex.Neg(operand, span=self._between(sign, operand))

    def pos(self, children):
        return children[1]

    # declarations ----------------------------------------------------------------------------
    def assign(self, children):
        key, value = children
        return ast.Setting(str(key), value, span=self._tspan(key))

    def body(self, children):
        return [c for c in children if c is not None]

    def network(self, children):
        name, settings = children
        return ast.NetworkDecl(str(name), settings, span=self._tspan(name))

    def celltype(self, children):
        name, sign, role, settings = children
        return ast.CellTypeDecl(
            str(name), str(sign), str(role) if role is not None else None, settings or [],
            span=self._tspan(name), sign_span=self._tspan(sign),
            role_span=self._tspan(role) if role is not None else None)

    def population(self, children):
        name, celltype, arglist, settings = children
        arglist = arglist or []
        positional = [a for a in arglist if not isinstance(a, ex.Keyword)]
        keywords = [ast.Setting(k.name, k.value, span=k.span) for k in arglist if isinstance(k, ex.Keyword)]
        span = self._tspan(name)
        if len(positional) != 1:
            at = positional[1].span if len(positional) > 1 else self._tspan(celltype)
            self.problems.append(error(
                "S003", f"population '{name}' needs exactly one size in '{celltype}(...)', got {len(positional)}",
                at, f"write 'population {name} : {celltype}(SIZE, key = value, ...)'"))
        size = positional[0] if positional else ex.Number(1.0, span=span)
        return ast.PopulationDecl(str(name), str(celltype), size, keywords + (settings or []),
                                  span=span, celltype_span=self._tspan(celltype))

    def projection(self, children):
        (source, source_span), (target, target_span), connectivity, *rest = children
        settings = []
        for item in rest:
            if isinstance(item, ex.Keyword):
                settings.append(ast.Setting(item.name, item.value, span=item.span))
            else:
                self.problems.append(error(
                    "S004", "a projection's options are written 'key = value'", item.span,
                    "for example: 'E -> I : dense, init = halfnormal(0.1), delay = 2 ms'"))
        return ast.ProjectionDecl(".".join(source), ".".join(target), connectivity, settings,
                                  span=self._between(children[0], children[-1]), source_span=source_span,
                                  target_span=target_span)

    def run(self, children):
        keyword, settings = children
        return ast.RunDecl(settings, span=self._tspan(keyword))

    def phase(self, children):
        name, settings = children
        return ast.PhaseDecl(str(name), settings or [], span=self._tspan(name))

    def param(self, children):
        name, default = children
        return ast.Param(str(name), default, span=self._tspan(name))

    def timing(self, children):
        return children[0]

    def let(self, children):
        target, value = children
        return ast.Statement("let", str(target), value, span=self._tspan(target))

    def ode(self, children):
        target, value, annotation = children
        return ast.Statement("ode", str(target), value, shared=annotation is not None and str(annotation) == "shared",
                             span=self._tspan(target),
                             annotation=str(annotation) if annotation is not None else None,
                             annotation_span=self._tspan(annotation) if annotation is not None else None)

    def initial(self, children):
        target, at, value = children
        return ast.Statement("init", str(target), value, at=at, span=self._tspan(target))

    def rule_body(self, children):
        return [c for c in children if c is not None]

    def rule(self, children):
        name, *rest = children
        body = rest[-1]
        timing = rest[-2]
        params = [p for p in rest[:-2] if p is not None]
        return ast.RuleDecl(str(name), params, str(timing) if timing is not None else None, body,
                            span=self._tspan(name), timing_span=self._tspan(timing) if timing is not None else None)

    def area(self, children):
        name, *items = children
        name_span = self._tspan(name)
        flat: list = [ast.AreaDecl(str(name), span=name_span)]
        for item in items:
            if item is None:
                continue
            for inner in item if isinstance(item, list) else [item]:
                if isinstance(inner, ast.PopulationDecl):
                    inner.name = f"{name}.{inner.name}"
                    inner.area = f"{name}.{inner.area}" if inner.area else str(name)
                elif isinstance(inner, ast.ProjectionDecl):
                    inner.area = f"{name}.{inner.area}" if inner.area else str(name)
                elif isinstance(inner, ast.AreaDecl):
                    inner.parent = f"{name}.{inner.parent}" if inner.parent else str(name)
                    if (inner.parent.count(".") + 1) >= MAX_AREA_DEPTH:
                        self.problems.append(error("S005", f"areas nested more than {MAX_AREA_DEPTH} deep",
                                                   inner.span, "flatten the areas"))
                        continue
                else:
                    kind = type(inner).__name__.replace("Decl", "").lower()
                    self.problems.append(error(
                        "S006", f"a {kind} cannot be declared inside area '{name}'", getattr(inner, "span", name_span),
                        "only populations, projections and areas go inside an area; declare it at the top level"))
                    continue
                flat.append(inner)
        return flat

    def start(self, children):
        return children


def _merge(first: Span | None, last: Span | None) -> Span | None:
    if first is None or last is None:
        return first or last
    return Span(first.file, first.line, first.column, last.end_line, last.end_column)


def _expression_depth(expr: ex.Expr) -> int:
    depth = {}
    order = list(ex.walk(expr))
    for node in reversed(order):
        depth[id(node)] = 1 + max((depth[id(c)] for c in node.children()), default=0)
    return depth[id(expr)]


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "_NL":
        return "end of line"
    return f"'{token.value}'"


def _expected_words(expected) -> str:
    words = []
    for name in sorted(expected):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
        else:
            words.append(_literal(name))
    words = sorted(set(words))
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words)


_LITERALS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "SEMICOLON": "';'", "EQUAL": "'='", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "QUOTE": "\"'\"", "DOT": "'.'",
}


def _literal(terminal: str) -> str:
    if terminal in _LITERALS:
        return _LITERALS[terminal]
    try:
        pattern = _parser()[0].get_terminal(terminal).pattern
        return f"'{pattern.value}'"
    except (KeyError, AttributeError):
        return terminal.lower()


def _syntax_hint(exc: UnexpectedInput, post: _PostLexer, text: str) -> str:
    expected = set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())
    token = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END"):
        if post.open_braces:
            brace = post.open_braces[-1]
            return f"the '{{' on line {brace.line} is never closed: add a '}}'"
        return "the file ends in the middle of a declaration"
    if token is not None and token.value == "}" and not post.open_braces:
        return "this '}' closes no block: remove it"
    if token is not None and token.value == "'":
        return "strings use double quotes; a quote after a name marks a trace in a rule: theta' = ..."
    keywords = {"network", "celltype", "population", "area", "rule", "run", "phase"}
    if token is not None and (token.type == "NAME" or token.value in keywords) and "_NL" in expected:
        return "put one statement per line, or separate statements with ';'"
    if expected == {"EQUAL"} or ("EQUAL" in expected and len(expected) <= 2):
        return "settings are written 'key = value'"
    if token is not None and token.type == "NUMBER" and "NAME" in expected:
        return "names start with a letter or '_'"
    return "see docs/language.md for the form of each declaration"


def syntax_diagnostic(exc: UnexpectedInput, file: str, text: str, post: _PostLexer,
                      offsets: tuple[int, int, int] = (0, 0, 0)) -> Diagnostic:
    line = (exc.line if isinstance(exc.line, int) and exc.line > 0 else text.count("\n") + 1)
    column = exc.column if isinstance(exc.column, int) and exc.column > 0 else 1
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(text) else "?"
        shown = repr(char)[1:-1] if not char.isprintable() else char
        if char == "'":
            message = "unexpected \"'\": a quote marks a trace (theta' = ...) and only follows a name in a rule"
        else:
            message = f"unexpected character '{shown}'"
        hint = ("strings use double quotes" if char == "'" else
                "names are letters, digits and '_'; comments start with '#'")
    else:
        token = getattr(exc, "token", None)
        what = _describe(token) if token is not None else "the end of the file"
        if isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END"):
            lines = text.rstrip().splitlines() or [""]
            line, column = len(lines), max(1, len(lines[-1]) + 1)
            what = "end of file"
        message = f"unexpected {what}"
        expected = getattr(exc, "expected", None)
        if expected:
            message += f"; expected {_expected_words(expected)}"
        hint = _syntax_hint(exc, post, text)
    line, column = _shift(line, column, offsets)
    return error("S001", f"syntax error: {message}", Span(file, line, column), hint)


def parse(text: str, file: str, start: str = "start", offsets: tuple[int, int, int] = (0, 0, 0)):
    """Parse ``text`` from ``start`` (``start``, ``expr`` or ``rule_body``).

    Returns ``(result, diagnostics)``; ``result`` is ``None`` when the text does not parse.
    ``offsets`` place the text inside a larger file (YAML scalars, see :func:`_shift`).
    """
    parser, post = _parser()
    try:
        tree = parser.parse(text, start=start)
    except _Nesting as exc:
        span = _tok_span(file, exc.token, offsets)
        return None, [error("S007", exc.message, span, exc.hint)]
    except UnexpectedInput as exc:
        return None, [syntax_diagnostic(exc, file, text, post, offsets)]
    builder = _Build(file, offsets)
    try:
        result = builder.transform(tree)
    except VisitError as exc:  # only our own bugs land here; keep them visible as a diagnostic
        return None, [error("S999", f"internal error while reading the model: {exc.orig_exc!r}",
                            Span(file, 1, 1), "please report this with the model file")]
    problems = list(builder.problems)
    problems += _depth_problems(result, file)
    return result, problems


def _depth_problems(result, file) -> list[Diagnostic]:
    found = []
    for expr in _top_expressions(result):
        if _expression_depth(expr) > MAX_EXPRESSION_DEPTH:
            found.append(error("S008", f"expression nested more than {MAX_EXPRESSION_DEPTH} operators deep",
                               expr.span, "split it into temporaries (in a rule) or simplify it"))
    return found


def _top_expressions(result):
    if isinstance(result, ex.Expr):
        yield result
        return
    items = result if isinstance(result, list) else [result]
    stack = list(items)
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, ex.Expr):
            yield item
        elif isinstance(item, ast.Setting):
            yield item.value
        elif isinstance(item, ast.Statement):
            yield item.value
        elif isinstance(item, (ast.NetworkDecl, ast.CellTypeDecl, ast.RunDecl, ast.PhaseDecl)):
            stack.extend(item.settings)
        elif isinstance(item, ast.PopulationDecl):
            stack.append(item.size)
            stack.extend(item.settings)
        elif isinstance(item, ast.ProjectionDecl):
            stack.append(item.connectivity)
            stack.extend(item.settings)
        elif isinstance(item, ast.RuleDecl):
            stack.extend(p.default for p in item.params if p.default is not None)
            stack.extend(item.body)


def parse_document(text: str, file: str) -> tuple[ast.Document | None, list[Diagnostic]]:
    """Parse a whole ``.ei`` file into a :class:`~eigraph.frontend.ast.Document`."""
    items, problems = parse(text, file, "start")
    if items is None:
        return None, problems
    doc = ast.Document(file)
    stack = list(reversed(items))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, ast.NetworkDecl):
            doc.network.append(item)
        elif isinstance(item, ast.CellTypeDecl):
            doc.celltypes.append(item)
        elif isinstance(item, ast.PopulationDecl):
            doc.populations.append(item)
        elif isinstance(item, ast.ProjectionDecl):
            doc.projections.append(item)
        elif isinstance(item, ast.RuleDecl):
            doc.rules.append(item)
        elif isinstance(item, ast.RunDecl):
            doc.runs.append(item)
        elif isinstance(item, ast.AreaDecl):
            doc.areas.append(item)
        elif isinstance(item, ast.PhaseDecl):
            doc.phases.append(item)
    return doc, problems
