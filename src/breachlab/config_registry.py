"""Which config class a command reads: the one command → config table.

Each YAML under ``configs/`` starts with the exact command that uses it
(``# breachlab vuln train --config configs/vuln/…``); this table maps that command to its
dataclass, so a test can load every shipped YAML and an unknown key fails CI, and
``brain config`` and ``vuln config`` list a command's keys from it instead of a hand-kept
list of their own.  Targets are strings, so reading the table imports nothing heavy.
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

COMMANDS: dict[tuple[str, ...], str] = {
    ("quickstart",): "breachlab.vuln.quickstart:QuickstartConfig",
    ("vuln", "data", "build"): "breachlab.vuln.data.build:DataConfig",
    ("vuln", "eval"): "breachlab.vuln.eval.evaluate:EvalConfig",
    ("vuln", "kb", "build"): "breachlab.vuln.kb.build:KbBuildConfig",
    ("vuln", "kb", "score"): "breachlab.vuln.eval.retrieval:KbScoreConfig",
    ("vuln", "compare"): "breachlab.vuln.eval.compare:CompareConfig",
    ("vuln", "train"): "breachlab.vuln.training.config:TrainConfig",
    ("vuln", "export"): "breachlab.vuln.export:ExportConfig",
    ("vuln", "plan"): "breachlab.vuln.training.plan_run:PlanConfig",
    ("vuln", "quantbench"): "breachlab.vuln.quantbench:QuantBenchConfig",
    ("vuln", "scan"): "breachlab.vuln.scan.command_config:ScanCommandConfig",
    ("vuln", "calibrate"): "breachlab.vuln.scan.calibrate:CalibrateConfig",
    ("brain", "render"): "breachlab.brain.configs:RenderConfig",
    ("brain", "synth"): "breachlab.brain.configs:SynthConfig",
    ("brain", "analyze"): "breachlab.brain.configs:AnalyzeConfig",
    ("brain", "encode"): "breachlab.brain.encode:EncodeConfig",
    ("brain", "corpus", "import-sms"): "breachlab.brain.configs:SmsImportConfig",
}


def load_target(target: str) -> type:
    """The class named by a ``"module:Class"`` table entry."""
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def commands_of(part: str) -> dict[str, str]:
    """``{"render": "module:Class", …}``: the configured commands of one part (``brain``, ``vuln``)."""
    return {" ".join(words[1:]): target for words, target in COMMANDS.items() if words[0] == part and len(words) > 1}


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
            return load_target(target)
    raise ValueError(f"{path}: no config class registered for command {' '.join(words)!r}")
