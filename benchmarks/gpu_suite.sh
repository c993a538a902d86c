#!/usr/bin/env bash
# Every GPU measurement of issue 4 ("fast training") in one command, for a machine with one CUDA
# GPU and a Python that has archspec's dependencies (scripts/setup makes .venv).
#
#   [AIRBENCH=PATH/TO/airbench94.py] benchmarks/gpu_suite.sh DATA_DIR [OUT_DIR]
#
# DATA_DIR holds cifar-10-batches-py/ (the official download, or ../shared/data/materialize.py
# output). Everything printed is also written to OUT_DIR (default gpu-results/), one file a step:
#   1. train_speed: archspec vs the hand-optimized reference vs the reports' loop, images/s, for
#      c5l3 and variant2 at batch 64 and 512 (goal: archspec >= 0.95x reference; >= 9x the reports'
#      loop on c5l3), with compile auto (both sides torch.compile) and with CUDA graphs;
#   2. time_to_accuracy: specs/airbench.yaml + recipe fast, 10 seeds, eager and compiled, against
#      airbench94 (goal: its accuracy in <= 1.2x its time). Set AIRBENCH=PATH/TO/airbench94.py (your
#      clone of KellerJordan/cifar10-airbench) to run it here on the same data; without it the
#      comparison is with the published figure (94.01% in 3.83 s on an A100);
#   3. variant5: the full 64-epoch recipe (goal: under 5 minutes on one H100).
# Steps run in that order; set STEPS="1 3" (say) to run a subset. Takes about 20-25 minutes on an H100.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DATA_DIR [OUT_DIR]" >&2
    exit 2
fi
DATA=$1
OUT=${2:-gpu-results}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
STEPS=${STEPS:-"1 2 3"}
if [[ ! -d "$DATA/cifar-10-batches-py" ]]; then
    echo "$0: $DATA/cifar-10-batches-py not found" >&2
    exit 2
fi
AIRBENCH_ARGS=()
if [[ -n "${AIRBENCH:-}" ]]; then
    if [[ ! -f "$AIRBENCH" ]]; then
        echo "$0: AIRBENCH=$AIRBENCH: no such file" >&2
        exit 2
    fi
    AIRBENCH_ARGS=(--airbench "$(cd "$(dirname "$AIRBENCH")" && pwd)/$(basename "$AIRBENCH")")
fi
mkdir -p "$OUT"
cd "$ROOT"
"$PY" - <<'EOF' | tee "$OUT/environment.txt"
import torch
print("torch", torch.__version__, "| cuda", torch.version.cuda, "|", torch.cuda.get_device_name(0))
EOF

for step in $STEPS; do
    case $step in
    1)
        for spec in c5l3 variant2; do
            for mode in auto reduce-overhead; do
                "$PY" benchmarks/train_speed.py "specs/$spec.yaml" --device cuda --batch-size 64 512 \
                    --steps 100 --warmup 20 --repeats 3 --workers 16 --compile "$mode" \
                    | tee "$OUT/train_speed_${spec}_${mode}.txt"
            done
        done
        ;;
    2)
        # archspec eager (false) and torch.compile'd (auto); airbench94 runs as its file says (eager).
        for mode in false auto; do
            "$PY" benchmarks/time_to_accuracy.py --device cuda --data-dir "$DATA" --runs 10 --warmup-run \
                --compile "$mode" "${AIRBENCH_ARGS[@]}" --json "$OUT/time_to_accuracy_$mode.json" \
                | tee "$OUT/time_to_accuracy_$mode.txt"
        done
        ;;
    3)
        "$PY" -m archspec train specs/variant5.yaml --device cuda --data-dir "$DATA" \
            --runs-dir "$OUT/runs" --quiet | tee "$OUT/variant5.txt"
        ;;
    *)
        echo "$0: unknown step $step (steps are 1, 2, 3)" >&2
        exit 2
        ;;
    esac
done
echo "results in $OUT/"
