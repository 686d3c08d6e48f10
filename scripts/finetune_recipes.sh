#!/usr/bin/env bash
# Fine-tune one adapter per training-data recipe and evaluate each, and the zero-shot base,
# on each test domain separately (in-domain and cross-domain), then compare them pairwise.
#
#   scripts/finetune_recipes.sh MODEL DATA OUTDIR [CONFIG]
#   RECIPES="juliet sven mix" EPOCHS_sven=4 DEVICE=cuda scripts/finetune_recipes.sh \
#       ~/.cache/breachlab/models/gemma-3-270m-q4_k_m.gguf runs/data-gpu runs/recipes
#
# Per recipe: EPOCHS_<recipe>=N, SET_<recipe>="--set key=value ...".
# Recipes: juliet (train+validate on Juliet only), sven (SVEN only), mix (everything in DATA).
# Each writes OUTDIR/train-<recipe>, OUTDIR/eval-<recipe>-<domain>; the base model is
# OUTDIR/eval-zeroshot-<domain>; OUTDIR/compare-<domain> lines them all up on the same samples.
set -euo pipefail
MODEL=$1 DATA=$2 OUT=$3 CONFIG=${4:-configs/vuln/gemma3-270m-lora-gpu.yaml}
RECIPES=${RECIPES:-"juliet sven mix"}
DOMAINS=${DOMAINS-"juliet sven"}   # DOMAINS="" trains only (evaluate elsewhere)
DEVICE=${DEVICE:-cuda}
EXTRA_TRAIN=${EXTRA_TRAIN:-}   # more --set key=value for training (smoke tests)
EXTRA_EVAL=${EXTRA_EVAL:-}     # more options for eval, e.g. --limit 20
BL=(${PYTHON:-python3} -m breachlab.cli)
mkdir -p "$OUT"

evaluate() {  # name [adapter]
  for d in $DOMAINS; do
    [ -e "$OUT/eval-$1-$d/metrics.json" ] && continue
    "${BL[@]}" vuln eval --data "$DATA" --model "$MODEL" --backend transformers --mode logit --sources "$d" \
      ${2:+--adapter "$2"} --set device="$DEVICE" --set n_ctx=2304 $EXTRA_EVAL --out "$OUT/eval-$1-$d"
  done
}

evaluate zeroshot
for r in $RECIPES; do
  src=""; [ "$r" != mix ] && src="--set sources=[$r]"
  epochs_var="EPOCHS_$r"; epochs=${!epochs_var:-1}
  set_var="SET_$r"; extra_r=${!set_var:-}   # e.g. SET_juliet="--set max_train_samples=3000"
  if [ ! -e "$OUT/train-$r/manifest.json" ] || ! grep -q '"status": "finished"' "$OUT/train-$r/manifest.json"; then
    rm -rf "$OUT/train-$r"
    "${BL[@]}" vuln train --config "$CONFIG" --set model="$MODEL" --set data="$DATA" --set device="$DEVICE" \
      --set epochs="$epochs" $src $extra_r $EXTRA_TRAIN --out "$OUT/train-$r"
  fi
  evaluate "$r" "$OUT/train-$r/best"
done
for d in $DOMAINS; do
  runs=("$OUT/eval-zeroshot-$d"); for r in $RECIPES; do runs+=("$OUT/eval-$r-$d"); done
  [ -e "$OUT/compare-$d" ] || "${BL[@]}" vuln compare "${runs[@]}" --out "$OUT/compare-$d"
done
