#!/usr/bin/env bash
# one-off GPU job of the twelfth session, first machine (not committed): tests, E4B round 1 + unpinned epoch,
# Qwen rounds, E4B round 2. The machine was given back (idle) during the epoch: only the tests and
# E4B round 1 came back.
R=/tmp/res; W=/tmp/w
date -u +%T > $R/start
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peers-site $W/*.whl > $R/pip.log 2>&1 && touch /tmp/peers-site/.wheels-installed
export PYTHONPATH=/tmp/peers-site:/tmp/repo/src:/tmp/repo HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
timeout 300 python3 -m pytest -m gpu tests/vuln/test_speed.py -q -p no:cacheprovider > $R/gpu-tests.log 2>&1
echo "tests rc=$? $(date -u +%T)" >> $R/steps
E4B_ARMS=baseline,trl,breachlab-graphs-ple-disk,breachlab-graphs-ple-disk-unpinned REPEATS=1 E4B_UNSLOTH=0 WHEELS=$W OUT=$R/e4b PROFILE=0 \
  scripts/peers_gpu.sh run e4b > $R/run-e4b.log 2>&1
echo "e4b rc=$? $(date -u +%T)" >> $R/steps
for i in $(seq 1 120); do [ -f /tmp/q15.ok ] && break; sleep 5; done
QWEN_ARMS=baseline,trl,breachlab-graphs REPEATS=2 WHEELS=$W GGUF=/tmp/q15.gguf OUT=$R/qwen PROFILE=0 \
  scripts/peers_gpu.sh run qwen > $R/run-qwen.log 2>&1
echo "qwen rc=$? $(date -u +%T)" >> $R/steps
E4B_ARMS=breachlab-graphs-ple-disk-unpinned,breachlab-graphs-ple-disk,baseline,trl REPEATS=1 E4B_UNSLOTH=0 EPOCH=0 WHEELS=$W OUT=$R/e4b-round2 PROFILE=0 \
  scripts/peers_gpu.sh run e4b > $R/run-e4b-round2.log 2>&1
echo "e4b round2 rc=$? $(date -u +%T)" >> $R/steps
touch $R/DONE
