#!/usr/bin/env bash
# Seeds 1 and 2 of the two Siamese triplet runs (with and without CIR) of run.sh, on the same stores and
# episodes, so the CIR difference is measured over 3 seeds.  Run after run.sh (it reuses WORK's stores).
#   SEEDS="1 2" bash results/omniglot-lake/seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=results/omniglot-lake
WORK=${WORK:-/tmp/omniglot-lake}
STEPS=${STEPS:-2000}
DEVICE=${DEVICE:-cpu}
SEEDS=${SEEDS:-"1 2"}
FEWSHOT=${FEWSHOT:-"python -m fewshot"}
LAKE=$HERE/episodes/lake-runs-20w1s.npz
WITHIN=$HERE/episodes/evaluation-within-alphabet-20w1s-5q-1000.npz
start=$(date +%s)
for seed in $SEEDS; do
    for config in siamese-triplet siamese-triplet-cir; do
        run=$WORK/runs/$config-seed$seed
        grep -qs '"status": "finished"' "$run/run.json" || $FEWSHOT train --config $config --out "$run" \
            --data "$WORK/store" train.split=background train.val_split=none train.steps=$STEPS train.device=$DEVICE \
            name=$config seed=$seed
        $FEWSHOT eval --run "$run" --data "$WORK/runs-store" --episodes "$LAKE" --out "$HERE/records" --device "$DEVICE"
        $FEWSHOT eval --run "$run" --data "$WORK/store" --episodes "$WITHIN" --out "$HERE/records" --device "$DEVICE"
    done
done
$FEWSHOT table "$HERE/records" --baseline siamese-triplet > "$HERE/table-seeds.md"
$FEWSHOT table "$HERE/records" --baseline siamese-triplet --per-seed > "$HERE/table-per-seed.md"
echo "seeds.sh wall time: $(( $(date +%s) - start )) s (SEEDS=$SEEDS, STEPS=$STEPS, DEVICE=$DEVICE)" | tee -a "$HERE/wall_time.txt"
