# Shared driver of results/miniimagenet/reproduce.sh and results/tieredimagenet/reproduce.sh (sourced, not run).
# The caller sets DATASET, HERE (its folder) and DEFAULT_EPISODES (test episode files), then calls `reproduce "$@"`.
#
# Knobs (environment):
#   SRC       the downloaded public copy (first argument, or SRC=...); any variant `fewshot prepare --list` names
#   WORK      prepared store and run folders (default work-runs/$DATASET; git-ignored)
#   RESULTS   table.md, curves/, wall_time.txt (default results/$DATASET: only a real run writes there)
#   OUT       records (default $RESULTS/records)
#   SEED      seed of every run (default 0)       DEVICE   cuda, cuda:N, cpu or auto (default auto)
#   JOBS      runs trained at once (default 1: one GPU; 2+ shares the GPU between runs)
#   ONLY      space-separated config names to run (default: every configs/*.toml)
#   EXTRA     space-separated key=value overrides for every training run (the tests shrink runs with it)
#   EPISODES  space-separated test episode files (default: the committed ones)
#   FEWSHOT   the fewshot command (default .venv/bin/fewshot)
# A finished run is skipped, a killed one resumed (--resume), so the script can be rerun after any stop.

reproduce() {
  set -euo pipefail
  cd "$HERE/../.."
  SRC=${1:-${SRC:-}}
  [[ -n $SRC ]] || { echo "reproduce.sh: give the folder of your $DATASET copy: bash $HERE/reproduce.sh SRC" >&2; exit 2; }
  [[ -d $SRC ]] || { echo "reproduce.sh: $SRC is not a folder; give the folder of your $DATASET copy" >&2; exit 2; }
  WORK=${WORK:-work-runs/$DATASET}
  RESULTS=${RESULTS:-results/$DATASET}
  OUT=${OUT:-$RESULTS/records}
  SEED=${SEED:-0}
  DEVICE=${DEVICE:-auto}
  JOBS=${JOBS:-1}
  FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
  [[ $SEED =~ ^[0-9]+$ ]] || { echo "reproduce.sh: SEED=$SEED must be a non-negative integer" >&2; exit 2; }
  [[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "reproduce.sh: JOBS=$JOBS must be a positive integer" >&2; exit 2; }
  read -r -a episodes <<< "${EPISODES:-$DEFAULT_EPISODES}"
  read -r -a extra <<< "${EXTRA:-}"
  local configs=() name
  for file in "$HERE"/configs/*.toml; do
    name=$(basename "$file" .toml)
    if [[ -z ${ONLY:-} || " $ONLY " == *" $name "* ]]; then configs+=("$name"); fi
  done
  (( ${#configs[@]} )) || { echo "reproduce.sh: ONLY=$ONLY names no config in $HERE/configs" >&2; exit 2; }

  local start train_end end
  start=$(date +%s)
  mkdir -p "$WORK"
  [[ -f $WORK/store/store.json ]] || $FEWSHOT prepare "$DATASET" --src "$SRC" --out "$WORK/store" --no-progress

  # Training, JOBS at a time; each run's output in WORK/NAME.out.
  local running=0 status=0
  for name in "${configs[@]}"; do
    _train_one "$name" > "$WORK/$name.out" 2>&1 &
    running=$((running + 1))
    if (( running >= JOBS )); then
      wait -n || status=$?
      running=$((running - 1))
    fi
  done
  while (( running > 0 )); do
    wait -n || status=$?
    running=$((running - 1))
  done
  if (( status != 0 )); then
    echo "reproduce.sh: a training run failed; see the .out files in $WORK (rerun to resume the others)" >&2
    exit "$status"
  fi
  train_end=$(date +%s)

  mkdir -p "$OUT" "$RESULTS/curves"
  for name in "${configs[@]}"; do
    $FEWSHOT eval --run "$WORK/$name" --checkpoint best --device "$DEVICE" --episodes "${episodes[@]}" --out "$OUT"
    $FEWSHOT curve "$WORK/$name" --out "$RESULTS/curves/$name.png" --title "$name, $DATASET"
  done
  $FEWSHOT eval --backbone pixels --data "$WORK/store" --device "$DEVICE" --episodes "${episodes[@]}" --out "$OUT"
  $FEWSHOT table "$OUT" --format md > "$RESULTS/table.md"
  end=$(date +%s)
  echo "$(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) DEVICE=$DEVICE SEED=$SEED JOBS=$JOBS configs=${#configs[@]}: prepare+training $((train_end - start)) s, total $((end - start)) s" | tee -a "$RESULTS/wall_time.txt"
}

_train_one() {  # train configs/NAME.toml into WORK/NAME: skip a finished run, resume a killed one
  local name=$1 run="$WORK/$1" resume=""
  [[ -f $run/checkpoints/last.pt ]] && resume="--resume"
  if grep -qs '"finished"' "$run/run.json"; then echo "$name: finished earlier, kept"; return 0; fi
  $FEWSHOT train --config "$HERE/configs/$name.toml" --data "$WORK/store" --out "$run" --no-progress \
    --device "$DEVICE" $resume seed="$SEED" "${extra[@]}"
}
