"""Text from outside (file names, scanned code, model output) made safe to print or embed.

A file name may hold bytes that are not UTF-8 (Python keeps them as lone surrogates, which
no UTF-8 stream accepts), terminal control sequences (``ESC[2J`` clears a screen, OSC 8
forges links) or bidirectional overrides that make a name read differently than it is.
:func:`printable` turns each of those into a visible ``\\xNN``/``\\uNNNN`` escape, so a report
or an error line shows the name, whole, and nothing in it acts on the terminal.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from typing import Any

# bidirectional embeddings, overrides and isolates ("trojan source"), line/paragraph separators
_INVISIBLE = {0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF}


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with undecodable bytes, control characters and bidi controls as visible escapes."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(_escape(ch) if (unicodedata.category(ch) in ("Cc", "Cs") or ord(ch) in _INVISIBLE) else ch
                   for ch in text)


def path_bytes(path: str) -> bytes:
    """The file name's own bytes (the inverse of how Python decoded it from the file system)."""
    return os.fsencode(path)


# what json.dumps(ensure_ascii=False) leaves raw but no reader should meet raw: lone surrogates,
# DEL and C1 controls, bidi controls
_JSON_ESCAPE = re.compile("[\ud800-\udfff\x7f-\x9f" + "".join(chr(c) for c in sorted(_INVISIBLE)) + "]")


def json_text(obj: Any, **dumps_options: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, …)`` that any UTF-8 stream accepts and no terminal obeys.

    A lone surrogate (a file-name byte that was not UTF-8), DEL/C1 and bidi controls become
    ``\\uXXXX`` escapes (json escapes C0 controls itself); ``json.loads`` turns them back
    into the same Python string, so paths stay exact.
    """
    text = json.dumps(obj, ensure_ascii=False, **dumps_options)
    return _JSON_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
