from __future__ import annotations

import json
from pathlib import Path

import pytest

from breachlab.rundir import write_jsonl
from breachlab.vuln.eval import evaluate
from breachlab.vuln.eval.evaluate import EvalConfig
from breachlab.vuln.eval.predict import strip_template_text
from breachlab.vuln.prompts import parse_verdict
from breachlab.vuln.sample import Sample
from tests.vuln.tiny import make_model_dir

VULN = "void f(char *s) { char b[8]; strcpy(b, s); }"
FIXED = "void f(char *s) { char b[8]; strncpy(b, s, sizeof b - 1); b[7] = 0; }"


def _samples(n_pairs: int = 3) -> list[Sample]:
    out = []
    for i in range(n_pairs):
        out.append(Sample(f"p{i}-v", VULN + f"/*{i}*/", 1, "CWE-121", "sven", f"p{i}", pair_id=f"p{i}"))
        out.append(Sample(f"p{i}-f", FIXED + f"/*{i}*/", 0, "CWE-121", "sven", f"p{i}", pair_id=f"p{i}"))
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def test_eval_writes_recomputable_predictions_metrics_and_report(tmp_path: Path, tiny_dir: Path) -> None:
    data = tmp_path / "test.jsonl"
    write_jsonl(data, (s.to_dict() for s in _samples()))
    cfg = EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", max_new_tokens=4, n_boot=50)
    run = evaluate.run(cfg, out=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["mode"] for r in rows} == {"logit", "generate"}
    logit = [r for r in rows if r["mode"] == "logit"]
    assert all(0.0 <= r["p_vulnerable"] <= 1.0 for r in logit)
    assert all(r["verdict"] == ("VULNERABLE" if r["p_vulnerable"] >= 0.5 else "SAFE") for r in logit)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"logit", "generate"} and metrics["logit"]["counts"]["n"] == 6
    assert metrics["logit"]["paired"]["n_pairs"] == 3
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "finished" and str(data) in m["inputs"]
    assert not (run / "predictions.partial.jsonl").exists()
    # recomputable: the metrics come back, to the digit, from predictions.jsonl alone
    from breachlab.vuln.eval.rows import split_by_mode
    from breachlab.vuln.eval.summary import summarize

    recomputed = {mode: summarize(mode_rows, threshold=cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed)
                  for mode, mode_rows in split_by_mode(rows).items()}
    assert json.loads(json.dumps(recomputed)) == metrics
    # and they are not constants: flipping one logit verdict's label changes the confusion counts
    flipped = [dict(r, label=1 - r["label"]) if i == 0 else r for i, r in enumerate(logit)]
    assert summarize(flipped, n_boot=0)["confusion"] != metrics["logit"]["confusion"]


def test_limit_keeps_class_balance() -> None:
    s = _samples(5)
    picked = evaluate.balanced_limit(s, 4)
    assert sorted(x.label for x in picked) == [0, 0, 1, 1]


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    from breachlab.errors import UserError

    with pytest.raises(UserError, match="not found"):
        evaluate.run(EvalConfig(data=str(tmp_path / "nope")), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_echoed_template_is_not_read_as_a_verdict() -> None:
    echoed = "Is this C function VULNERABLE or SAFE? Explain your reasoning.\n\n```c\n" + VULN + "\n```"
    assert parse_verdict(echoed) == "VULNERABLE"  # naive reading would count the echo
    assert parse_verdict(strip_template_text(echoed, VULN)) is None


def test_sources_filter_keeps_only_that_domain_and_names_what_is_there(tmp_path: Path, tiny_dir: Path) -> None:
    from breachlab.errors import UserError

    juliet = [Sample(f"j{i}", VULN + f"/*j{i}*/", i % 2, "CWE-121", "juliet", f"g{i}") for i in range(4)]
    data = tmp_path / "test.jsonl"
    write_jsonl(data, (s.to_dict() for s in _samples(2) + juliet))
    cfg = EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", modes=["logit"],
                     sources=["juliet"], n_boot=20)
    run = evaluate.run(cfg, out=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["j0", "j1", "j2", "j3"]
    with pytest.raises(UserError, match="holds: juliet, sven"):
        evaluate.run(EvalConfig(data=str(data), sources=["diversevul"]), out=tmp_path / "r2")


def test_adapter_config_takes_one_a_comma_list_or_a_list(tmp_path: Path) -> None:
    from breachlab import config as cfgmod
    from breachlab.config import ConfigError

    assert EvalConfig(adapter=tmp_path).adapter == str(tmp_path)
    assert EvalConfig(adapter=("a", tmp_path)).adapter == ["a", str(tmp_path)]
    assert cfgmod.load(EvalConfig, None, {"adapter": "none"}).adapter is None
    assert cfgmod.load(EvalConfig, None, {"adapter": "a,b"}).adapter == "a,b"
    assert cfgmod.load(EvalConfig, None, {"adapter": ["a", "b"]}).adapter == ["a", "b"]
    with pytest.raises(ConfigError, match="adapter"):
        cfgmod.load(EvalConfig, None, {"adapter": {"a": 1}})


def test_one_adapter_in_a_list_is_an_ordinary_single_run(tmp_path: Path, tiny_dir: Path) -> None:
    data = tmp_path / "test.jsonl"
    write_jsonl(data, (s.to_dict() for s in _samples(2)))
    cfg = EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", adapter=["none"], modes=["logit"],
                     n_boot=10)
    assert not evaluate.is_multi_adapter(cfg)
    run = evaluate.run(cfg, out=tmp_path / "run", progress=False)
    assert (run / "predictions.jsonl").is_file() and (run / "manifest.json").is_file()


def test_generate_limit_runs_generation_on_a_balanced_subset_of_every_source(tmp_path: Path, tiny_dir: Path) -> None:
    juliet = [Sample(f"j{i}", VULN + f"/*j{i}*/", i % 2, "CWE-121", "juliet", f"g{i}") for i in range(6)]
    data = tmp_path / "test.jsonl"
    write_jsonl(data, (s.to_dict() for s in juliet + _samples(3)))
    cfg = EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", max_new_tokens=2,
                     generate_limit=4, n_boot=20)
    run = evaluate.run(cfg, out=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    gen = [r for r in rows if r["mode"] == "generate"]
    assert sum(r["mode"] == "logit" for r in rows) == 12 and len(gen) == 4
    assert sorted(r["label"] for r in gen) == [0, 0, 1, 1] and {r["source"] for r in gen} == {"juliet", "sven"}


def test_limit_keeps_pairs_whole() -> None:
    from breachlab.vuln.eval.evaluate import balanced_limit

    pairs = _samples(4)
    scattered = pairs[0::2] + pairs[1::2][::-1]                  # vulnerable halves p0..p3, then fixes p3..p0
    picked = balanced_limit(scattered, 4, whole_pairs=True)
    assert len(picked) == 4 and {s.pair_id for s in picked} == {"p0", "p1"}
    assert [s.id for s in picked] == [s.id for s in scattered if s.pair_id in ("p0", "p1")]    # file order
    # the plain limit takes the first of each class and breaks every pair here
    plain = balanced_limit(scattered, 4)
    assert {s.id for s in plain} == {"p0-v", "p1-v", "p3-f", "p2-f"}
    single = [Sample(f"s{i}", f"int f{i}(void);", i % 2, None, "juliet", f"g{i}") for i in range(8)]
    assert balanced_limit(single, 4, whole_pairs=True) == balanced_limit(single, 4)
