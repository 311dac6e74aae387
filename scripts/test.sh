#!/usr/bin/env bash
# The test command (README, .ci/run): set up if needed, then run the whole suite against the built
# workspace. Extra arguments go to pytest (e.g. scripts/test.sh -k conversions).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
# shellcheck disable=SC1091
source "$REPO/scripts/env.sh"
# DDS stays on this machine, and each run gets its own domain (Fast DDS shm files are shared).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=$(( ($$ % 90) + 10 ))
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
cd "$REPO/instseg_ros"
exec python -m pytest test -ra --durations=15 "$@"
