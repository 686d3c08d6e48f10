"""Where a scan's model and calibration come from: the scorer (llama.cpp / transformers /
an OpenAI-compatible server), the adapter a scan uses by default, the shipped calibration.

Shared by ``vuln scan`` and ``vuln calibrate`` (both command lines import it; nothing here
imports a command line).  ``make_scorer`` is the seam tests replace with a fake scorer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from breachlab.errors import UserError


def make_scorer(model: str, backend: str, adapter: Optional[str], n_ctx: int, threads: Optional[int],
                base_url: Optional[str] = None, concurrency: int = 4) -> Any:
    """Load the model behind the scan (a seam: tests replace it with a fake scorer)."""
    if backend == "openai":
        from breachlab.vuln.scan.openai_scorer import OpenAIScorer

        if not base_url:
            raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
        return OpenAIScorer(base_url, model=model, concurrency=concurrency)
    from breachlab.vuln.backends import load_backend
    from breachlab.vuln.scan.scorers import BackendScorer

    return BackendScorer(load_backend(model, backend=backend, adapter=adapter, n_ctx=n_ctx, threads=threads))


def choose_adapter(adapter: Optional[str], *, model: str) -> str:
    """The adapter a scan uses when ``--adapter`` is not given: the shipped one for the embedded model."""
    if adapter is not None:
        return adapter
    from breachlab.ladder import is_embedded
    from breachlab.vuln.backends.adapters import has_shipped

    return "default" if is_embedded(model) and has_shipped() else "none"


def shipped_calibration() -> Path:
    """The calibration this version ships (made by ``breachlab vuln calibrate``, see its report)."""
    return Path(__file__).resolve().parents[2] / "data" / "scan" / "calibration.json"
