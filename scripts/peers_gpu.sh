#!/usr/bin/env bash
# The peer-arm training benchmark (issue 18) on a GPU machine that has no network:
# HF floor, TRL (padding-free + Liger), Unsloth and breachlab's arms, in one run per shape.
#
# Here (with network), the wheels the GPU image lacks (Python 3.12; pinned: Unsloth 2026.10.9
# wants trl <= 1.15 and transformers <= 5.17):
#   scripts/peers_gpu.sh wheels .whl
# (~90 MB: where each call carries at most 64 MiB with a ~20 MB checkout, carry them in three
# calls into one folder there: bitsandbytes alone (43 MB); unsloth, unsloth_zoo and diffusers;
# the rest.)
# There (repository root; WHEELS = that folder, GGUF = the Qwen2.5-Coder-1.5B GGUF, sha-checked):
#   WHEELS=.whl GGUF=/tmp/q15.gguf OUT=/tmp/peers scripts/peers_gpu.sh run [qwen|e4b|all]
# REPEATS rounds (2): each round runs every shape's arms once, each arm in its own process, so
# a run cut short still has a whole round (an arm that failed or was skipped is not run again:
# its error is in the first round's report); the rounds are merged as repeats into
# $OUT/{qwen-1.5b-lora,e4b-qlora}.json (tables in .txt), with the logs, the launch-latency probe
# and, with PROFILE=N, torch.profiler tables of the breachlab arms beside them. After the first
# Qwen round (MEMORY_HISTORY=0 skips it) the graphs arm runs once more with --memory-history:
# $OUT/qwen-1.5b-lora-memory.json says where its allocated peak is, by allocating line. After
# the first E4B round (EPOCH=0 skips it) the EPOCH_ARMS (breachlab-graphs-ple-disk-unpinned-plan2:
# pageable per-layer rows, two planned graphs) run a whole 750-step epoch once: $OUT/e4b-qlora-epoch.json
# has the host peak over an epoch (pageable rows, limit 4, 5 graphs: 2.74 GiB in the twelfth
# session, no growth in the replays after the last capture; each graph 0.10-0.24 GiB). Unsloth
# on E4B runs once after the rounds, with 900 s (E4B_UNSLOTH=0 skips it).
# docs/benchmarks.md ("Training throughput against the peers") has the numbers and their conditions.
set -u
WHEEL_PINS="trl==1.15.0 liger-kernel==0.8.5 bitsandbytes==0.50.2 unsloth==2026.10.9 unsloth_zoo==2026.10.9
datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 tyro==1.0.17 docstring_parser==0.18.0 typeguard==4.6.1
shtab==1.13.0 msgspec==0.23.0 gguf==0.19.0 cut_cross_entropy==25.1.1 torchao==0.18.0 hf_transfer==0.1.9
diffusers==0.42.1"
QWEN_ARMS=${QWEN_ARMS:-baseline,trl,unsloth,breachlab-graphs}
E4B_ARMS=${E4B_ARMS:-baseline,trl,breachlab-graphs-ple-disk,breachlab-graphs-ple-disk-unpinned}

case "${1:-}" in
  wheels)
    dest=${2:-.whl}; mkdir -p "$dest"
    for pin in $WHEEL_PINS; do
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dest" "$pin" || exit 1
    done
    ls -la "$dest" ;;
  run)
    : "${WHEELS:?WHEELS=folder of the wheels}" "${OUT:=/tmp/peers}" "${REPEATS:=2}"
    mkdir -p "$OUT" /tmp/peers-site
    if [ ! -f /tmp/peers-site/.wheels-installed ]; then  # once per machine: a second run reuses them
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/peers-site \
        "$WHEELS"/*.whl || exit 1
      touch /tmp/peers-site/.wheels-installed
    fi
    export PYTHONPATH=/tmp/peers-site:$PWD/src HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
      UNSLOTH_DISABLE_STATISTICS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    python3 benchmarks/launch_latency.py > "$OUT/launch-latency.json" 2>&1; cat "$OUT/launch-latency.json"
    what=${2:-all}
    working() {  # $1 = arms, $2 = a round's report: the arms without an error or a skip in it
      python3 -c 'import json, sys
arms, rep = sys.argv[1].split(","), json.load(open(sys.argv[2]))
bad = {a for a, runs in rep["results"][0]["arms"].items() if any("error" in r or "skipped" in r for r in runs)}
print(",".join(a for a in arms if a not in bad))' "$1" "$2" 2> /dev/null || echo "$1"
    }
    # repeat by repeat, each shape once per round: a run cut short keeps a whole round of every shape
    for k in $(seq 1 "$REPEATS"); do
      if [ "$what" = qwen ] || [ "$what" = all ]; then
        : "${GGUF:?GGUF=path of the Qwen2.5-Coder-1.5B GGUF}"
        python3 benchmarks/train_throughput.py --shape qwen-1.5b --weights "$GGUF" --methods lora \
          --arms "$QWEN_ARMS" --repeats 1 --steps 30 --warmup 5 --arm-timeout 240 --tmp /tmp/peers-tmp \
          --profile "${PROFILE:-0}" --profile-dir "$OUT" \
          --out "$OUT/qwen-1.5b-lora-r$k.json" > "$OUT/qwen-1.5b-lora-r$k.log" 2>&1
        echo "qwen round $k rc=$?"
        QWEN_ARMS=$(working "$QWEN_ARMS" "$OUT/qwen-1.5b-lora-r$k.json")
        if [ "$k" = 1 ] && [ "${MEMORY_HISTORY:-1}" != 0 ]; then  # where the default's allocated peak is (not timed)
          python3 benchmarks/train_throughput.py --shape qwen-1.5b --weights "$GGUF" --methods lora \
            --arms breachlab-graphs --memory-history --repeats 1 --steps 30 --warmup 5 --arm-timeout 300 \
            --tmp /tmp/peers-tmp --out "$OUT/qwen-1.5b-lora-memory.json" > "$OUT/qwen-1.5b-lora-memory.log" 2>&1
          echo "qwen memory history rc=$?"
        fi
      fi
      if [ "$what" = e4b ] || [ "$what" = all ]; then
        python3 benchmarks/train_throughput.py --shape e4b --methods qlora --arms "$E4B_ARMS" \
          --repeats 1 --steps 20 --warmup 4 --arm-timeout 400 --tmp /tmp/peers-tmp \
          --profile "${PROFILE:-0}" --profile-dir "$OUT" \
          --out "$OUT/e4b-qlora-r$k.json" > "$OUT/e4b-qlora-r$k.log" 2>&1
        echo "e4b round $k rc=$?"
        E4B_ARMS=$(working "$E4B_ARMS" "$OUT/e4b-qlora-r$k.json")
        if [ "$k" = 1 ] && [ "${EPOCH:-1}" != 0 ]; then  # host memory over a whole epoch's graphs
          epoch_arms=${EPOCH_ARMS:-breachlab-graphs-ple-disk-unpinned-plan2}
          python3 benchmarks/train_throughput.py --shape e4b --methods qlora --arms "$epoch_arms" \
            --arm-steps "$(echo "$epoch_arms" | sed 's/\([^,]*\)/\1=750/g')" --repeats 1 --steps 20 --warmup 4 \
            --arm-timeout 500 --tmp /tmp/peers-tmp --out "$OUT/e4b-qlora-epoch.json" > "$OUT/e4b-qlora-epoch.log" 2>&1
          echo "e4b whole epoch rc=$?"
        fi
      fi
    done
    if { [ "$what" = e4b ] || [ "$what" = all ]; } && [ "${E4B_UNSLOTH:-1}" != 0 ]; then
      # Unsloth on E4B last, once, with 900 s: its set-up and compile ran past 400 s (third run);
      # its report is named so that the merge below counts it with the rounds' ("-r" prefix)
      python3 benchmarks/train_throughput.py --shape e4b --methods qlora --arms unsloth --repeats 1 --steps 20 \
        --warmup 4 --arm-timeout 900 --tmp /tmp/peers-tmp --out "$OUT/e4b-qlora-r-unsloth.json" \
        > "$OUT/e4b-qlora-unsloth.log" 2>&1
      echo "e4b unsloth rc=$?"
    fi
    for shape in qwen-1.5b-lora e4b-qlora; do  # the rounds side by side, as repeats
      ls "$OUT/$shape"-r*.json > /dev/null 2>&1 && python3 benchmarks/train_throughput.py --shape "${shape%-*}" \
        --merge "$OUT/$shape"-r*.json --out "$OUT/$shape.json" > "$OUT/$shape.txt" 2>&1
    done
    grep -h '^{"arm"' "$OUT"/*.log | cut -c1-240 ;;
  *)
    sed -n '2,24p' "$0"; exit 2 ;;
esac
