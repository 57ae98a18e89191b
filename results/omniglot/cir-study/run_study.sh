#!/usr/bin/env bash
# The seed papers' question on real Omniglot: does CIR help a Siamese/triplet net and a center-contrastive net?
#   1. choose CIR's alpha on the val characters (seed 0, best val 5w1s accuracy; never on test);
#   2. each method x 3 seeds, identical training budget, evaluated on the committed Omniglot test episodes,
#      paired differences (CIR - no CIR) on identical episodes;
#   3. the CIR strength ablation (p x alpha) on siamese-triplet-cir, seed 0.
# Usage: WORK=work-runs/omniglot bash results/omniglot/cir-study/run_study.sh
#   (WORK holds the store that results/omniglot/reproduce.sh prepares). Finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=${WORK:-work-runs/omniglot}
RUNS=${RUNS:-work-runs/omniglot-cir-v2}
FEWSHOT=${FEWSHOT:-.venv/bin/fewshot}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=results/omniglot/cir-study
EPISODES=(episodes/omniglot-vinyals-test-{5w1s,5w5s,20w1s,20w5s}-15q-1000.npz)
COMMON=(train.steps=1000 batch.classes=32 batch.per_class=4 optim.step_size=400 train.val_every=250
        train.val_episodes=300 train.val_shots=1)
SIAMESE_ALPHAS=(0.1 0.25 0.5)
CENTER_ALPHAS=(0.05 0.1 0.25)
export OMP_NUM_THREADS=1  # two jobs at a time, one core each (2-thread jobs slow each other down several-fold)
mkdir -p "$RUNS/val" "$OUT"
start=$(date +%s)

val_sweep() {  # CONFIG ALPHA...: train seed 0 once per alpha (skip finished runs, resume killed ones)
  local config=$1; shift
  for alpha in "$@"; do
    local run="$RUNS/val/$config-alpha$alpha" resume=""
    [ -f "$run/checkpoints/last.pt" ] && resume="--resume"
    grep -qs '"finished"' "$run/run.json" || \
      $FEWSHOT train --config "$config" --data "$WORK/store" --out "$run" --no-progress --device cpu $resume \
        "${COMMON[@]}" cir.alpha="$alpha" > "$run.log" 2>&1
  done
}
val_sweep siamese-triplet-cir "${SIAMESE_ALPHAS[@]}" &
val_sweep center-cir "${CENTER_ALPHAS[@]}" &
wait
# The alpha with the best val accuracy (ties: the smaller alpha), and the table of the sweep.
chosen=$($PYTHON - "$RUNS/val" "$OUT/val-selection.md" <<'PY'
import json, sys
from pathlib import Path
runs, table = Path(sys.argv[1]), Path(sys.argv[2])
lines = ["| config | cir.alpha | best val 5w1s (300 episodes) | at step |", "|---|---|---|---|"]
chosen = {}
for config in ("siamese-triplet-cir", "center-cir"):
    rows = sorted((float(p.name.split("-alpha")[1]), json.loads((p / "run.json").read_text())["best"])
                  for p in runs.glob(f"{config}-alpha*") if p.is_dir())
    best = max(rows, key=lambda r: (r[1]["val_acc"], -r[0]))
    chosen[config] = best[0]
    for alpha, b in rows:
        mark = " (chosen)" if alpha == best[0] else ""
        lines.append(f"| {config} | {alpha:g}{mark} | {b['val_acc']:.2f} | {b['step']} |")
table.write_text("\n".join(lines) + "\n")
print(chosen["siamese-triplet-cir"], chosen["center-cir"])
PY
)
read -r SIAMESE_ALPHA CENTER_ALPHA <<< "$chosen"
echo "chosen on val: siamese-triplet-cir alpha $SIAMESE_ALPHA, center-cir alpha $CENTER_ALPHA"
val_end=$(date +%s)

study() {  # CONFIG [overrides...]
  local config=$1; shift
  $FEWSHOT bench "$config" --data "$WORK/store" --episodes "${EPISODES[@]}" --seeds 0,1,2 --device cpu \
    --results "$OUT/records" --runs "$RUNS/study" --no-progress "${COMMON[@]}" "$@" > "$RUNS/study-$config.log" 2>&1
}
(study siamese-triplet && study siamese-triplet-cir cir.alpha="$SIAMESE_ALPHA") &
(study center && study center-cir cir.alpha="$CENTER_ALPHA") &
wait
study_end=$(date +%s)
$FEWSHOT table "$OUT/records" --format md > "$OUT/table.md"
$FEWSHOT table "$OUT/records" --format md --baseline siamese-triplet > "$OUT/table-vs-siamese-triplet.md"
$FEWSHOT table "$OUT/records" --format md --baseline center > "$OUT/table-vs-center.md"
$FEWSHOT ablate "$OUT/ablation-cir-strength.toml" --jobs 2 --data "$WORK/store" --out "$RUNS/ablation" \
  --results "$OUT/ablation-records" --device cpu
cp "$RUNS/ablation/table.md" "$OUT/ablation-table.md"
cp "$RUNS/ablation/ablation.png" "$OUT/ablation.png"
end=$(date +%s)
echo "$(date -u +%FT%TZ) commit $(git rev-parse --short HEAD): val sweep $((val_end - start)) s, study $((study_end - val_end)) s," \
  "ablation $((end - study_end)) s, total $((end - start)) s (this invocation)" | tee -a "$OUT/wall_time.txt"
