#!/usr/bin/env bash
# Benchmarks (CPU unless CUDA is present): model speed vs Mask R-CNN, node latency/overhead,
# depth projection. Results: bench/results/{model,node}.json (summarised in the README).
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/prepare_run.sh"
cd "$REPO"
python bench/model.py --ap-scenes 100 --out bench/results/model.json "$@"
python bench/node.py --out bench/results/node.json
python bench/bag.py --out bench/results/bag.json
