#!/usr/bin/env bash
# Reproduce results/omniglot from the original Omniglot archives (images_background.zip, images_evaluation.zip).
# Usage: bash results/omniglot/reproduce.sh [SRC]   (SRC defaults to ../shared/data/omniglot)
# WORK (default work-runs/omniglot) holds the prepared store and the run folders; OUT the records.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:-../shared/data/omniglot}
WORK=${WORK:-work-runs/omniglot}
OUT=${OUT:-results/omniglot/records}
STEPS=${STEPS:-5000}
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
EPISODES=episodes/omniglot-vinyals-test

start=$(date +%s)
[ -f "$WORK/store/store.json" ] || $FEWSHOT prepare omniglot --src "$SRC" --out "$WORK/store" --no-progress
for shots in 1 5; do
  run="$WORK/protonet-${shots}shot"
  resume=""; [ -f "$run/checkpoints/last.pt" ] && resume="--resume"
  grep -qs '"finished"' "$run/run.json" || \
    $FEWSHOT train --config protonet-omniglot --data "$WORK/store" --out "$run" --no-progress --device cpu $resume \
      episodes.shots=$shots train.val_shots=$shots train.steps=$STEPS
done
train_end=$(date +%s)
mkdir -p "$OUT"
$FEWSHOT eval --run "$WORK/protonet-1shot" --method protonet --device cpu \
  --episodes $EPISODES-5w1s-15q-1000.npz $EPISODES-20w1s-15q-1000.npz --out "$OUT"
$FEWSHOT eval --run "$WORK/protonet-5shot" --method protonet --device cpu \
  --episodes $EPISODES-5w5s-15q-1000.npz $EPISODES-20w5s-15q-1000.npz --out "$OUT"
$FEWSHOT eval --backbone pixels --data "$WORK/store" --device cpu --episodes $EPISODES-*-15q-1000.npz --out "$OUT"
$FEWSHOT table "$OUT" --format md > results/omniglot/table.md
end=$(date +%s)
echo "wall time: training $((train_end - start)) s, total $((end - start)) s" | tee results/omniglot/wall_time.txt
