#!/usr/bin/env bash
# Real 2-GPU DDP (NCCL) check: the trainer under torchrun on 2 GPUs vs 1 process with grad_accum 2,
# on the tiny Gemma 3 test model (fp32). Expect a bit-identical adapter and identical losses.
#   OUT=/tmp/ddp-check scripts/ddp_check.sh      (run from the repository root, 2 CUDA GPUs)
set -u
OUT=${OUT:-/tmp/ddp-check}; mkdir -p $OUT; rm -rf /tmp/r1 /tmp/r2
export PYTHONPATH=$PWD/src:$PWD TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name --format=csv,noheader
${PYTHON:-python3} -c "
from pathlib import Path
from tests.vuln.tiny import gemma3_dir, samples_jsonl
gemma3_dir(Path('/tmp/tiny/model')); samples_jsonl(Path('/tmp/tiny/data'), n_train=64, n_val=16)"
COMMON="--set model=/tmp/tiny/model --set data=/tmp/tiny/data --set device=cuda --set dtype=float32 --set max_steps=8 --set batch_size=4 --set eval_every=4 --set save_every=0 --set lr=1e-3 --set max_seq_len=512 --set gradient_checkpointing=false"
timeout 200 torchrun --standalone --nproc_per_node 2 -m breachlab.cli vuln train $COMMON --out /tmp/r2 > $OUT/ddp2.log 2>&1; echo "2proc rc=$?"
timeout 150 ${PYTHON:-python3} -m breachlab.cli vuln train $COMMON --set grad_accum=2 --out /tmp/r1 > $OUT/ddp1.log 2>&1; echo "1proc rc=$?"
${PYTHON:-python3} - <<'PY'
import csv, json
from safetensors.torch import load_file
a = load_file('/tmp/r2/final/adapter_model.safetensors'); b = load_file('/tmp/r1/final/adapter_model.safetensors')
print('adapter max |diff|', max(float((a[k] - b[k]).abs().max()) for k in a), 'tensors', len(a))
r2 = list(csv.DictReader(open('/tmp/r2/metrics.csv'))); r1 = list(csv.DictReader(open('/tmp/r1/metrics.csv')))
print('train loss 2proc', [r['train_loss'] for r in r2]); print('train loss 1proc', [r['train_loss'] for r in r1])
print('val 2proc', [r['val_loss'] for r in r2 if r['val_loss']], 'val 1proc', [r['val_loss'] for r in r1 if r['val_loss']])
m = json.load(open('/tmp/r2/manifest.json')); print('processes', m.get('processes'), 'status', m.get('status'))
PY
cp /tmp/r2/metrics.csv $OUT/metrics-2proc.csv; cp /tmp/r1/metrics.csv $OUT/metrics-1proc.csv
