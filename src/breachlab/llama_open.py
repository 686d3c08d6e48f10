"""Open a llama.cpp model (llama-cpp-python) the way breachlab does everywhere.

One thing differs from ``llama_cpp.Llama(**kwargs)``: on CPUs with AMX (Intel Sapphire
Rapids and later), llama.cpp's *extra* CPU buffer types — the AMX and repacked-weight
buffers a native build selects — are turned off.  Seen here (2026-12-02, llama-cpp-python
0.3.36 built from source on a 2-core sandboxed VM whose CPU reports AMX_INT8): the first
``decode`` of any model crashed the process with SIGSEGV; with ``use_extra_bufts = false``
the same build scored and generated normally.  Sandboxes (gVisor, some VMs) may not grant a
process the AMX state.  ``BREACHLAB_LLAMA_EXTRA_BUFTS=on|off`` overrides the choice.

llama-cpp-python does not pass ``use_extra_bufts`` through ``Llama(...)``; it reads the
model parameters from ``llama_model_default_params()`` while the constructor runs, so that
function is wrapped for the duration of the call (under a lock: threads may open models).
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

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
    """``llama_cpp.Llama(**kwargs)``, with extra CPU buffer types off where they crash."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    if extra_bufts_enabled():
        return llama_cpp.Llama(**kwargs)
    lowlevel = llama_module.llama_cpp
    original = lowlevel.llama_model_default_params
    with _LOCK:
        lowlevel.llama_model_default_params = _without_extra_bufts(original)
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            lowlevel.llama_model_default_params = original
