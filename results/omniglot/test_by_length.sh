#!/usr/bin/env bash
# Test accuracy of the train+val run by training length: an analysis of "would more episodes help", read off
# the weights reproduce.sh's JOBS=2 run kept every 500 steps. Not a model choice: the reported model is the
# step chosen on val (table.md); this only shows how the test numbers move along the same run.
# Usage: WORK=work-runs/omniglot bash results/omniglot/test_by_length.sh [STEP...]   (after reproduce.sh)
# DEVICE (default cpu) as in reproduce.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-work-runs/omniglot}
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
DEVICE=${DEVICE:-cpu}
OUT=${OUT:-results/omniglot/by-length}
RUN=$WORK/protonet-1shot-trainval-kept
STEPS=("$@"); [ ${#STEPS[@]} -gt 0 ] || STEPS=(2000 4000 6000 8000 10000 12000)  # the README adds the step val chose
EPISODES=(episodes/omniglot-vinyals-test-{5w1s,5w5s,20w1s,20w5s}-15q-1000.npz)
mkdir -p "$OUT/records"
for step in "${STEPS[@]}"; do
  $FEWSHOT eval --run "$RUN" --checkpoint "step-$step" --method "trainval-step$(printf %05d "$step")" --device "$DEVICE" \
    --episodes "${EPISODES[@]}" --out "$OUT/records"
done
$FEWSHOT table "$OUT/records" --format md > "$OUT/table.md"
