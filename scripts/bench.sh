#!/usr/bin/env bash
# Benchmarks (CPU unless CUDA is present): model speed vs Mask R-CNN, node latency/overhead,
# depth projection. Results: bench/results/{model,node}.json (summarised in the README).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
# shellcheck disable=SC1091
source "$REPO/scripts/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=$(( ($$ % 90) + 10 ))
cd "$REPO"
python bench/model.py --out bench/results/model.json "$@"
python bench/node.py --out bench/results/node.json
