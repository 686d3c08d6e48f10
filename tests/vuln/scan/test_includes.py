"""The static tools see only the scanned tree: includes that leave it, name a FIFO/device or are
computed are refused before any tool runs, with a one-line note, never a stall."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from breachlab.vuln.scan import includes, statictools
from breachlab.vuln.scan.scanner import ScanConfig, scan


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "inc").mkdir(parents=True)
    (root / "inc" / "ok.h").write_text('#include "deeper.h"\n#include <stdio.h>\n')
    (root / "inc" / "deeper.h").write_text("int deeper;\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.h").write_text("secret\n")
    return root


def test_safe_closure_passes_and_bad_ones_are_named(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    good = root / "good.c"
    good.write_text('#include "inc/ok.h"\n#include <stdlib.h>\n#include "missing.h"\nint f(void){return 0;}\n')
    assert includes.refusal(good, [root]) is None
    out = root / "out.c"
    out.write_text('#include "../secret/key.h"\n')
    assert includes.refusal(out, [root]) == '#include "../secret/key.h" leaves the scanned tree'
    (root / "inc" / "deeper.h").write_text('#include "../../secret/key.h"\n')  # transitively, through a header
    assert "leaves the scanned tree" in includes.refusal(good, [root])
    link = root / "link.h"
    link.symlink_to(tmp_path / "secret" / "key.h")
    (root / "l.c").write_text('#include "link.h"\n')
    assert "leaves the scanned tree" in includes.refusal(root / "l.c", [root])
    (root / "abs.c").write_text('#include "/etc/hostname"\n')
    assert "absolute path" in includes.refusal(root / "abs.c", [root])
    (root / "sys.c").write_text("#include <../../etc/passwd>\n")
    assert "climbs out" in includes.refusal(root / "sys.c", [root])
    (root / "macro.c").write_text("#define H \"/dev/zero\"\n#include H\n")
    assert "computed" in includes.refusal(root / "macro.c", [root])


def test_a_fifo_or_device_is_refused_without_being_opened(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.mkfifo(root / "pipe.h")
    (root / "f.c").write_text('#include "pipe.h"\nint f(void){return 0;}\n')
    t = time.monotonic()
    assert includes.refusal(root / "f.c", [root]) == '#include "pipe.h" names a special file (FIFO)'
    assert time.monotonic() - t < 5
    (root / "dev.h").symlink_to("/dev/zero")
    (root / "d.c").write_text('#include "dev.h"\n')
    assert "special file" in includes.refusal(root / "d.c", [root])


def test_scan_notes_the_refusal_and_gives_the_file_to_no_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    os.mkfifo(root / "pipe.h")
    (root / "f.c").write_text('#include "pipe.h"\nvoid f(char *d, const char *s) { strcpy(d, s); }\n')
    (root / "g.c").write_text("void g(char *d, const char *s) { strcpy(d, s); }\n")
    ran: list[Path] = []

    def fake_batch(tool, paths, include_dirs, timeout):
        ran.extend(paths)
        return {p: [] for p in paths}, []

    monkeypatch.setattr(statictools, "_run_batch", fake_batch)
    report = scan(ScanConfig(paths=[str(root)], tools=["cppcheck", "flawfinder"]), None)
    assert {p.name for p in ran} == {"g.c"}
    assert any("f.c: static tools not run: #include \"pipe.h\" names a special file (FIFO)" in n
               for n in report.stats["static_notes"])


def test_static_timeout_is_a_config_key() -> None:
    from breachlab.vuln.scan.command_config import ScanCommandConfig

    assert ScanCommandConfig(static_timeout=5).static_timeout == 5
    with pytest.raises(ValueError, match="static_timeout"):
        ScanCommandConfig(static_timeout=0)
