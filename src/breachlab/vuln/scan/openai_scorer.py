"""``--backend openai --base-url URL``: score through any OpenAI-compatible server.

Why: a team points many scans at one GPU box running llama.cpp's server, vLLM or Ollama.
The request is the same chat the local backends see (:func:`~.scorers.triage_messages`);
the score is P(VULNERABLE) from the log-probabilities of the verdict's first token when the
server returns them (``logprobs`` + ``top_logprobs``), else the generated verdict parsed as
text (1.0 / 0.0, 0.5 when it names neither).

Concurrency: the scanner calls :meth:`OpenAIScorer.prefetch` with a chunk's functions before
judging them; ``concurrency`` requests are in flight at once and the answers are memoised, so
the one-at-a-time :meth:`score` calls that follow cost nothing.  Only the URL the user gave
is contacted; nothing else leaves the machine.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from breachlab.errors import UserError
from breachlab.vuln.scan.scorers import Explanation, chat_messages, parse_explanation


def _verdict_probability(top: list[dict[str, Any]]) -> float | None:
    """P(VULNERABLE) from the first generated token's alternatives (None: neither verdict there)."""
    pv = ps = 0.0
    for alt in top:
        tok = str(alt.get("token", "")).strip().lstrip("*").upper()
        if not tok:
            continue
        p = math.exp(float(alt.get("logprob", -1e9)))
        if "VULNERABLE".startswith(tok) or tok.startswith("VULN"):
            pv += p
        elif "SAFE".startswith(tok) or tok.startswith("SAFE"):
            ps += p
    return pv / (pv + ps) if pv + ps > 0 else None


class OpenAIScorer:
    """:class:`~.scorers.Scorer` over ``POST {base_url}/chat/completions``."""

    def __init__(self, base_url: str, model: str = "embedded", concurrency: int = 4, timeout: float = 120.0,
                 api_key: str | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"--base-url must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.model_id = f"openai:{base_url.rstrip('/')}#{model}"
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.api_key = api_key
        self.truncated = 0
        self.used_logprobs = 0
        self.parsed_text = 0
        self._memo: dict[tuple[str, str, str], float] = {}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's URL
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"server answered {exc.code}: {exc.read()[:200]!r}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"cannot reach {self.url}: {exc}") from None

    def _score_one(self, code: str, lang: str, evidence: str) -> float:
        body = {"model": self.model, "messages": chat_messages(code, lang, evidence), "max_tokens": 4,
                "temperature": 0.0, "logprobs": True, "top_logprobs": 20}
        choice = self._post(body)["choices"][0]
        content = ((choice.get("logprobs") or {}).get("content")) or []
        if content and content[0].get("top_logprobs"):
            p = _verdict_probability(content[0]["top_logprobs"])
            if p is not None:
                self.used_logprobs += 1
                return p
        self.parsed_text += 1
        verdict = parse_explanation(choice.get("message", {}).get("content") or "").verdict
        return {"VULNERABLE": 1.0, "SAFE": 0.0}.get(verdict or "", 0.5)

    def prefetch(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Score ``(code, lang, evidence)`` items with ``concurrency`` requests in flight."""
        todo = list(dict.fromkeys(i for i in items if i not in self._memo))
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {i: pool.submit(self._score_one, *i) for i in todo}
        for item, fut in futures.items():
            if fut.exception() is None:
                self._memo[item] = fut.result()

    def score(self, code: str, lang: str, evidence: str = "") -> float:
        key = (code, lang, evidence)
        if key in self._memo:
            return self._memo.pop(key)
        return self._score_one(code, lang, evidence)

    def explain(self, code: str, lang: str, evidence: str = "", max_new_tokens: int = 64) -> Explanation:
        body = {"model": self.model, "messages": chat_messages(code, lang, evidence), "max_tokens": max_new_tokens,
                "temperature": 0.0}
        return parse_explanation(self._post(body)["choices"][0].get("message", {}).get("content") or "")
