"""The 20-run scam-brain experiment on a Colab A100/H100, end to end (docs/brain-gpu-recipe.md).

    python scripts/brain_colab_recipe.py --breachlab /content/breachlab --hf-token hf_xxx [--all-variants]

Or paste the ``# %%`` cells into a notebook.  Steps: install (TRIBE v2 from git at a pinned
commit, ``breachlab[brain-tribe]``, espeak-ng, ffmpeg, spaCy's English model), log in to the
Hugging Face hub (Llama 3.2 is gated), ``brain doctor``, then corpus → render → encode
(text + screenshot, EN + JA: the post's 20 runs) → analyze.  Each step is a breachlab command
writing a run directory; re-running the script resumes the encode run instead of redoing it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# Pin TRIBE v2 to the commit you validated; `main` moves.  (Not verifiable from the machine
# this script was written on: no GPU weights or hub access there.)
TRIBEV2 = "git+https://github.com/facebookresearch/tribev2@7239908"  # the commit the contract test runs


def sh(cmd: str, check: bool = True) -> int:
    print(f"\n$ {cmd}", flush=True)
    rc = subprocess.run(cmd, shell=True).returncode
    if check and rc != 0:
        sys.exit(f"step failed ({rc}): {cmd}")
    return rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--breachlab", default=".", help="breachlab source folder (git checkout) or a wheel")
    ap.add_argument("--tribev2", default=TRIBEV2,
                    help="pip spec for TRIBE v2 (default: the commit the contract test runs)")
    ap.add_argument("--hf-token", default=os.environ.get("HF_TOKEN"),
                    help="token of an account that accepted Llama 3.2")
    ap.add_argument("--runs", default="runs", help="where run directories go")
    ap.add_argument("--all-variants", action="store_true",
                    help="all 40 seed messages (4 variants) instead of the post's 10")
    ap.add_argument("--skip-install", action="store_true")
    a = ap.parse_args()
    runs = Path(a.runs)

    # %% 1. GPU
    sh("nvidia-smi --query-gpu=name,memory.total --format=csv")

    # %% 2. install (own venv on a workstation; Colab's system Python is fine)
    if not a.skip_install:
        sh("apt-get -qq update && apt-get -qq install -y espeak-ng ffmpeg")
        sh(f"pip install -q '{a.tribev2}'")
        src = a.breachlab if a.breachlab.endswith(".whl") else f"-e {a.breachlab}"
        sh(f"pip install -q {src}'[brain-tribe]'" if src.startswith("-e") else f"pip install -q '{src}[brain-tribe]'")
        sh("pip install -q 'exca<=0.5.25'")  # again, in case tribev2's resolver moved it
        sh("python -m spacy download en_core_web_lg")

    # %% 3. Hugging Face: Llama-3.2-3B is gated (accept the licence on its hub page first)
    if a.hf_token:
        os.environ["HF_TOKEN"] = a.hf_token
        sh(f"python -c \"from huggingface_hub import login; login('{a.hf_token}')\"")

    # %% 4. doctor: must end with 'ready for --backend tribev2'
    sh(f"breachlab brain doctor --cache {runs}")

    # %% 5. corpus: post 3's 5 types x EN/JA (variant 0 = the post's exact English texts)
    runs.mkdir(parents=True, exist_ok=True)
    corpus = runs / ("seed_all.yaml" if a.all_variants else "seed_post.yaml")
    if not corpus.is_file():
        from breachlab.brain.corpus import dump_corpus, filter_corpus, seed_corpus

        c = seed_corpus() if a.all_variants else filter_corpus(seed_corpus(), max_variant=0)
        dump_corpus(c, corpus)
    tag = corpus.stem

    # %% 6. render screenshots (+ still-video manifests: 16 frames)
    if not (runs / f"render-{tag}").is_dir():
        sh(f"breachlab brain render {corpus} --out {runs}/render-{tag}")

    # %% 7. encode: text (gTTS speech -> WhisperX -> Llama + w2v-bert) and screenshot (V-JEPA2)
    #        = 20 predictions for the post's corpus; re-running resumes
    sh(f"breachlab brain encode {runs}/render-{tag} --backend tribev2 --paths text,screenshot "
       f"--tts gtts --aligner whisperx --cache {runs}/tribe-cache --out {runs}/encode-{tag}")
    # optional: separate speech from reading (post 4's "text" was speech)
    sh(f"breachlab brain encode {runs}/render-{tag} --backend tribev2 --paths audio "
       f"--tts gtts --cache {runs}/tribe-cache --out {runs}/encode-{tag}-audio", check=False)
    sh(f"breachlab brain encode {runs}/render-{tag} --backend tribev2 --paths text --text-mode reading "
       f"--cache {runs}/tribe-cache --out {runs}/encode-{tag}-reading", check=False)

    # %% 8. analyze: differential maps, ROI table, EN-JA r, text vs screenshot, report.html
    sh(f"breachlab brain analyze {runs}/encode-{tag} --out {runs}/analyze-{tag}"
       + (" --set figures=all" if a.all_variants else ""), check=False)
    print(f"\nreport: {runs}/analyze-{tag}/report.html\nencode timings: {runs}/encode-{tag}/encode_summary.json")


if __name__ == "__main__":
    main()
