"""What one ``breachlab vuln scan`` reads: every setting of the command in one dataclass.

Why a class of its own (and not :class:`~.scanner.ScanConfig`): the command has settings the
scan engine does not (model, backend, report format, baseline, ``--changed-since``), and
``ScanConfig`` has engine knobs a user never sets.  This class is what ``--config
scan.yaml``, the named flags and ``--set key=value`` resolve into (through
:func:`breachlab.cli_options.load_config`, which rejects unknown keys), what ``breachlab
vuln config scan`` lists, and what ``--out DIR`` stores as the run's ``config.yaml``.  It
imports nothing heavy, so listing the keys loads no model and no parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from breachlab.config import field
from breachlab.vuln.scan import statictools
from breachlab.vuln.scan.formats import FORMATS

BACKENDS = ("auto", "llama.cpp", "transformers", "openai", "none")

# the file name of the report inside a run directory (--out DIR), by --format
REPORT_FILES = {"text": "report.txt", "json": "report.json", "sarif": "report.sarif",
                "markdown": "report.md", "html": "report.html"}


@dataclass
class ScanCommandConfig:
    """Settings of ``breachlab vuln scan`` (defaults ← --config ← named flags ← --set)."""

    paths: list[str] = field(default_factory=list, help="C/C++ files or folders to scan (the PATH arguments "
                                                        "replace these when given).")
    model: str = field("embedded", help="embedded, a ladder name (breachlab models list), a .gguf file, a HF "
                                        "dir; with backend openai the server's model name.")
    backend: str = field("auto", help="auto, llama.cpp, transformers, openai (a server) or none (no model).")
    base_url: str | None = field(None, help="backend openai: the server, e.g. http://127.0.0.1:8080/v1.")
    concurrency: int = field(4, help="backend openai: requests in flight.")
    no_model: bool = field(False, help="Static tools and the calibrated combiner only.")
    adapter: str | None = field(None, help="LoRA adapter: default (shipped), none (zero-shot), a .gguf LoRA or a "
                                           "PEFT dir. Unset: default for the embedded model.")
    deep: bool = field(False, help="Also let the model score functions no static tool flagged (slow); decided by "
                                   "the calibration's `deep` combiner (none in it: give min_confidence).")
    tools: list[str] = field(default_factory=lambda: list(statictools.DEFAULT_TOOLS),
                             help="Static tools that produce candidates: cppcheck, flawfinder, clang-tidy, gcc "
                                  "(GCC's -fanalyzer; default: all four).")
    calibration: str | None = field(None, help="Calibration JSON from `breachlab vuln calibrate` (default: the "
                                               "shipped one, when it matches the settings).")
    format: str = field("text", help="Report format: text, json, sarif, markdown or html.")
    output: str | None = field(None, help="Write the report to this file instead of stdout.")
    min_confidence: float | None = field(None, help="Report at or above this confidence (default: the "
                                                    "calibration's threshold).")
    baseline: str | None = field(None, help="JSON report of an earlier scan: its findings are suppressed.")
    changed_since: str | None = field(None, help="Only functions a `git diff GIT_REF` touches (tracked files).")
    jobs: int = field(2, help="Parallel static-tool processes and parser threads.")
    threads: int | None = field(None, help="Model CPU threads (default: all cores).")
    n_ctx: int = field(4096, help="Model context; longer functions are cut, never fatal.")
    explain: bool = field(True, help="Generate verdict/CWE/reason for findings (false: scores only).")
    strip_comments: bool = field(True, help="Remove comments before the model sees code (they are untrusted).")
    cache: bool = field(True, help="Reuse tool results and scores of unchanged code from $BREACHLAB_CACHE/scan.")
    gitignore: bool = field(True, help="Respect .gitignore files (in folder walks).")
    include_vendored: bool = field(False, help="Also scan third_party/vendor/build folders.")
    exclude: list[str] = field(default_factory=list, help="Extra file/folder globs to skip.")
    max_file_bytes: int = field(2_000_000, help="Skip files larger than this.")
    max_line_chars: int = field(500, help="Cut longer lines before the model (a note says so).")
    static_timeout: float = field(60.0, help="Seconds before one static tool process is abandoned with a skip note "
                                             "(one batch of files; one file for gcc). Default 60.")

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown --format {self.format!r}: use {', '.join(FORMATS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}: use {', '.join(BACKENDS)}")
        bad = [t for t in self.tools if t not in statictools.TOOLS]
        if bad:
            raise ValueError(f"unknown static tool(s) {', '.join(bad)}: use {', '.join(statictools.TOOLS)}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")
        if self.deep and not self.use_model:
            raise ValueError("--deep needs a model (drop --no-model / --backend none)")
        for name in ("jobs", "concurrency", "n_ctx", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.max_line_chars < 40:
            raise ValueError("--max-line-chars must be at least 40")
        if not self.static_timeout > 0:
            raise ValueError(f"static_timeout must be > 0 seconds, got {self.static_timeout}")

    @property
    def use_model(self) -> bool:
        """Whether the scan loads a model (``no_model`` and ``backend: none`` both say no)."""
        return not self.no_model and self.backend != "none"

    @property
    def report_file(self) -> str:
        """The report's file name inside a run directory (``--out DIR``)."""
        return REPORT_FILES[self.format]
