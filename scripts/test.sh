#!/usr/bin/env bash
# The test command (README, .ci/run): set up if needed, then run the whole suite against the built
# workspace. Extra arguments go to pytest (e.g. scripts/test.sh -k conversions).
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/prepare_run.sh"
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
cd "$REPO/instseg_ros"
exec python -m pytest test -ra --durations=15 "$@"
