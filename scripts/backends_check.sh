#!/usr/bin/env bash
# vuln train through each backend and method on one GPU, 40 steps each (a smoke comparison,
# not a benchmark: each run's time includes its warm-up).
#   MODEL=/path/to/hf-model-dir DATA=runs/data-juliet-sven OUT=/tmp/backends scripts/backends_check.sh
# backend: unsloth needs the optional unsloth package (and its unsloth_zoo, trl, datasets).
set -u
MODEL=${MODEL:?set MODEL to a transformers model directory}; DATA=${DATA:?set DATA to a data run directory}
OUT=${OUT:-/tmp/backends}; mkdir -p "$OUT"
B="${PYTHON:-python3} -m breachlab vuln train --config configs/vuln/gemma3-270m-lora-gpu.yaml --set model=$MODEL --set data=$DATA --set max_steps=40 --set eval_every=40 --set save_every=0 --set max_val_samples=64 --set lora_dropout=0 --set max_seq_len=512 --set batch_size=8 --set epochs=1"
for arm in ${ARMS:-"breachlab:lora" "breachlab:qlora" "unsloth:lora" "unsloth:qlora"}; do
  backend=${arm%%:*}; method=${arm##*:}; run=$OUT/run-$backend-$method; rm -rf "$run"
  timeout 300 $B --set backend=$backend --set method=$method --out "$run" > "$OUT/train-$backend-$method.log" 2>&1
  echo "$backend $method rc=$?"
  ${PYTHON:-python3} -c "import json; m=json.load(open('$run/manifest.json')); print({k: m.get(k) for k in ('samples_per_second','peak_memory_bytes','train_seconds','best_val_loss','cuda_graphs','kernels','unsloth_version')})" 2>&1 | tail -1
done
