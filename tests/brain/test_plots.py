"""Figures come from bare matplotlib Figures: no pyplot, no backend switch inside the library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_roi_bars_draw_without_pyplot_or_a_backend_switch(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(SRC)!r})
import matplotlib
matplotlib.use("svg")  # the caller's choice must survive
from breachlab.brain.plots import plot_roi_bars
rows = [dict(path=p, language="en", type=t, roi=r, diff=d, ci_low=d - .01, ci_high=d + .01, q_fdr=.5)
        for p in ("text", "screenshot") for t, d in (("phishing", .05), ("pyramid", -.03)) for r in ("dlPFC", "ACC")]
rows.append(dict(path="text", language="en", type="phishing", roi="amygdala", diff=None, ci_low=None,
                 ci_high=None, q_fdr=None))
fig = plot_roi_bars(rows, "SYNTHETIC test", output_file={str(tmp_path / "bars.png")!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules, type(fig).__name__)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "MPLBACKEND": ""})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["svg", "False", "Figure"]
    png = (tmp_path / "bars.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
