#!/usr/bin/env bash
# Every method config on the synthetic set: seed 0, 1,000 training steps each (train.steps override),
# evaluated on 1,000 fixed 5-way 1-shot and 5-shot test episodes, with the raw-pixel floor.
# Two halves run side by side, one torch thread each. With arguments, only those methods (e.g. after their
# configs changed: remove their old records first), split between the two halves.
set -euo pipefail
cd "$(dirname "$0")/../.."
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
[ -f work-runs/synthetic/store.json ] || $FEWSHOT prepare synthetic --out work-runs/synthetic --no-progress
EP=(work-runs/synth-episodes/5w1s.npz work-runs/synth-episodes/5w5s.npz)
for s in 1 5; do
  [ -f "work-runs/synth-episodes/5w${s}s.npz" ] || $FEWSHOT episodes --data work-runs/synthetic --split test --ways 5 \
    --shots $s --queries 15 --count 1000 --seed 0 --out "work-runs/synth-episodes/5w${s}s.npz"
done
half() {
  for method in "$@"; do
    /usr/bin/time -f "$method %e s wall %U s user" $FEWSHOT bench "$method" --data work-runs/synthetic --seeds 0 \
      --episodes "${EP[@]}" --results results/synthetic/methods/records --runs work-runs/synthetic-methods \
      --device cpu --no-progress train.steps=1000 2>> results/synthetic/methods/times.txt
  done
}
mkdir -p results/synthetic/methods
export OMP_NUM_THREADS=1
if [ $# -gt 0 ]; then
  methods=("$@")
  first=(); second=()
  for i in "${!methods[@]}"; do
    if (( i % 2 == 0 )); then first+=("${methods[$i]}"); else second+=("${methods[$i]}"); fi
  done
  half "${first[@]}" > work-runs/methods-a.log 2>&1 &
  [ ${#second[@]} -gt 0 ] && half "${second[@]}" > work-runs/methods-b.log 2>&1 &
  wait
  $FEWSHOT table results/synthetic/methods/records --format md > results/synthetic/methods/table.md
  exit 0
fi
half protonet siamese-triplet center ce > work-runs/methods-a.log 2>&1 &
half siamese-triplet-cir center-cir ce-ls ce-cir > work-runs/methods-b.log 2>&1 &
wait
$FEWSHOT eval --backbone pixels --data work-runs/synthetic --episodes "${EP[@]}" --out results/synthetic/methods/records --device cpu
$FEWSHOT table results/synthetic/methods/records --format md > results/synthetic/methods/table.md
