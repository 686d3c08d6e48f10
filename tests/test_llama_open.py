"""open_llama: llama.cpp's extra CPU buffer types off on AMX CPUs (they crashed decode here)."""

from __future__ import annotations

import pytest

from breachlab import llama_open


@pytest.mark.parametrize("env,amx,expected", [("on", True, True), ("off", False, False),
                                              ("auto", True, False), ("auto", False, True)])
def test_extra_bufts_choice(monkeypatch, env, amx, expected):
    monkeypatch.setenv("BREACHLAB_LLAMA_EXTRA_BUFTS", env)
    monkeypatch.setattr(llama_open, "cpu_has_amx", lambda: amx)
    assert llama_open.extra_bufts_enabled() is expected


def test_open_llama_passes_the_parameter_and_restores_the_default(monkeypatch):
    """The constructor sees use_extra_bufts=False; afterwards the library default is back."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import llama_cpp.llama as llama_module

    seen = {}

    class Probe:
        def __init__(self, **kwargs):
            seen["extra"] = llama_module.llama_cpp.llama_model_default_params().use_extra_bufts
            seen["kwargs"] = kwargs

    monkeypatch.setattr(llama_cpp, "Llama", Probe)
    monkeypatch.setenv("BREACHLAB_LLAMA_EXTRA_BUFTS", "off")
    original = llama_module.llama_cpp.llama_model_default_params
    monkeypatch.delenv("BREACHLAB_VERBOSE", raising=False)
    llama_open.open_llama(model_path="m.gguf", n_ctx=8)
    # verbose=False: llama.cpp's own log stays out of stderr unless breachlab --verbose
    assert seen == {"extra": False, "kwargs": {"verbose": False, "model_path": "m.gguf", "n_ctx": 8}}
    assert llama_module.llama_cpp.llama_model_default_params is original
    assert original().use_extra_bufts is True
