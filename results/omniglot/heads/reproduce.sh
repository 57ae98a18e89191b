#!/usr/bin/env bash
# Omniglot (Vinyals split): a Conv-4 trained as a ProtoNet and a Conv-4 trained with plain cross-entropy (the
# classifier learner) on the 4,112 training classes, each scored with every classifier head on the committed
# test episode files. Writes records/, table.md, compare.md, provenance.json, wall_time.txt here.
#
#   results/omniglot/heads/reproduce.sh            # everything: prepare (if needed), train both, evaluate
#   STAGE=train results/omniglot/heads/reproduce.sh   # only the two runs;  STAGE=eval: only the scoring
#
# Knobs: STORE (prepared Omniglot, default work-runs/omniglot), SRC (the archives, default ../shared/data/omniglot),
# RUNS (run folders, default work-runs/omniglot-heads), PN_STEPS / CE_STEPS (training steps, default 500 and 1000:
# about the same number of images, 300k and 256k),
# DEVICE (default cpu), FEWSHOT (the command, default .venv/bin/fewshot or `python -m fewshot`), PYTHON (for
# summarise.py, default python3; it imports fewshot).
# The two runs train side by side, one torch thread each (a 2-core machine).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
cd "$ROOT"
STORE=${STORE:-work-runs/omniglot}
SRC=${SRC:-../shared/data/omniglot}
RUNS=${RUNS:-work-runs/omniglot-heads}
PN_STEPS=${PN_STEPS:-500}
CE_STEPS=${CE_STEPS:-1000}
DEVICE=${DEVICE:-cpu}
STAGE=${STAGE:-all}
if [ -z "${FEWSHOT:-}" ]; then
  if [ -x .venv/bin/fewshot ]; then FEWSHOT=.venv/bin/fewshot; else FEWSHOT="python -m fewshot"; fi
fi
for n in "$PN_STEPS" "$CE_STEPS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && (( n % 500 == 0 )) || {
    echo "PN_STEPS and CE_STEPS must be multiples of 500 (the kept steps), got '$n'" >&2; exit 2; }
done
HEADS="nearest_prototype simpleshot logistic finetune"
EPISODES=(episodes/omniglot-vinyals-test-5w1s-15q-1000.npz episodes/omniglot-vinyals-test-5w5s-15q-1000.npz
          episodes/omniglot-vinyals-test-20w1s-15q-1000.npz episodes/omniglot-vinyals-test-20w5s-15q-1000.npz)
# Same validation for both: 500 fixed 5-way 5-shot episodes of the validation characters every 500 steps;
# the weights of every 500th step are kept (train.keep_every).
COMMON=(train.val_every=500 train.val_episodes=500 train.val_shots=5 train.keep_every=500 train.device=$DEVICE)
started=$(date +%s)

if [ ! -f "$STORE/store.json" ]; then
  $FEWSHOT prepare omniglot --src "$SRC" --out "$STORE"
fi

train() {  # name config overrides...
  local name=$1 config=$2; shift 2
  if [ -f "$RUNS/$name/run.json" ] && grep -q '"status": "finished"' "$RUNS/$name/run.json"; then
    echo "$name: finished run in $RUNS/$name, reused"; return
  fi
  local resume=(); [ -f "$RUNS/$name/checkpoints/last.pt" ] && resume=(--resume)
  OMP_NUM_THREADS=1 $FEWSHOT train --config "$config" --data "$STORE" --out "$RUNS/$name" --no-progress \
    "${resume[@]}" "$@" "${COMMON[@]}" > "$RUNS/$name.log" 2>&1
}

if [ "$STAGE" = all ] || [ "$STAGE" = train ]; then
  mkdir -p "$RUNS"
  # ProtoNet as Snell et al. (configs/protonet-omniglot.toml: 60-way 5-shot 5-query episodes, Adam 1e-3),
  # shortened; cross-entropy over the training classes (configs/ce.toml), 64 classes x 4 images a batch.
  train protonet protonet-omniglot train.steps=$PN_STEPS name=protonet &
  train ce ce train.steps=$CE_STEPS name=ce batch.classes=64 batch.per_class=4 &
  wait
  echo "training done: $(( $(date +%s) - started )) s"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = eval ]; then
  rm -rf "$HERE/records"; mkdir -p "$HERE/records"
  # The weights after the last step (kept by train.keep_every; no model selection on val).
  for run in protonet:$PN_STEPS ce:$CE_STEPS; do
    for head in $HEADS; do
      t0=$(date +%s)
      OMP_NUM_THREADS=2 $FEWSHOT eval --run "$RUNS/${run%%:*}" --checkpoint "step-${run##*:}" --device "$DEVICE" \
        --head $head --episodes "${EPISODES[@]}" --out "$HERE/records"
      echo "  ${run%%:*} $head: $(( $(date +%s) - t0 )) s"
    done
  done
  # The untrained floor: raw pixels (784-d) with the three cheap heads (finetune on 784-d pixels is left out).
  for head in nearest_prototype simpleshot logistic; do
    t0=$(date +%s)
    OMP_NUM_THREADS=2 $FEWSHOT eval --backbone pixels --data "$STORE" --device "$DEVICE" --head $head \
      --episodes "${EPISODES[@]}" --out "$HERE/records"
    echo "  pixels $head: $(( $(date +%s) - t0 )) s"
  done
  $FEWSHOT table "$HERE/records" --format md > "$HERE/table.md"
  $FEWSHOT table "$HERE/records" --format csv > "$HERE/table.csv"
  ${PYTHON:-python3} "$HERE/summarise.py" "$HERE" "$RUNS" "$STORE"
fi
echo "wall time: $(( $(date +%s) - started )) s" | tee "$HERE/wall_time_$STAGE.txt"
