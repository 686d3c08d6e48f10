"""The published tables of README.md and docs/benchmarks.md equal what scripts/docs_tables.py
computes from the committed result files, and a changed result changes its table."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("doc", ["README.md", "docs/benchmarks.md"])
def test_committed_tables_equal_the_generator(tables, doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert tables.MARKER.search(text), f"{doc} has no generated table"
    assert tables.render(text) == text, f"{doc} is out of date: run python scripts/docs_tables.py"


def test_every_table_is_published(tables) -> None:
    used = {m["name"] for doc in tables.DOCS for m in tables.MARKER.finditer(doc.read_text(encoding="utf-8"))}
    assert used == set(tables.TABLES)


def test_an_unknown_marker_is_an_error(tables) -> None:
    with pytest.raises(KeyError, match="no-such"):
        tables.render("<!-- table:no-such -->\nx\n<!-- /table:no-such -->\n")


def test_render_replaces_only_between_markers(tables) -> None:
    text = "before\n<!-- table:t -->\nold\n<!-- /table:t -->\nafter\n"
    assert tables.render(text, {"t": lambda: "new"}) == "before\n<!-- table:t -->\nnew\n<!-- /table:t -->\nafter\n"


def test_a_changed_prediction_changes_the_quickstart_table(tables, tmp_path: Path) -> None:
    copy = tmp_path / "quickstart"
    shutil.copytree(tables.QUICKSTART, copy)
    path = copy / "fine-tuned" / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    first = next(r for r in rows if r["mode"] == "logit" and r["label"] == 1 and r["source"] == "juliet")
    first["p_vulnerable"] = 0.0
    first["verdict"] = "SAFE"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert tables.quickstart_table(copy) != tables.quickstart_table()


def test_a_changed_report_changes_the_speed_table(tables, tmp_path: Path) -> None:
    name = "qwen-1.5b-lora.json"
    report = json.loads((tables.THROUGHPUT / name).read_text())
    report["results"][0]["summary"]["breachlab-graphs"]["samples_per_s"] = [1.0, 1.0]
    (tmp_path / name).write_text(json.dumps(report))
    changed = tables.speed_table(name, tmp_path)
    assert "| **breachlab-graphs** | 1.00 |" in changed and changed != tables.speed_table(name)


def test_check_reports_a_stale_doc_and_a_bad_marker(tables, tmp_path: Path, monkeypatch, capsys) -> None:
    doc = tmp_path / "doc.md"
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    monkeypatch.setattr(tables, "DOCS", (doc,))
    monkeypatch.setattr(tables, "TABLES", {"t": lambda: "new"})
    doc.write_text("<!-- table:t -->\nold\n<!-- /table:t -->\n")
    assert tables.main(["--check"]) == 1 and "out of date: doc.md" in capsys.readouterr().err
    assert tables.main([]) == 0 and "new" in doc.read_text() and tables.main(["--check"]) == 0
    doc.write_text("<!-- table:gone -->\n<!-- /table:gone -->\n")
    assert tables.main(["--check"]) == 2 and "gone" in capsys.readouterr().err
