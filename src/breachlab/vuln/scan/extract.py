"""Function extraction with tree-sitter: every C/C++ function with its exact line span.

Why tree-sitter: it never runs the preprocessor or a compiler (nothing from the scanned
tree is built or executed), it recovers from errors (a function after a broken one is still
found) and it keeps both branches of an ``#ifdef`` — a function compiled only on one platform
is still code someone ships.

What counts as a unit the model judges:

* ``function`` — a C function or a C++ free function;
* ``method`` — a function defined inside a class/struct body or named ``A::f``;
* ``template`` — a function template (the span starts at ``template <…>``);
* ``knr`` — a K&R definition (parameter declarations between ``)`` and ``{``);
* ``macro`` — a function-like ``#define`` whose body is code (``{`` and ``;``), e.g. a
  macro that stamps out a function or a ``do { … } while (0)`` statement block.

Lines are 1-based and inclusive.  Names are qualified with enclosing namespaces and
classes (``ns::Parser::read``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

C_SUFFIXES = {".c"}
CPP_SUFFIXES = {".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".inl", ".tpp", ".cu"}
HEADER_SUFFIXES = {".h"}  # C or C++: decided by which grammar parses it with fewer errors
SOURCE_SUFFIXES = C_SUFFIXES | CPP_SUFFIXES | HEADER_SUFFIXES

_SCOPES = {"namespace_definition", "class_specifier", "struct_specifier", "union_specifier"}
_NAME_NODES = {"identifier", "field_identifier", "qualified_identifier", "destructor_name",
               "operator_name", "template_function", "operator_cast"}


@dataclass(frozen=True)
class Function:
    """One extracted unit: name, kind, 1-based inclusive lines and its source text."""

    name: str
    kind: str
    start_line: int
    end_line: int
    code: str
    lang: str

    @property
    def n_lines(self) -> int:
        return self.end_line - self.start_line + 1


def lang_for_suffix(suffix: str) -> str | None:
    s = suffix.lower()
    if s in C_SUFFIXES:
        return "c"
    if s in CPP_SUFFIXES:
        return "cpp"
    if s in HEADER_SUFFIXES:
        return "h"
    return None


@functools.lru_cache(maxsize=None)
def _language(lang: str) -> Any:
    import tree_sitter as ts

    if lang == "c":
        import tree_sitter_c as grammar
    else:
        import tree_sitter_cpp as grammar
    return ts.Language(grammar.language())


def _parse(source: bytes, lang: str) -> Any:
    import tree_sitter as ts

    # a parser per call: tree-sitter parsers are not safe to share across threads
    return ts.Parser(_language(lang)).parse(source)


def _count_errors(node: Any, limit: int = 10_000) -> int:
    n, stack = 0, [node]
    while stack and n < limit:
        cur = stack.pop()
        if cur.type == "ERROR" or cur.is_missing:
            n += 1
        if cur.has_error:
            stack.extend(cur.children)
    return n


def parse_tree(source: bytes, lang: str) -> tuple[Any, str]:
    """Parse ``source``; a ``.h`` header is tried as C, then as C++ if C shows errors."""
    if lang == "h":
        tree = _parse(source, "c")
        if not tree.root_node.has_error:
            return tree, "c"
        alt = _parse(source, "cpp")
        if _count_errors(alt.root_node) < _count_errors(tree.root_node):
            return alt, "cpp"
        return tree, "c"
    return _parse(source, lang), lang


def _text(node: Any) -> str:
    return node.text.decode("utf-8", "replace")


def _declarator_name(node: Any) -> str | None:
    """Name of the function a ``function_definition`` defines (follows pointer/ref declarators)."""
    decl = node.child_by_field_name("declarator")
    for _ in range(16):
        if decl is None:
            return None
        if decl.type in _NAME_NODES:
            return " ".join(_text(decl).split())
        if decl.type == "function_declarator":
            inner = decl.child_by_field_name("declarator")
            if inner is not None and inner.type in _NAME_NODES:
                return " ".join(_text(inner).split())
            decl = inner
            continue
        nxt = decl.child_by_field_name("declarator")
        if nxt is None:  # parenthesized_declarator, attributed_declarator …: take the first named child
            nxt = next((c for c in decl.named_children if c.type not in ("parameter_list", "type_qualifier")), None)
        decl = nxt
    return None


def _scope_name(node: Any) -> str | None:
    name = node.child_by_field_name("name")
    return _text(name) if name is not None else None


def _is_knr(node: Any) -> bool:
    return any(c.type == "declaration" for c in node.children)


def _macro_unit(node: Any, source: bytes) -> tuple[str, int, int] | None:
    """A function-like macro whose body is code → (name, start_line, end_line)."""
    name = node.child_by_field_name("name")
    value = node.child_by_field_name("value")
    if name is None or value is None:
        return None
    body = source[value.start_byte:value.end_byte]
    if b"{" not in body or b";" not in body:
        return None
    end = value.end_point[0] + 1
    return _text(name), node.start_point[0] + 1, end


def _walk(root: Any, scope: list[str], source: bytes, out: list[tuple[Any, str, str, int, int]]) -> None:
    """Collect units below ``root`` with an explicit stack: deeply nested code cannot hit
    Python's recursion limit (callers sort ``out`` by line, so visiting order is free)."""
    stack: list[tuple[Any, list[str]]] = [(root, scope)]
    while stack:
        node, scope = stack.pop()
        for child in node.children:
            t = child.type
            if t == "function_definition":
                name = _declarator_name(child) or "<anonymous>"
                in_class = bool(scope) and scope[-1].startswith("class:")
                kind = "knr" if _is_knr(child) else ("method" if in_class or "::" in name else "function")
                out.append((child, _qualify(scope, name), kind, child.start_point[0] + 1, child.end_point[0] + 1))
            elif t == "template_declaration":
                inner = next((c for c in child.named_children if c.type == "function_definition"), None)
                if inner is not None:
                    name = _declarator_name(inner) or "<anonymous>"
                    out.append((child, _qualify(scope, name), "template", child.start_point[0] + 1,
                                inner.end_point[0] + 1))
                else:
                    stack.append((child, scope))
            elif t == "preproc_function_def":
                unit = _macro_unit(child, source)
                if unit is not None:
                    out.append((child, unit[0], "macro", unit[1], unit[2]))
            elif t in _SCOPES:
                nm = _scope_name(child)
                tag = ("ns:" if t == "namespace_definition" else "class:") + (nm or "<anonymous>")
                stack.append((child, [*scope, tag]))
            elif child.child_count and t not in ("compound_statement", "string_literal", "comment"):
                stack.append((child, scope))


def _qualify(scope: list[str], name: str) -> str:
    parts = [s.split(":", 1)[1] for s in scope if not s.endswith("<anonymous>")]
    return "::".join([*parts, name]) if parts else name


def extract_functions(source: bytes, lang: str) -> list[Function]:
    """All function-like units in ``source`` (bytes, any encoding tree-sitter can read).

    Args:
        source: the file's bytes.
        lang: ``c``, ``cpp`` or ``h`` (header: grammar chosen by parse quality).

    Returns:
        Units in file order; a unit's ``code`` is the exact text of its lines span.
    """
    tree, used = parse_tree(source, lang)
    raw: list[tuple[Any, str, str, int, int]] = []
    _walk(tree.root_node, [], source, raw)
    lines = source.split(b"\n")
    out = []
    for _node, name, kind, start, end in sorted(raw, key=lambda r: (r[3], r[4])):
        code = b"\n".join(lines[start - 1:end]).decode("utf-8", "replace")
        out.append(Function(name=name, kind=kind, start_line=start, end_line=end, code=code, lang=used))
    return out

