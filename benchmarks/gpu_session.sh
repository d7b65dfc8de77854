#!/usr/bin/env bash
# One call on a lent GPU machine: the recipe ablation on CUDA (bench_recipe.py, 3 seeds per row)
# and the GPU speed table (bench_gpu.py). Runs from the repo root with the machine's own python3
# (PyTorch + CUDA, numpy, scipy, tifffile, onnxruntime, click, tqdm); nothing is installed.
#
#   OUT=/tmp/gpu_out bash benchmarks/gpu_session.sh            # the default (aligned stem) vs robust (the tolerant one)
#   ROWS="robust robust-x6 v2-x6" CHECKPOINTS="best last" SPEED=0 OUT=/tmp/gpu_out bash benchmarks/gpu_session.sh
#   TRAIN_BACKGROUNDS=photo ROOT=/tmp/abl_photo OUT=/tmp/o_photo SPEED=0 bash benchmarks/gpu_session.sh   # other training kinds
#   DEVICE=cpu N_TRAIN=2 N_EVAL=3 N_BIG=3 EPOCHS=1 JOBS=2 TRAIN_S=60 bash benchmarks/gpu_session.sh   # smoke test
#
# Results (small files only) land in $OUT: gpu.txt, bench_gpu.txt, prepare/train/score logs,
# score.json, score.md (score_last.* for last.pt) and runs.tgz (summary.json, metrics.jsonl, recipe.json, train.log per run).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
ROOT=${ROOT:-/tmp/bgsdk_ablation}
DEVICE=${DEVICE:-cuda}
N_TRAIN=${N_TRAIN:-64}
N_EVAL=${N_EVAL:-24}
EPOCHS=${EPOCHS:-10}
JOBS=${JOBS:-8}
TRAIN_S=${TRAIN_S:-330}
ROWS=${ROWS:-robust-aligned robust}
SEEDS=${SEEDS:-0 1 2}
N_BIG=${N_BIG:-192}   # strips of the big-test / big-unseen / big-photo sets (bench_recipe.py prepare-big)
CHECKPOINTS=${CHECKPOINTS:-best}
SPEED=${SPEED:-1}
TRAIN_BACKGROUNDS=${TRAIN_BACKGROUNDS:-train}   # bench_recipe.py prepare --train-backgrounds
PY=${PY:-python3}
export PYTHONPATH="$PWD/sdk:$PWD/trainer:$PWD/build_tools:$PWD/benchmarks" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

if [ -n "$(ls -A "$ROOT/runs" 2>/dev/null)" ]; then
    echo "note: $ROOT/runs already holds runs ($(ls "$ROOT/runs" | tr '\n' ' ')); the score step scores them too (use a fresh ROOT)" >&2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc; lscpu | grep 'Model name'; } > "$OUT/gpu.txt"
stamp "prepare"
$PY benchmarks/bench_recipe.py prepare --root "$ROOT" --n-train "$N_TRAIN" --n-eval "$N_EVAL" \
    --train-backgrounds "$TRAIN_BACKGROUNDS" > "$OUT/prepare.log" 2>&1 || { tail "$OUT/prepare.log"; exit 1; }
$PY benchmarks/bench_recipe.py prepare-big --root "$ROOT" --n-big "$N_BIG" >> "$OUT/prepare.log" 2>&1 || { tail "$OUT/prepare.log"; exit 1; }
stamp "train"
$PY benchmarks/bench_recipe.py train --root "$ROOT" --rows $ROWS --seeds $SEEDS --epochs "$EPOCHS" --width 16 \
    --device "$DEVICE" --jobs "$JOBS" --threads 2 --deadline-s "$TRAIN_S" > "$OUT/train.log" 2>&1
tail -n 30 "$OUT/train.log"
for ck in $CHECKPOINTS; do
    sfx=$([ "$ck" = best ] && echo "" || echo "_$ck")   # best.pt -> score.json, last.pt -> score_last.json
    stamp "score $ck.pt"
    $PY benchmarks/bench_recipe.py score --root "$ROOT" --n-eval "$N_EVAL" --sets test unseen robust-val big-test big-unseen big-photo \
        --device "$DEVICE" --jobs "$JOBS" --threads 2 --checkpoint "$ck" \
        --json "$OUT/score$sfx.json" --markdown "$OUT/score$sfx.md" > "$OUT/score$sfx.log" 2>&1
    tail -n 3 "$OUT/score$sfx.log"
done
(cd "$ROOT" && tar czf "$OUT/runs.tgz" runs/*/summary.json runs/*/metrics.jsonl runs/*/train.log $(ls runs/*/recipe.json 2>/dev/null))
if [ "$DEVICE" = cuda ] && [ "$SPEED" = 1 ]; then
    stamp "bench_gpu"
    timeout 150 $PY benchmarks/bench_gpu.py > "$OUT/bench_gpu.txt" 2>&1
    cat "$OUT/bench_gpu.txt"
fi
stamp "done"
cat "$OUT/score.md"
