#!/usr/bin/env bash
# The seed papers' question on real Omniglot: does CIR help a Siamese/triplet net and a center-contrastive net?
# Each method x 3 seeds, identical training budget, evaluated on the committed Omniglot test episodes; paired
# differences (CIR - no CIR) on identical episodes. Hyperparameters are the configs' defaults (not tuned on
# test; model selection on the val characters every 250 steps). Then the CIR strength ablation (p x alpha).
# Usage: bash results/omniglot-cir/run_study.sh   (needs the store from results/omniglot/reproduce.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-work-runs/omniglot}
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
OUT=results/omniglot-cir
EPISODES=(episodes/omniglot-vinyals-test-{5w1s,5w5s,20w1s,20w5s}-15q-1000.npz)
COMMON=(train.steps=1000 batch.classes=32 batch.per_class=4 optim.step_size=400 train.val_every=250
        train.val_episodes=300 train.val_shots=1)
start=$(date +%s)
for method in siamese-triplet siamese-triplet-cir center center-cir; do
  $FEWSHOT bench "$method" --data "$WORK/store" --episodes "${EPISODES[@]}" --seeds 0,1,2 --device cpu \
    --results "$OUT/records" --runs work-runs/omniglot-cir/runs --no-progress "${COMMON[@]}"
done
study_end=$(date +%s)
$FEWSHOT table "$OUT/records" --format md > "$OUT/table.md"
$FEWSHOT table "$OUT/records" --format md --baseline siamese-triplet > "$OUT/table-vs-siamese-triplet.md"
$FEWSHOT table "$OUT/records" --format md --baseline center > "$OUT/table-vs-center.md"
$FEWSHOT ablate "$OUT/ablation-cir-strength.toml" --jobs 1 --results "$OUT/ablation-records"
cp work-runs/omniglot-cir/ablation/table.md "$OUT/ablation-table.md"
cp work-runs/omniglot-cir/ablation/ablation.png "$OUT/ablation.png"
end=$(date +%s)
echo "wall time: study $((study_end - start)) s, with ablation $((end - start)) s (this invocation)" | tee -a "$OUT/wall_time.txt"
