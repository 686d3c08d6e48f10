"""Turn a tools-only calibration (``vuln calibrate --backend none``) into the shipped file.

    python benchmarks/scan_ship_calibration.py /tmp/cal/calibration.json \
        --model-id "gemma-3-270m-q4_k_m (embedded)+gemma3-270m-juliet-r16@23c35eb71814" \
        --out src/breachlab/data/scan/calibration.json

The default scan loads the embedded model, so the shipped file must name its ``model_id`` and
hold a ``model`` combiner.  Without model scores on the calibration data that combiner is the
tools-only one with the model's weight 0 — the scan then never asks the model for a decision
(it could not change one); ``vuln calibrate`` with a model fits a real weight.  No ``deep``
combiner is written (``--deep`` asks for a calibration fitted with a model).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.scan import calibration as calmod  # noqa: E402
from breachlab.vuln.scan.candidates import FEATURES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calibration", type=Path)
    ap.add_argument("--model-id", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    cal = calmod.load(a.calibration)
    nm = cal.variants["no_model"]
    model = calmod.Variant(FEATURES, {**nm.weights, "llm_logit": 0.0}, nm.threshold,
                           {**nm.fit, "note": "tools-only combiner, model weight 0: no model scores were fitted"})
    out = dataclasses.replace(cal, settings={**cal.settings, "model_id": a.model_id},
                              variants={"no_model": nm, "model": model})
    calmod.save(out, a.out)
    print(f"wrote {a.out}: variants {', '.join(out.variants)}; precise checks {len(out.trust.precise_checks())}")


if __name__ == "__main__":
    main()
