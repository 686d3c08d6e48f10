from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "breachlab.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_help_lists_both_parts_without_heavy_imports() -> None:
    res = _run("--help")
    assert res.returncode == 0
    for word in ("vuln", "brain", "quickstart"):
        assert word in res.stdout
    # heavy libraries must not load for --help
    probe = subprocess.run([sys.executable, "-c", "import sys, breachlab.cli; "
                            "print(sorted(m for m in ('torch','transformers','llama_cpp','nilearn','matplotlib') "
                            "if m in sys.modules))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "[]", probe.stdout


def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    res = _run("vuln", "eval", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert "error:" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("modes: [logit]\nthreshhold: 0.3\n")
    res = _run("vuln", "eval", "--config", str(bad), "--data", "x")
    assert res.returncode == 2 and "threshhold" in res.stderr


def test_config_show_lists_keys() -> None:
    res = _run("vuln", "config", "eval")
    assert res.returncode == 0 and "threshold" in res.stdout
    res = _run("vuln", "config", "train")
    assert res.returncode == 0 and "cuda_graphs" in res.stdout and "packing" in res.stdout
    flat = " ".join(res.stdout.replace("│", " ").split())
    assert "(e.g. [juliet])" in flat  # help text is printed as text, not read as rich markup


def test_a_bad_argument_is_one_clean_line_not_a_traceback() -> None:
    res = _run("vuln", "config", "nope")
    assert res.returncode == 2 and "choose one of" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_errors_are_one_unwrapped_line_even_into_a_file(tmp_path: Path) -> None:
    """rich wraps at 80 columns when stderr is not a terminal; the error line must not."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "missing-evaluation-data.jsonl"
    res = _run("vuln", "eval", "--data", str(deep), "--out", str(tmp_path / "r"))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and len(lines[0]) > 120, res.stderr
    assert lines[0].startswith("error: ") and str(deep) in lines[0]
    res = _run("vuln", "eval", "--no-such-option")  # a usage error: one line too, and where the help is
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "--no-such-option" in lines[0] and "--help" in lines[0], \
        res.stderr


def test_a_multi_line_message_is_folded_into_one() -> None:
    import io

    from breachlab.errors import say_error

    buf = io.StringIO()
    say_error("converter failed:\n  line one\n\n  line two", buf)
    assert buf.getvalue() == "error: converter failed: line one line two\n"


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml")), ids=str)
def test_every_shipped_yaml_loads(path: Path) -> None:
    """Each YAML under configs/ starts with the command that uses it and loads into its config class."""
    from breachlab.config_registry import config_class_for

    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# breachlab "), f"{path} must start with the command that uses it"
    cls = config_class_for(path)
    from breachlab.config import load

    load(cls, path)


def test_typer_exit_codes_survive_the_error_wrapper() -> None:
    import typer

    from breachlab.errors import run_cli

    probe = typer.Typer()

    @probe.command()
    def fail() -> None:
        raise typer.Exit(1)

    @probe.command()
    def ok() -> None:
        pass

    import sys as _sys

    old = _sys.argv
    try:
        _sys.argv = ["probe", "fail"]
        assert run_cli(probe) == 1
        _sys.argv = ["probe", "ok"]
        assert run_cli(probe) == 0
    finally:
        _sys.argv = old
