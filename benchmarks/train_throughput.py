"""Training throughput: HF Trainer + PEFT (the floor), TRL, Unsloth and breachlab's SFT path, in ONE run.

    # on the lent H200 / H100 — Qwen2.5-Coder-1.5B, real weights, LoRA: the peers against the trainer
    python benchmarks/train_throughput.py --shape qwen-1.5b --weights qwen2.5-coder-1.5b-q4_k_m.gguf \
        --methods lora --arms baseline,trl,unsloth,breachlab-same-order,breachlab-graphs --repeats 2 \
        --steps 40 --out qwen15-lora.json
    # Gemma 4 E4B shape (random init: no weights exist here), QLoRA
    python benchmarks/train_throughput.py --shape e4b --methods qlora \
        --arms baseline,trl,unsloth,breachlab-same-order,breachlab-graphs --repeats 2 --steps 20 --out e4b-qlora.json
    # where one command may run only so long: the arms in parts, then side by side
    python benchmarks/train_throughput.py --shape qwen-1.5b --weights ... --arms baseline,trl --out a.json
    python benchmarks/train_throughput.py --shape qwen-1.5b --weights ... --arms unsloth,breachlab-graphs --out b.json
    python benchmarks/train_throughput.py --shape qwen-1.5b --merge a.json b.json --out qwen15-lora.json
    # the older commands still work (random-init models of the real architectures, no weights needed)
    python benchmarks/train_throughput.py --shape e4b --methods qlora,lora --steps 20 --out e4b.json
    python benchmarks/train_throughput.py --shape 270m --methods lora --steps 20 --out 270m.json
    # where a step's time goes (torch.profiler tables next to the JSON), and the no-checkpointing arm
    python benchmarks/train_throughput.py --shape e4b --methods qlora --steps 16 --profile 3 --profile-dir . \
        --arms baseline,breachlab-same-order,breachlab-no-ckpt
    # on the 2-core CPU (what tests/test_train_throughput_arms.py runs, smaller)
    python benchmarks/train_throughput.py --shape tiny-qwen2 --device cpu --batch-size 2 --steps 3 --warmup 1 \
        --repeats 1 --arms baseline,breachlab-packed,trl,unsloth

Every arm runs in its own process (``--repeats`` times, a fresh process each): Unsloth must
be imported before transformers and patches it globally, and the process's resident-set
high-water mark is then the arm's own peak host memory.  A failing arm is recorded with its
error, an arm whose library is missing (or needs CUDA) as skipped with the reason; the
others go on.  The code is the package ``benchmarks/throughput/``; this file is its entry.

Shapes: ``e4b`` / ``270m`` (Gemma 4 E4B / Gemma 3 270M, random init, the real lengths of the
Juliet + SVEN training set with random ids), ``qwen-0.5b`` / ``qwen-1.5b`` (Qwen2.5-Coder,
config from the GGUF header; real weights with ``--weights``, else random init — the output
says which) trained on real token ids of PairVul + Juliet training samples
(``benchmarks/data/train_tokens_pairvul_juliet_qwen.npz``, made by
``benchmarks/make_train_tokens.py``), and ``tiny-qwen2`` for the CPU test.

Arms, each on a fresh model with the same seed and the same batches in the same order (so
every arm's per-step losses compare with the floor's), the same LoRA (r16, alpha 16, dropout
0, q/k/v/o/gate/up/down), lr 2e-4 constant, AdamW, clip 1.0, gradient checkpointing, bf16 on CUDA:

* ``baseline`` — the floor: ``transformers.Trainer`` + PEFT (:mod:`throughput.arm_hf`).
* ``trl`` — TRL's ``SFTTrainer`` as its docs recommend for speed: padding-free, completion-only
  loss, Liger when installed, FlashAttention-2 when installed (:mod:`throughput.arm_trl`);
  ``trl-packed`` adds BFD packing (its own batches).
* ``unsloth`` — Unsloth's ``FastLanguageModel`` + TRL (:mod:`throughput.arm_unsloth`); CUDA only.
* ``breachlab-*`` — the trainer's pieces, one feature at a time (:mod:`throughput.arm_breachlab`):
  ``breachlab-padded``, ``breachlab-packed``, ``breachlab-same-order`` (the trainer's eager path
  on CUDA), ``breachlab-graphs`` (its CUDA default), ``breachlab-graphs-v4``,
  ``breachlab-graphs-budget``, ``breachlab-no-ckpt``, ``breachlab-regional-compile`` (``--compile``).

Reported per arm and run (:mod:`throughput.measure`): samples/s and real tokens/s of the
median timed step (after ``--warmup``), warm-up / capture seconds apart, epoch wall time
(set-up + every step), peak GPU memory allocated and reserved during training (reset after
the model is built; the build peak apart), peak host memory, MFU (bf16 dense peak 989
TFLOP/s), per-step losses; over repeats, min–max ranges, ratios to the floor and to the best
peer arm (baseline, trl, unsloth), and the loss gap to the floor.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the throughput package beside this file

from throughput.cli import main  # noqa: E402

if __name__ == "__main__":
    main(__doc__)
