"""tree-sitter extraction: exact spans and kinds on the fixture files."""

from __future__ import annotations

from pathlib import Path

from breachlab.vuln.scan.extract import extract_functions

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scan"

P = FIXTURES / "project"


def units(rel: str, lang: str) -> list[tuple]:
    return [(f.name, f.kind, f.start_line, f.end_line) for f in extract_functions((P / rel).read_bytes(), lang)]


def test_c_functions_knr_ifdef_and_macro() -> None:
    assert units("src/copy.c", "c") == [
        ("copy_name", "function", 5, 10),
        ("add", "function", 12, 15),
        ("legacy_sum", "knr", 17, 22),
        ("read_line", "function", 25, 29),  # both #ifdef branches are code someone ships
        ("read_line", "function", 31, 36),
        ("DEFINE_COPY", "macro", 39, 42),
    ]


def test_cpp_methods_templates_namespaces() -> None:
    assert units("cpp/parser.cpp", "cpp") == [
        ("net::Parser::length", "method", 8, 8),
        ("net::Parser::read", "method", 9, 12),
        ("net::clamp", "template", 17, 21),
        ("net_checksum", "function", 25, 30),
    ]


def test_header_inline_function() -> None:
    fns = extract_functions((P / "include/util.h").read_bytes(), "h")
    assert [(f.name, f.start_line, f.end_line, f.lang) for f in fns] == [("log_message", 5, 10, "c")]
    assert fns[0].code.splitlines()[0] == "static inline void log_message(const char *user)"


def test_cpp_header_detected_and_code_text_is_exact() -> None:
    src = b"#pragma once\nnamespace a {\nclass K {\n public:\n  int f() const { return 1; }\n};\n}\n"
    fns = extract_functions(src, "h")
    assert [(f.name, f.kind, f.start_line, f.lang) for f in fns] == [("a::K::f", "method", 5, "cpp")]
    assert fns[0].code == "  int f() const { return 1; }"


def test_recovers_after_broken_code() -> None:
    src = b"int broken( {\n\nint ok(void)\n{\n  return 0;\n}\n"
    names = [f.name for f in extract_functions(src, "c")]
    assert "ok" in names


def test_out_of_line_method_and_operator() -> None:
    src = b"int Foo::bar(int x) { return x; }\nFoo &Foo::operator=(const Foo &o) { return *this; }\nFoo::~Foo() {}\n"
    got = [(f.name, f.kind) for f in extract_functions(src, "cpp")]
    assert got == [("Foo::bar", "method"), ("Foo::operator=", "method"), ("Foo::~Foo", "method")]
