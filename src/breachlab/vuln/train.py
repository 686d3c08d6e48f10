"""Old import path of the training wing, kept for modules that still use it (``vuln/export.py``).

New code imports from :mod:`breachlab.vuln.training` (``config``, ``load``, ``run``,
``anatomy``); delete this module once nothing imports it (``grep -rn "vuln.train import"``).
"""

from __future__ import annotations

from breachlab.vuln.training.anatomy import DEFAULT_TARGETS, lora_targets
from breachlab.vuln.training.config import TrainConfig
from breachlab.vuln.training.load import base_location, load_for_training
from breachlab.vuln.training.run import resume, run

__all__ = ["DEFAULT_TARGETS", "TrainConfig", "base_location", "load_for_training", "lora_targets", "resume", "run"]
