"""The README is the front door: its two commands are there, verbatim, and the test command is
the one CI runs; no session narrative in the README or in ``src/`` (help texts, docstrings)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# The before-stop hook's pattern (shared/hooks/before-stop): a lab notebook's way of dating a number.
NARRATIVE = re.compile(r"(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
                       r"this|last|previous|next) session", re.I)


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def _ci_test_command() -> str:
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    found = [ln for ln in lines if "pytest" in ln and not ln.startswith(("#", "echo"))]
    assert len(found) == 1, f".ci/run should run the test command on one line, found {found}"
    return found[0]


def test_readme_shows_the_quickstart_command() -> None:
    blocks = _bash_blocks(README.read_text())
    quick = [b for b in blocks if b.endswith("breachlab quickstart")]
    assert quick == ['python3.11 -m venv .venv && . .venv/bin/activate && '
                     'pip install -c constraints.txt -e ".[vuln,cpu]" && breachlab quickstart']


def test_readme_test_command_is_what_ci_runs() -> None:
    blocks = _bash_blocks(README.read_text())
    assert _ci_test_command() in blocks


def test_ci_command_parser_finds_a_changed_command(tmp_path: Path) -> None:
    """The comparison can fail: a README whose test command differs from .ci/run's is caught."""
    text = README.read_text().replace('".[all,cpu,test]"', '".[all,cpu]"')
    assert _ci_test_command() not in _bash_blocks(text)


def test_readme_images_exist() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    assert images, "the README shows what a user sees"
    assert [p for p in images if not (REPO / p).is_file()] == []


def _narrative(paths: list[Path], root: Path = REPO) -> list[str]:
    hits = []
    for path in paths:
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if NARRATIVE.search(line):
                hits.append(f"{path.relative_to(root)}:{i}: {line.strip()[:100]}")
    return hits


def _product_files() -> list[Path]:
    src = [p for p in (REPO / "src").rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".json", ".yaml")
           and "egg-info" not in p.parts[-2]]
    return [README, *sorted(src)]


def test_no_session_narrative_in_readme_or_src() -> None:
    assert _narrative(_product_files()) == []


def test_the_narrative_check_can_fail(tmp_path: Path) -> None:
    planted = tmp_path / "help.py"
    planted.write_text('HELP = "2.3% slower (twelfth session)"\n')
    assert _narrative([planted], root=tmp_path) == ['help.py:1: HELP = "2.3% slower (twelfth session)"']
