"""Turn samples into prediction rows, in either decision mode.

Each row keeps everything a metric needs, so every number in a report can be recomputed
from ``predictions.jsonl``: id, label, CWE, source, pair, mode, raw output, parsed verdict,
P(vulnerable), echo flag, latency.

* ``logit``: one forward pass; verdict = ``p_vulnerable >= threshold``.
* ``generate``: greedy text; the verdict is the first one stated, read *after* removing
  any template text the model echoed (an echo is counted, never read as an answer).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from breachlab.vuln.backends import Backend
from breachlab.vuln.prompts import (
    TEMPLATE_TEXTS,
    VERDICT_SAFE,
    VERDICT_VULNERABLE,
    detect_echo,
    inference_prompt,
    parse_verdict,
)
from breachlab.vuln.sample import Sample

MODES = ("logit", "generate")


def strip_template_text(output: str, code: str = "") -> str:
    """Remove echoed prompt text (instructions, system text, the code itself) from an output."""
    text = output
    for tpl in TEMPLATE_TEXTS:
        for lang in ("C", "C++"):
            text = text.replace(tpl.format(lang=lang), " ")
    if code.strip():
        text = text.replace(code.strip(), " ")
    text = re.sub(r"```[a-z+]*\s*```", " ", text)
    return text


def build_prompt(backend: Backend, code: str, lang: str | None, references: str = "") -> str:
    """The backend's inference prompt for ``code``, with a reference block when given."""
    if not references:
        return backend.prompt(code, lang)
    return inference_prompt(code, lang, tokenizer=backend.chat_tokenizer, references=references)


def fit_code(backend: Backend, sample: Sample, reserve: int, references: str = "") -> tuple[str, bool]:
    """The sample's code, shortened from the end if the prompt would not fit the context."""
    code = sample.code
    budget = backend.n_ctx - reserve
    n = len(backend.tokenize(build_prompt(backend, code, sample.lang, references)))
    truncated = False
    while n > budget and len(code) > 64:
        keep = max(64, int(len(code) * budget / n * 0.95))
        code = code[:keep]
        truncated = True
        n = len(backend.tokenize(build_prompt(backend, code, sample.lang, references)))
    return code, truncated


def predict_one(backend: Backend, sample: Sample, mode: str, *, threshold: float = 0.5,
                max_new_tokens: int = 64, references: str = "",
                reference_ids: list[str] | None = None) -> dict[str, Any]:
    """One prediction row for ``sample``.

    ``references``: a :func:`~breachlab.vuln.prompts.reference_block` put before the question
    (the only way references reach the model); ``reference_ids`` are recorded in the row.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    code, truncated = fit_code(backend, sample, reserve=(max_new_tokens if mode == "generate" else 8) + 8,
                               references=references)
    prompt = build_prompt(backend, code, sample.lang, references)
    start = time.perf_counter()
    row: dict[str, Any] = {
        "id": sample.id, "label": sample.label, "cwe": sample.cwe, "source": sample.source,
        "pair_id": sample.pair_id, "mode": mode, "model": backend.model_id, "backend": backend.name,
        "truncated": truncated,
    }
    if reference_ids is not None:
        row["references"] = list(reference_ids)
    if mode == "logit":
        score = backend.score(prompt)
        p = score.p_vulnerable
        row.update(raw_output="", p_vulnerable=p, logp_vulnerable=score.logp_vulnerable,
                   logp_safe=score.logp_safe,
                   verdict=VERDICT_VULNERABLE if p >= threshold else VERDICT_SAFE, echo=False)
    else:
        text = backend.generate(prompt, max_new_tokens=max_new_tokens)
        echo = detect_echo(text)
        row.update(raw_output=text, p_vulnerable=None, echo=echo,
                   verdict=parse_verdict(strip_template_text(text, code) if echo else text))
    row["latency_s"] = round(time.perf_counter() - start, 4)
    return row


def predict(backend: Backend, samples: Iterable[Sample], mode: str, *, threshold: float = 0.5,
            max_new_tokens: int = 64,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Yield a prediction row per sample (``on_row`` sees each, e.g. to append to a file)."""
    for sample in samples:
        row = predict_one(backend, sample, mode, threshold=threshold, max_new_tokens=max_new_tokens)
        if on_row is not None:
            on_row(row)
        yield row


class PredictionLog:
    """An append-only JSON Lines file of prediction rows, flushed after every row.

    A run killed at any moment leaves every row it finished on disk; reopening the file
    (``resume=True``) reads them back, drops a torn last line, and appends after them, so a
    resumed run writes the same rows in the same order as one that never stopped.
    """

    def __init__(self, path: str | Path, *, resume: bool = False):
        self.path = Path(path)
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        if resume and self.path.is_file():
            self.done = self._recover()
        self._fh = self.path.open("a" if resume else "w", encoding="utf-8")

    def _recover(self) -> dict[tuple[str, str], dict[str, Any]]:
        data = self.path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a row cut by the kill has no newline yet
        if len(keep) != len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(len(keep))
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for line in keep.decode("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(str(row["id"]), str(row["mode"]))] = row
        return rows

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "PredictionLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
