"""Help says what a key does: every config key of every command (the command → config table)
has a short help text with no measurement history in it; numbers live in docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
import re

import pytest

from breachlab.config_registry import COMMANDS, load_target

MAX_HELP = 320  # about three 100-column lines of `breachlab vuln config CMD`
HISTORY = re.compile(r"H100|H200|A100|\bsession\b|samples/s|\bruns? \d+\b|\b\d+(\.\d+)?x (faster|slower|as fast)|"
                     r"\d+(\.\d+)?% (faster|slower)")


def _keys():
    for words, target in COMMANDS.items():
        for f in dataclasses.fields(load_target(target)):
            yield " ".join(words), f.name, f.metadata.get("help", "")


KEYS = list(_keys())


@pytest.mark.parametrize(("command", "key", "help_text"), KEYS, ids=[f"{c}:{k}" for c, k, _ in KEYS])
def test_help_is_short_and_has_no_measurements(command: str, key: str, help_text: str) -> None:
    assert help_text, f"{command} {key} has no help"
    assert len(help_text) <= MAX_HELP, f"{command} {key}: {len(help_text)} characters of help"
    assert not HISTORY.search(help_text), f"{command} {key}: a measurement belongs in docs/benchmarks.md"


def test_the_history_pattern_catches_a_measured_help() -> None:
    assert HISTORY.search("off 2.3% slower on an H200 (twelfth session)")
    assert HISTORY.search("40.8 against 29.6 samples/s")
    assert not HISTORY.search("auto = on for CUDA, off on CPU")
