"""Which config class a command reads: used by ``--config`` docs and the YAML-loading test.

Each YAML under ``configs/`` starts with the exact command that uses it
(``# breachlab vuln train --config configs/vuln/…``); this table maps that command to its
dataclass, so a test can load every shipped YAML and an unknown key fails CI.
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

COMMANDS: dict[tuple[str, ...], str] = {
    ("quickstart",): "breachlab.vuln.quickstart:QuickstartConfig",
    ("vuln", "data", "build"): "breachlab.vuln.data:DataConfig",
    ("vuln", "eval"): "breachlab.vuln.evaluate:EvalConfig",
    ("vuln", "train"): "breachlab.vuln.training.config:TrainConfig",
    ("brain", "render"): "breachlab.brain.configs:RenderConfig",
    ("brain", "synth"): "breachlab.brain.configs:SynthConfig",
    ("brain", "analyze"): "breachlab.brain.configs:AnalyzeConfig",
}


def config_class_for(path: str | Path) -> type:
    """The config dataclass for the command named on the YAML file's first line."""
    first = Path(path).read_text(encoding="utf-8").splitlines()[0].lstrip("#").strip()
    words = shlex.split(first)
    if not words or words[0] != "breachlab":
        raise ValueError(f"{path}: the first line must be '# breachlab <command> …'")
    words = [w for w in words[1:] if not w.startswith("-")]
    for n in range(len(words), 0, -1):
        target = COMMANDS.get(tuple(words[:n]))
        if target:
            module, _, cls = target.partition(":")
            return getattr(importlib.import_module(module), cls)
    raise ValueError(f"{path}: no config class registered for command {' '.join(words)!r}")
