"""Open a llama.cpp model (llama-cpp-python) the way breachlab does everywhere.

One thing differs from ``llama_cpp.Llama(**kwargs)``: on CPUs with AMX (Intel Sapphire
Rapids and later), llama.cpp's *extra* CPU buffer types — the AMX and repacked-weight
buffers a native build selects — are turned off.  Seen here (2026-12-02, llama-cpp-python
0.3.36 built from source on a 2-core sandboxed VM whose CPU reports AMX_INT8): the first
``decode`` of any model crashed the process with SIGSEGV; with ``use_extra_bufts = false``
the same build scored and generated normally.  Sandboxes (gVisor, some VMs) may not grant a
process the AMX state.  ``BREACHLAB_LLAMA_EXTRA_BUFTS=on|off`` overrides the choice.

llama.cpp writes its own log (``llama_kv_cache_iswa: using full-size SWA cache …``) to the
C-level stderr, past Python's ``sys.stderr`` and past ``verbose=False``.  So while a model
opens, file descriptor 2 points at a temporary file: stderr stays the one line an error
promises.  The captured log is dropped, except its error lines, which join the message of a
failed load.  ``breachlab --verbose`` (``BREACHLAB_VERBOSE=1``) shows the log as it comes.

llama-cpp-python does not pass ``use_extra_bufts`` through ``Llama(...)``; it reads the
model parameters from ``llama_model_default_params()`` while the constructor runs, so that
function is wrapped for the duration of the call (under a lock: threads may open models).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from functools import lru_cache
from typing import Any, Iterator

_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """Whether the CPU reports AMX (Linux ``/proc/cpuinfo`` flags); False where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return any(flag.startswith("amx") for flag in line.split())
    except OSError:
        return False
    return False


def extra_bufts_enabled() -> bool:
    """Whether llama.cpp may use its extra CPU buffer types (AMX, repacked weights)."""
    choice = os.environ.get("BREACHLAB_LLAMA_EXTRA_BUFTS", "auto").strip().lower()
    if choice in ("on", "1", "true", "yes"):
        return True
    if choice in ("off", "0", "false", "no"):
        return False
    return not cpu_has_amx()


def verbose() -> bool:
    """Whether llama.cpp's own log is shown (``BREACHLAB_VERBOSE=1``, set by ``breachlab --verbose``)."""
    return os.environ.get("BREACHLAB_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[list[str]]:
    """File descriptor 2 → a temporary file for the block (unless :func:`verbose`).

    Yields a list that receives the captured text when the block ends.  What Python writes
    to ``sys.stderr`` meanwhile is captured too (it is flushed first), so keep the block to
    the native call.
    """
    captured: list[str] = []
    if verbose():
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def error_lines(log: str, limit: int = 2) -> str:
    """The last ``limit`` lines of a llama.cpp log that say error/failed/invalid, joined by ``; ``."""
    keep = [ln.strip() for ln in log.splitlines() if any(w in ln.lower() for w in ("error", "fail", "invalid"))]
    return "; ".join(keep[-limit:])


def _open(llama_cpp: Any, kwargs: dict[str, Any]) -> Any:
    """``llama_cpp.Llama(**kwargs)`` with llama.cpp's log captured; a failed load carries its error lines."""
    if verbose():
        return llama_cpp.Llama(**{**kwargs, "verbose": True})
    kwargs = {"verbose": False, **kwargs}
    with quiet_native_stderr() as log:
        try:
            return llama_cpp.Llama(**kwargs)
        except ValueError as exc:
            failure = exc
    detail = error_lines(log[0] if log else "")
    raise ValueError(f"{failure}: {detail}" if detail else str(failure)) from None


def _without_extra_bufts(original: Any) -> Any:
    """``original`` (llama.cpp's ``llama_model_default_params``) with ``use_extra_bufts`` off."""

    def params() -> Any:
        out = original()
        if hasattr(out, "use_extra_bufts"):
            out.use_extra_bufts = False
        return out

    return params


def without_extra_bufts_for_this_process() -> bool:
    """For a process that only serves llama.cpp (``python -m breachlab.llama_server``): every
    model it opens gets the same choice as :func:`open_llama`.  Returns whether it changed anything."""
    if extra_bufts_enabled():
        return False
    import llama_cpp.llama as llama_module

    lowlevel = llama_module.llama_cpp
    lowlevel.llama_model_default_params = _without_extra_bufts(lowlevel.llama_model_default_params)
    return True


def open_llama(**kwargs: Any) -> Any:
    """``llama_cpp.Llama(**kwargs)``, with extra CPU buffer types off where they crash and
    llama.cpp's log silenced unless :func:`verbose` (then ``verbose=True`` is passed)."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    if extra_bufts_enabled():
        return _open(llama_cpp, kwargs)
    lowlevel = llama_module.llama_cpp
    original = lowlevel.llama_model_default_params
    with _LOCK:
        lowlevel.llama_model_default_params = _without_extra_bufts(original)
        try:
            return _open(llama_cpp, kwargs)
        finally:
            lowlevel.llama_model_default_params = original
