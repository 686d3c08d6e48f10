"""The README's "Layout" block matches the tree: every module of the top package, ``vuln/``,
``vuln/training/`` and ``brain/`` is named there, and every ``*.py`` it names exists.

(``vuln/scan/`` and ``vuln/datasets/`` are named as folders; their files are not listed.)
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "breachlab"
FOLDERS = [PKG, PKG / "vuln", PKG / "vuln" / "training", PKG / "brain"]


def layout_block() -> str:
    text = REPO.joinpath("README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_every_module_is_in_the_readme_layout() -> None:
    named = set(re.findall(r"[\w/]*?(\w+\.py)\b", layout_block()))
    missing = [str(p.relative_to(PKG)) for folder in FOLDERS for p in sorted(folder.glob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and p.name not in named]
    assert missing == [], f"README Layout does not name {missing}"


def test_every_name_in_the_readme_layout_exists() -> None:
    existing = {p.name for p in (REPO / "src").rglob("*.py")}
    existing |= {p.name for d in ("tests", "scripts", "benchmarks", "docs") for p in (REPO / d).rglob("*")}
    named = set(re.findall(r"(?<![\w-])([\w-]+\.(?:py|sh|md))\b", layout_block()))
    assert sorted(named - existing - {"README.md"}) == []
