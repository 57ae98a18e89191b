#!/usr/bin/env bash
# Omniglot on Lake's split: train on the background alphabets, test on Lake's 20 official one-shot runs
# and on 1,000 within-alphabet 20-way 1-shot episodes of the evaluation alphabets, with the pixel floor.
#   bash results/omniglot-lake/run.sh            (from the repository root; STEPS, WORK, DEVICE override)
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=results/omniglot-lake
DATA=${DATA:-../shared/data/omniglot}
WORK=${WORK:-/tmp/omniglot-lake}
STEPS=${STEPS:-2000}
DEVICE=${DEVICE:-cpu}
FEWSHOT=${FEWSHOT:-"python -m fewshot"}
mkdir -p "$WORK" "$HERE/episodes" "$HERE/records"
start=$(date +%s)

[ -f "$WORK/store/store.json" ] || $FEWSHOT prepare omniglot --src "$DATA" --out "$WORK/store" --lake-split --workers 1 --no-progress
[ -f "$WORK/runs-store/store.json" ] || $FEWSHOT prepare omniglot-runs --src "$DATA/all_runs.zip" --out "$WORK/runs-store" --no-progress
$FEWSHOT info "$WORK/store"
LAKE=$HERE/episodes/lake-runs-20w1s.npz
WITHIN=$HERE/episodes/evaluation-within-alphabet-20w1s-5q-1000.npz
[ -f "$LAKE" ] || $FEWSHOT episodes --data "$WORK/runs-store" --protocol lake-runs --out "$LAKE"
[ -f "$WITHIN" ] || $FEWSHOT episodes --data "$WORK/store" --split evaluation --protocol within-parent --ways 20 \
    --shots 1 --queries 5 --count 1000 --seed 0 --out "$WITHIN"

# No validation split (Lake's protocol has none): every run is read at its last step.
COMMON="--data $WORK/store train.split=background train.val_split=none train.steps=$STEPS train.device=$DEVICE"
train() {  # name config overrides...
    local name=$1 config=$2; shift 2
    grep -qs '"status": "finished"' "$WORK/runs/$name/run.json" \
        || $FEWSHOT train --config "$config" --out "$WORK/runs/$name" $COMMON name=$name "$@"
    $FEWSHOT eval --run "$WORK/runs/$name" --data "$WORK/runs-store" --episodes "$LAKE" --out "$HERE/records" --device "$DEVICE"
    $FEWSHOT eval --run "$WORK/runs/$name" --data "$WORK/store" --episodes "$WITHIN" --out "$HERE/records" --device "$DEVICE"
}
train siamese-triplet siamese-triplet
train siamese-triplet-cir siamese-triplet-cir
train protonet protonet-omniglot episodes.ways=20 episodes.shots=1 episodes.queries=5
$FEWSHOT eval --backbone pixels --data "$WORK/runs-store" --episodes "$LAKE" --out "$HERE/records" --device "$DEVICE"
$FEWSHOT eval --backbone pixels --data "$WORK/store" --episodes "$WITHIN" --out "$HERE/records" --device "$DEVICE"

$FEWSHOT table "$HERE/records" --lake > "$HERE/table-lake.md"
$FEWSHOT table "$HERE/records" --baseline siamese-triplet > "$HERE/table.md"
pair() {  # A B episodes-part-of-record-name: paired difference A - B (one record each: run before seeds.sh)
    $FEWSHOT compare "$HERE"/records/"$1"__"$3"__*.json "$HERE"/records/"$2"__"$3"__*.json
}
{
    for episodes in omniglot-lake-runs-20w1s-lake-runs omniglot-20w1s-within-parent; do
        pair siamese-triplet-cir siamese-triplet $episodes
        pair protonet siamese-triplet $episodes
        pair siamese-triplet pixels $episodes
    done
} > "$HERE/paired.txt"
echo "wall time: $(( $(date +%s) - start )) s (STEPS=$STEPS, DEVICE=$DEVICE)" | tee "$HERE/wall_time.txt"
