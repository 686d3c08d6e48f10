"""Old import path of :mod:`breachlab.vuln.training.ckpt`, kept for ``vuln/export.py``; delete
this module once nothing imports it."""

from __future__ import annotations

from breachlab.vuln.training.ckpt import latest, load, save

__all__ = ["latest", "load", "save"]
