"""``python -m breachlab.llama_server --model M.gguf --host 127.0.0.1 --port 8080`` — llama.cpp's
own OpenAI-compatible server (llama-cpp-python's ``llama_cpp.server``), started with the one
difference :mod:`breachlab.llama_open` makes: on CPUs with AMX, llama.cpp's extra CPU buffer
types are off (they crashed the first decode on this project's machines).  Every argument
goes to ``llama_cpp.server`` unchanged; ``breachlab vuln scan --backend openai --base-url
http://127.0.0.1:8080/v1`` then scores through it.  Needs ``pip install 'llama-cpp-python[server]'``.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        sys.stderr.write("error: the server needs llama-cpp-python's server extra: "
                         "pip install 'llama-cpp-python[server]'\n")
        raise SystemExit(2) from None
    from breachlab.llama_open import without_extra_bufts_for_this_process

    without_extra_bufts_for_this_process()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
