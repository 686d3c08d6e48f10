"""Real training token ids for the throughput benchmark's Qwen shapes.

    # the data the Qwen2.5-Coder-0.5B real-code runs trained on (docs/benchmarks.md, issue 14)
    PYTHONPATH=src breachlab vuln data build --config configs/vuln/data-pairvul-mix.yaml \
        --set source_mix=pairvul=0.7,sven=0.2,juliet=0.1 --set n_test_per_class=500 \
        --set n_val_per_class=200 --set n_train_per_class=2700 --out /tmp/peers-data
    PYTHONPATH=src python benchmarks/make_train_tokens.py --data /tmp/peers-data \
        --gguf /work/models/qwen2.5-coder-0.5b-q4_k_m.gguf

Renders training samples of PairVul + Juliet exactly as ``breachlab vuln train`` does for a
Qwen model (``sources: [pairvul, juliet]``, ``max_seq_len: 1024``, the ChatML prompt and the
verdict answer of :func:`breachlab.vuln.prompts.training_example`, encoded by
:func:`breachlab.vuln.training.sft.encode` with the tokenizer transformers reads from the
GGUF) and writes ``benchmarks/data/train_tokens_pairvul_juliet_qwen.npz`` (``ids`` int32
flattened, ``offsets``, ``n_prompt``) with a JSON sidecar saying where they came from.
The 0.5B and 1.5B Coder models share one tokenizer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "data" / "train_tokens_pairvul_juliet_qwen.npz"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _built_by(data: Path) -> str | None:
    """The command that built the data directory (its run manifest), when it says."""
    manifest = data / "manifest.json"
    return json.loads(manifest.read_text()).get("command") if manifest.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a `breachlab vuln data build` run directory")
    ap.add_argument("--gguf", type=Path, required=True, help="a Qwen2.5-Coder GGUF (its tokenizer is used)")
    ap.add_argument("--n", type=int, default=1200, help="samples to keep")
    ap.add_argument("--max-seq-len", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    train = args.data / "train.jsonl"
    if not train.is_file() or not args.gguf.is_file():
        print(f"make_train_tokens: need {train} and {args.gguf}", file=sys.stderr)
        raise SystemExit(2)
    import numpy as np
    import transformers
    from transformers import AutoTokenizer

    from breachlab.vuln.sample import only_sources, read_samples
    from breachlab.vuln.training.sft import encode

    samples = only_sources(read_samples(train), ["pairvul", "juliet"], where=str(train))
    random.Random(args.seed).shuffle(samples)
    samples = samples[: args.n]
    tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
    enc = [encode(tok, s, args.max_seq_len) for s in samples]
    lengths = [len(e.ids) for e in enc]
    ids = np.fromiter((t for e in enc for t in e.ids), dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_prompt = np.array([e.n_prompt for e in enc], dtype=np.int32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, ids=ids, offsets=offsets, n_prompt=n_prompt)
    by_source: dict[str, int] = {}
    for s in samples:
        by_source[s.source] = by_source.get(s.source, 0) + 1
    meta = {
        "what": "real training token ids (prompt + verdict answer) for the Qwen shapes of train_throughput.py",
        "command": "python benchmarks/make_train_tokens.py " + " ".join(sys.argv[1:]),
        "data_built_by": _built_by(args.data),
        "sources": by_source, "labels": {str(k): sum(s.label == k for s in samples) for k in (0, 1)},
        "samples": len(enc), "tokens": int(ids.size), "max_seq_len": args.max_seq_len,
        "truncated": sum(e.truncated for e in enc), "longest": max(lengths), "shortest": min(lengths),
        "answer_tokens": sum(e.n_answer for e in enc), "seed": args.seed,
        "tokenizer": f"{args.gguf.name} through transformers {transformers.__version__} (vocab {len(tok)})",
        "inputs_sha256": {str(train): sha256(train), args.gguf.name: sha256(args.gguf)},
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1), f"\n-> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
