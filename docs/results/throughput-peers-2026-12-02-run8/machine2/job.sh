#!/usr/bin/env bash
# one-off GPU job of the twelfth session, second machine (not committed): E4B unpinned epoch, Qwen rounds, E4B round 2
R=/tmp/res; W=/tmp/w
date -u +%T > $R/start
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peers-site $W/*.whl > $R/pip.log 2>&1 && touch /tmp/peers-site/.wheels-installed
export PYTHONPATH=/tmp/peers-site:/tmp/repo/src:/tmp/repo HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  UNSLOTH_DISABLE_STATISTICS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p $R/e4b-epoch
python3 benchmarks/train_throughput.py --shape e4b --methods qlora --arms breachlab-graphs-ple-disk-unpinned \
  --arm-steps breachlab-graphs-ple-disk-unpinned=750 --repeats 1 --steps 20 --warmup 4 --arm-timeout 500 \
  --tmp /tmp/peers-tmp --out $R/e4b-epoch/e4b-qlora-epoch.json > $R/e4b-epoch/e4b-qlora-epoch.log 2>&1
echo "epoch rc=$? $(date -u +%T)" >> $R/steps
for i in $(seq 1 120); do [ -f /tmp/q15.ok ] && break; sleep 5; done
QWEN_ARMS=baseline,trl,breachlab-graphs REPEATS=2 MEMORY_HISTORY=0 WHEELS=$W GGUF=/tmp/q15.gguf OUT=$R/qwen PROFILE=0 \
  scripts/peers_gpu.sh run qwen > $R/run-qwen.log 2>&1
echo "qwen rc=$? $(date -u +%T)" >> $R/steps
E4B_ARMS=breachlab-graphs-ple-disk-unpinned,baseline,trl,breachlab-graphs-ple-disk REPEATS=1 E4B_UNSLOTH=0 EPOCH=0 WHEELS=$W OUT=$R/e4b-round2 PROFILE=0 \
  scripts/peers_gpu.sh run e4b > $R/run-e4b-round2.log 2>&1
echo "e4b round2 rc=$? $(date -u +%T)" >> $R/steps
touch $R/DONE
