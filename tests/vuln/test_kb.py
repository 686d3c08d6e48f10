"""References from known fixes: the index finds the right pair, never the query's own copy, the
retrieval baseline scores as its formula says, and references reach a model only through the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from breachlab.errors import UserError
from breachlab.rundir import write_jsonl
from breachlab.vuln.data.tokens import code_tokens
from breachlab.vuln.eval import retrieval as baseline
from breachlab.vuln.kb import build
from breachlab.vuln.kb.retrieve import KnowledgeBase, references_for, retrieval_score
from breachlab.vuln.kb.store import KnownPair, read_kb
from breachlab.vuln.prompts import REFERENCE_INTRO, fix_diff, inference_prompt, reference_block
from breachlab.vuln.sample import Sample


def pair_code(topic: str, fixed: bool) -> str:
    """Functions on different topics; the fix adds a topic-specific check."""
    bodies = {
        "copy": ("int copy_name(char *dst, const char *src, size_t n) {\n  memcpy(dst, src, n);\n  return 0;\n}",
                 "  if (n >= NAME_MAX) return -EINVAL;\n"),
        "free": ("void drop_session(struct session *s) {\n  kfree(s->buf);\n  list_del(&s->node);\n}",
                 "  s->buf = NULL;\n"),
        "index": ("int read_slot(struct table *t, int idx) {\n  int v = t->slots[idx];\n  return v;\n}",
                  "  if (idx < 0 || idx >= t->n) return -1;\n"),
    }
    head, check = bodies[topic]
    if not fixed:
        return head
    first, rest = head.split("\n", 1)
    return f"{first}\n{check}{rest}"


def known(topic: str, source: str = "pairvul") -> KnownPair:
    return KnownPair(id=f"k-{topic}", vulnerable=pair_code(topic, False), fixed=pair_code(topic, True), cwe="CWE-787",
                     source=source)


def samples(topics=("copy", "free", "index"), source: str = "pairvul", tag: str = "") -> list[Sample]:
    out = []
    for t in topics:
        out.append(Sample(f"{t}{tag}:vul", pair_code(t, False) + f"\n/* {tag} */", 1, "CWE-787", source, t,
                          pair_id=f"{t}{tag}"))
        out.append(Sample(f"{t}{tag}:fix", pair_code(t, True) + f"\n/* {tag} */", 0, "CWE-787", source, t,
                          pair_id=f"{t}{tag}"))
    return out


def test_tokens_drop_comments_and_keep_operators() -> None:
    assert code_tokens('if (n >= 8) /* why */ return f("x"); // done') == \
        ["if", "(", "n", ">=", "8", ")", "return", "f", "(", "STR", ")", ";"]
    assert '"x"' in code_tokens('f("x");', keep_strings=True)


@pytest.mark.parametrize("method", ["tfidf", "bm25"])
def test_the_right_reference_comes_back_and_never_the_query_itself(method: str) -> None:
    kb = KnowledgeBase([known(t) for t in ("copy", "free", "index")], method)
    query = pair_code("free", False).replace("drop_session", "release_session")
    assert [p.id for p in references_for(kb, query, 1)] == ["k-free"]
    assert [h.pair.id for h in kb.nearest(query, 2)][0] == "k-free"
    # the KB's own vulnerable half (reformatted) is the query: its pair is not returned
    own = "  ".join(pair_code("copy", False).split())
    assert "k-copy" not in [p.id for p in references_for(kb, own, 3)]
    sv, sf = kb.similarities([own])
    assert np.isneginf(sv[0, 0]) and np.isneginf(sf[0, 0])


def test_retrieval_score_follows_its_formula() -> None:
    sv, sf = np.array([0.9, 0.2, 0.1]), np.array([0.6, 0.3, 0.1])
    assert retrieval_score(sv, sf, 1) == pytest.approx((1 + 0.9 - 0.6) / 2)
    assert retrieval_score(sv, sf, 2) == pytest.approx((1 + (0.9 + 0.2) / 2 - (0.6 + 0.3) / 2) / 2)
    assert retrieval_score(sv, sf, 1, "bm25") == pytest.approx((1 + 0.3 / 1.5) / 2)
    assert retrieval_score(np.array([-np.inf]), np.array([-np.inf]), 1) == 0.5     # nothing to compare with
    kb = KnowledgeBase([known(t) for t in ("copy", "free", "index")])
    sv, sf = kb.similarities([pair_code("index", False) + " x;", pair_code("index", True) + " x;"])
    assert retrieval_score(sv[0], sf[0]) > 0.5 > retrieval_score(sv[1], sf[1])
    assert kb.score(pair_code("index", False) + " x;") == retrieval_score(sv[0], sf[0])


def test_build_from_a_data_split_and_score_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", (s.to_dict() for s in samples(tag="train") + samples(source="sven", tag="sv")))
    write_jsonl(data / "test.jsonl", (s.to_dict() for s in samples(tag="test")))
    kb_dir = build.run(build.KbBuildConfig(data=str(data), exclude_sources=["sven"]), out=tmp_path / "kb")
    pairs, meta = read_kb(kb_dir)
    assert len(pairs) == 3 and meta["pairs_by_source"] == {"pairvul": 3} and meta["method"] == "tfidf"
    run = baseline.run(baseline.KbScoreConfig(kb=str(kb_dir), data=str(data), n_boot=50), out=tmp_path / "score")
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["mode"] for r in rows} == {"retrieval"}
    assert all((r["p_vulnerable"] > 0.5) == (r["label"] == 1) for r in rows)
    assert all(r["nearest"] == [f"{r['id'].split('test')[0]}train"] for r in rows)
    metrics = json.loads((run / "metrics.json").read_text())["retrieval"]
    assert metrics["auc"]["roc_auc"]["value"] == 1.0 and metrics["pairwise"]["net"]["value"] == 1.0
    assert (run / "report.md").is_file()


def test_user_fixes_format_and_its_errors(tmp_path: Path) -> None:
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text(json.dumps({"vulnerable": pair_code("copy", False), "fixed": pair_code("copy", True),
                                 "cwe": "787", "id": "mine-1"}) + "\n" +
                     json.dumps({"vulnerable": pair_code("free", False), "fixed": pair_code("free", True)}) + "\n")
    kb_dir = build.run(build.KbBuildConfig(data=str(fixes), method="bm25"), out=tmp_path / "kb")
    pairs, meta = read_kb(kb_dir)
    assert [p.id for p in pairs][0] == "mine-1" and pairs[0].cwe == "CWE-787" and meta["format"] == "fixes"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(fixes.read_text().splitlines()[0] + "\n" + json.dumps({"vulnerable": "int x;", "fixed": ""}) + "\n")
    with pytest.raises(UserError, match=r"bad\.jsonl:2: 'fixed' must be a non-empty string"):
        build.run(build.KbBuildConfig(data=str(bad)), out=tmp_path / "kb2", root=tmp_path / "runs")
    assert not (tmp_path / "kb2").exists() and not (tmp_path / "runs").exists()
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    with pytest.raises(UserError, match=r"broken\.jsonl:1: malformed JSON"):
        build.run(build.KbBuildConfig(data=str(tmp_path / "broken.jsonl")), out=tmp_path / "kb3")
    with pytest.raises(UserError, match="not a KB folder"):
        KnowledgeBase.load(tmp_path)


def test_the_prompt_carries_the_reference_as_a_diff() -> None:
    diff = fix_diff(pair_code("copy", False), pair_code("copy", True))
    assert "+  if (n >= NAME_MAX) return -EINVAL;" in diff and " memcpy(dst, src, n);" in diff
    assert fix_diff("int a;", "int  a;") == ""                             # whitespace only: no reference
    block = reference_block([(pair_code("copy", False), pair_code("copy", True), "CWE-787")])
    prompt = inference_prompt("int f(void) { return 0; }", "c", references=block)
    assert prompt.index(REFERENCE_INTRO) < prompt.index("Is this C function") < prompt.index("int f(void)")
    assert "```diff" in prompt and "NAME_MAX" in prompt
    assert inference_prompt("int f(void) { return 0; }", "c") == inference_prompt("int f(void) { return 0; }", "c",
                                                                                   references="")
    cut = fix_diff("\n".join(f"x{i} = {i};" for i in range(200)), "\n".join(f"x{i} = {i + 1};" for i in range(200)),
                   max_chars=300)
    assert len(cut) <= 302 and cut.endswith("…")
    assert "```" not in fix_diff("a();\n", 's = "```";\n')                 # known text cannot close the fence


class PromptScored:
    """A backend whose score is a pure function of the prompt text (and records every prompt)."""

    name, base_id, model_id, n_ctx, chat_tokenizer = "stub", "stub", "stub", 4096, None

    def __init__(self):
        self.prompts: list[str] = []

    def prompt(self, code, lang="c"):
        return inference_prompt(code, lang)

    def tokenize(self, text):
        return list(range(len(text) // 4))

    def score(self, prompt):
        from breachlab.vuln.backends.base import Score

        self.prompts.append(prompt)
        h = (sum(map(ord, prompt)) % 997) / 997
        return Score(float(np.log(0.01 + h)), float(np.log(1.01 - h)))


def test_references_change_the_score_only_through_the_prompt() -> None:
    from breachlab.vuln.eval.predict import build_prompt, predict_one

    backend = PromptScored()
    s = samples(("copy",), tag="q")[0]
    block = reference_block([(pair_code("copy", False), pair_code("copy", True), None)])
    plain = predict_one(backend, s, "logit")
    with_ref = predict_one(backend, s, "logit", references=block, reference_ids=["k-copy"])
    assert backend.prompts[0] == build_prompt(backend, s.code, s.lang) and REFERENCE_INTRO not in backend.prompts[0]
    assert backend.prompts[1] == build_prompt(backend, s.code, s.lang, block) and block in backend.prompts[1]
    assert with_ref["references"] == ["k-copy"] and "references" not in plain
    again = PromptScored()
    assert predict_one(again, s, "logit", references=block)["p_vulnerable"] == with_ref["p_vulnerable"]
    assert with_ref["p_vulnerable"] != plain["p_vulnerable"]


def test_eval_with_a_kb_shows_the_nearest_known_fix(tmp_path: Path) -> None:
    from breachlab.vuln.eval import evaluate
    from tests.vuln.tiny import make_model_dir

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", (s.to_dict() for s in samples(tag="train")))
    write_jsonl(data / "test.jsonl", (s.to_dict() for s in samples(tag="test")))
    kb_dir = build.run(build.KbBuildConfig(data=str(data)), out=tmp_path / "kb")
    model = make_model_dir(tmp_path / "model")
    common = dict(data=str(data), model=str(model), backend="transformers", modes=["logit"], n_boot=0)
    base = evaluate.run(evaluate.EvalConfig(**common), out=tmp_path / "plain", progress=False)
    ref = evaluate.run(evaluate.EvalConfig(kb=str(kb_dir), kb_k=1, **common), out=tmp_path / "ref", progress=False)
    rows = {r["id"]: r for r in map(json.loads, (ref / "predictions.jsonl").read_text().splitlines())}
    plain = {r["id"]: r for r in map(json.loads, (base / "predictions.jsonl").read_text().splitlines())}
    assert rows["free test:vul".replace(" ", "")]["references"] == ["freetrain"]
    assert all(r["references"] == [r["id"].split("test")[0] + "train"] for r in rows.values())
    assert any(rows[i]["p_vulnerable"] != plain[i]["p_vulnerable"] for i in rows)
    manifest = json.loads((ref / "manifest.json").read_text())
    assert manifest["kb"] == str(kb_dir) and manifest["kb_functions_with_references"] == 6


def test_cli_bad_kb_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bad = tmp_path / "fixes.jsonl"
    bad.write_text(json.dumps({"vulnerable": "int f(void);", "fixed": 3}) + "\n")
    env = {**os.environ, "COLUMNS": "1000", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    for args in (["build", str(bad)], ["build", str(tmp_path / "missing")],
                 ["score", str(tmp_path), "--data", str(bad)]):
        res = subprocess.run([sys.executable, "-m", "breachlab.cli", "vuln", "kb", *args,
                              "--out", str(tmp_path / "out")],
                             capture_output=True, text=True, cwd=tmp_path, env=env)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
