#!/usr/bin/env bash
# Reproduce results/tieredimagenet: every config in configs/ trained on tieredImageNet (Ren split), chosen on val, evaluated on the
# committed 5-way 1-shot and 5-shot test episodes (2,000 each, 15 queries), with the raw-pixel floor.
# Usage: bash results/tieredimagenet/reproduce.sh SRC      (SRC: your downloaded copy, any variant of
#        `fewshot prepare tieredimagenet --list`; README.md gives the prepare line for each)
# Knobs: DEVICE (default auto), SEED, JOBS, ONLY, EXTRA, WORK, RESULTS, OUT, EPISODES: see results/lib/imagenet.sh.
DATASET=tieredimagenet
HERE=$(cd "$(dirname "$0")" && pwd)
DEFAULT_EPISODES="episodes/tieredimagenet-ren-test-5w1s-15q-2000.npz episodes/tieredimagenet-ren-test-5w5s-15q-2000.npz"
source "$HERE/../lib/imagenet.sh"
reproduce "$@"
