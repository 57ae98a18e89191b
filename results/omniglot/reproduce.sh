#!/usr/bin/env bash
# Reproduce results/omniglot from the original Omniglot archives (images_background.zip, images_evaluation.zip).
# Usage: bash results/omniglot/reproduce.sh [SRC]   (SRC defaults to ../shared/data/omniglot)
# WORK (default work-runs/omniglot) holds the prepared store and the run folders; RESULTS (default
# results/omniglot) gets table.md, learning_curve.png and a wall_time.txt line; OUT (default $RESULTS/records)
# the records. SEED (default 0, the config's) seeds both runs: a replicate is e.g.
#   SEED=1 WORK=work-runs/omniglot-seed1 RESULTS=results/omniglot/seed-1 bash results/omniglot/reproduce.sh
# DEVICE (default cpu, as every committed run) is passed to fewshot train and eval: cuda, cuda:N or auto on a GPU
# machine (not yet run there: the committed numbers and wall times are CPU ones).
#
# Protocol (Snell et al. 2017, as far as 2 CPU cores allow; deviations in README.md):
#   1. train on the train characters with 60-way 1-shot 5-query episodes, choosing the model on the val
#      characters (5-way 1-shot val episodes every 500 steps);
#   2. retrain on train+val for the number of episodes chosen on val in 1, and take its final model;
#   3. evaluate both on the committed test episode files (1,000 episodes, 15 queries a class).
# JOBS=2 (the default) runs 1 and 2 side by side, one torch thread each, which gets 1.3x more episodes a
# second out of 2 cores than one run on both: the train+val run goes the full STEPS keeping its weights
# every 500 steps (train.keep_every), and the kept step chosen on val in 1 is the retrain (the learning
# rate schedule counts steps, so a run read at step k is the run of k steps; tests/train/test_loop.py).
# JOBS=1 runs them one after the other, the retrain stopping at the chosen step (the 2026-11-23 records).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:-../shared/data/omniglot}
WORK=${WORK:-work-runs/omniglot}
RESULTS=${RESULTS:-results/omniglot}
OUT=${OUT:-$RESULTS/records}
SEED=${SEED:-0}
DEVICE=${DEVICE:-cpu}
[[ $SEED =~ ^[0-9]+$ ]] || { echo "reproduce.sh: SEED=$SEED must be a non-negative integer" >&2; exit 2; }
STEPS=${STEPS:-12000}
JOBS=${JOBS:-2}
KEEP=500  # = train.val_every of the config: every step that validation can choose is kept
(( STEPS % KEEP == 0 )) || { echo "reproduce.sh: STEPS=$STEPS must be a multiple of $KEEP" >&2; exit 2; }
[[ $JOBS == 1 || $JOBS == 2 ]] || { echo "reproduce.sh: JOBS=$JOBS must be 1 or 2" >&2; exit 2; }
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
PYTHON=${PYTHON:-.venv/bin/python}
EPISODES=(episodes/omniglot-vinyals-test-{5w1s,5w5s,20w1s,20w5s}-15q-1000.npz)

train() {  # train RUN_NAME STEPS [overrides...]: skip a finished run, resume a killed one
  local run="$WORK/$1" steps="$2"; shift 2
  local resume=""; [ -f "$run/checkpoints/last.pt" ] && resume="--resume"
  grep -qs '"finished"' "$run/run.json" || \
    $FEWSHOT train --config protonet-omniglot --data "$WORK/store" --out "$run" --no-progress --device "$DEVICE" $resume \
      seed="$SEED" episodes.shots=1 train.val_shots=1 train.steps="$steps" "$@"
}

start=$(date +%s)
[ -f "$WORK/store/store.json" ] || $FEWSHOT prepare omniglot --src "$SRC" --out "$WORK/store" --no-progress
chosen_step() { $PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["best"]["step"])' "$WORK/protonet-1shot/run.json"; }
if [[ $JOBS == 2 ]]; then
  OMP_NUM_THREADS=1 train protonet-1shot "$STEPS" > "$WORK/protonet-1shot.out" 2>&1 &
  train_only=$!
  OMP_NUM_THREADS=1 train protonet-1shot-trainval-kept "$STEPS" train.split=trainval train.val_every=0 \
    train.keep_every=$KEEP > "$WORK/protonet-1shot-trainval-kept.out" 2>&1 &
  trainval=$!
  status=0
  wait $train_only || { status=$?; echo "train-only run failed: see $WORK/protonet-1shot.out" >&2; }
  wait $trainval || { status=$?; echo "train+val run failed: see $WORK/protonet-1shot-trainval-kept.out" >&2; }
  (( status == 0 )) || exit $status
  best_step=$(chosen_step)
  trainval_run=$WORK/protonet-1shot-trainval-kept trainval_checkpoint=step-$best_step
  echo "model chosen on val at step $best_step; the train+val retrain is that step of the train+val run"
else
  train protonet-1shot "$STEPS"
  best_step=$(chosen_step)
  echo "model chosen on val at step $best_step; retraining on train+val for $best_step episodes"
  train protonet-1shot-trainval "$best_step" train.split=trainval train.val_every=0
  trainval_run=$WORK/protonet-1shot-trainval trainval_checkpoint=last
fi
train_end=$(date +%s)
mkdir -p "$OUT" "$RESULTS"
$FEWSHOT eval --run "$WORK/protonet-1shot" --checkpoint best --method protonet-train-valselected --device "$DEVICE" \
  --episodes "${EPISODES[@]}" --out "$OUT"
$FEWSHOT eval --run "$trainval_run" --checkpoint "$trainval_checkpoint" --method protonet-trainval --device "$DEVICE" \
  --episodes "${EPISODES[@]}" --out "$OUT"
$FEWSHOT eval --backbone pixels --data "$WORK/store" --device "$DEVICE" --episodes "${EPISODES[@]}" --out "$OUT"
$FEWSHOT table "$OUT" --format md > "$RESULTS/table.md"
$FEWSHOT curve "$WORK/protonet-1shot" "$trainval_run" --out "$RESULTS/learning_curve.png" \
  --labels "train, val-selected" "train+val (no val)" --title "ProtoNet, Omniglot, 60-way 1-shot episodes"
end=$(date +%s)
echo "$(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) STEPS=$STEPS JOBS=$JOBS SEED=$SEED best_step=$best_step: prepare+training $((train_end - start)) s, total $((end - start)) s (this invocation)" | tee -a "$RESULTS/wall_time.txt"
