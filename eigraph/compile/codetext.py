"""User text inside generated Python: how it is made safe, and the check that it stayed text.

Generated kernels quote the user's names (populations, projections, rules, the model file's
name) in comments and in the module docstring, so a reader can find the model line behind each
loop. None of that text may ever become code. Three layers make sure of it:

* :func:`visible` escapes every character that is not printable (control characters, NUL, the
  line breaks Python or ``str.splitlines`` know: CR, LF, VT, FF, U+001C-U+001E, U+0085, U+2028,
  U+2029, and invisible format characters such as bidi overrides) as ``\\xNN`` / ``\\uNNNN``.
  A comment whose text has no line break cannot end early, so ``#`` comments need nothing
  else. The kernel writer passes every line it writes through it (``numba_gen._Writer``).
* :func:`docstring_text` also escapes backslashes and double quotes, for text inside a
  ``\"\"\"`` docstring: ``\"\"\"`` in a file name cannot close it.
* :func:`ident_part` derives an identifier fragment from a name: the name itself when it is
  ASCII letters, digits and ``_`` (every name the language and the YAML front end accept),
  otherwise a mangled, hashed form. Names are never pasted raw into code.

:func:`verify_kernel_source` parses a generated module and checks its top level is only the
docstring, imports, constant assignments and ``@njit`` functions: the compile cache refuses to
write or import anything else. (No user text is placed on the first two lines either, where
Python would read a ``coding:`` comment as the file's encoding.)
"""

from __future__ import annotations

import ast
import hashlib
import re

_IDENT_PART = re.compile(r"[A-Za-z0-9_]+\Z")


class GeneratedCodeError(Exception):
    """Generated source failed its own check: a bug in eigraph, never a property of a model."""


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every non-printable character (line breaks included) written as an escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def comment_text(text) -> str:
    """User text for a ``#`` comment: one line, only printable characters; backslashes doubled
    so that an escape written by :func:`visible` cannot be confused with one in the name."""
    return visible(str(text).replace("\\", "\\\\"))


def docstring_text(text) -> str:
    """User text for the inside of a ``\"\"\"`` docstring: no quote or backslash can end or bend it."""
    return visible(str(text).replace("\\", "\\\\").replace('"', '\\"'))


def ident_part(name: str) -> str:
    """A fragment of a Python identifier derived from ``name`` (appended to a fixed prefix).

    Names of the language are already ``[A-Za-z_][A-Za-z0-9_]*`` and come back unchanged; any
    other text (only reachable through the Python API) becomes ``Q`` and a hash of it: nothing
    of the text itself, and two different names do not meet in one identifier.
    """
    name = str(name)
    if _IDENT_PART.match(name) and name.isascii():
        return name
    return f"Q{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


_ALLOWED_IMPORTS = {"numpy", "numba", "eigraph.backends.simd"}


def verify_kernel_source(source: str, where: str = "<kernel>") -> None:
    """Raise :class:`GeneratedCodeError` unless ``source`` is a well-formed kernel module.

    Its top level may hold only: the docstring, imports of numpy / numba / eigraph's SIMD loop,
    assignments of names, and function definitions decorated with ``@njit(...)``. A name that
    escaped its comment or docstring would show up as some other statement (a call, say), or
    as a syntax error; both are refused here, before the module is written or imported.
    """
    where = visible(where)
    try:
        tree = ast.parse(source, filename="<generated kernel>")
    except (SyntaxError, ValueError) as exc:
        raise GeneratedCodeError(f"generated kernel {where} does not parse: {exc}") from None
    if not source.replace("\n", "").isprintable():
        raise GeneratedCodeError(f"generated kernel {where} holds a non-printable character")
    for k, node in enumerate(tree.body):
        if k == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.Import) and all(a.name in _ALLOWED_IMPORTS for a in node.names):
            continue
        if isinstance(node, ast.ImportFrom) and node.module in _ALLOWED_IMPORTS and node.level == 0:
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            continue
        if isinstance(node, ast.FunctionDef) and node.decorator_list and all(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "njit"
                for d in node.decorator_list):
            continue
        raise GeneratedCodeError(f"generated kernel {where}: unexpected top-level statement on line "
                                 f"{node.lineno}: {type(node).__name__}")
