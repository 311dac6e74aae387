#!/usr/bin/env bash
# The test command (README, .ci/run): set up if needed, then run the whole suite against the built
# workspace. Extra arguments go to pytest (e.g. scripts/test.sh -k conversions); test files or
# folders among them (relative to instseg_ros/, e.g. test/core/test_rtmdet.py) run instead of all.
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/prepare_run.sh"
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
cd "$REPO/instseg_ros"
TARGETS=(test)
for ARG in "$@"; do
  if [[ "$ARG" != -* && -e "${ARG%%::*}" ]]; then TARGETS=(); break; fi
done
exec python -m pytest "${TARGETS[@]}" -ra --durations=15 "$@"
