#!/usr/bin/env bash
# Build the test-only interface packages (test_pkgs/, e.g. a vision_msgs subset) into test_ws/,
# a workspace of their own that the users' `colcon build` never sees (test_pkgs/COLCON_IGNORE).
# Tests that need them source test_ws/install/setup.bash in the processes they start.
# Idempotent (colcon rebuilds only what changed). Environment: INSTSEG_VENV (default <repo>/.venv).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${INSTSEG_VENV:-$REPO/.venv}"
set +u
# shellcheck disable=SC1091
source "$VENV/bin/activate"
set -u
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
cd "$REPO"
env -u PYTHONDONTWRITEBYTECODE colcon --log-base "$REPO/test_ws/log" build \
  --base-paths "$REPO/test_pkgs/vision_msgs" \
  --build-base "$REPO/test_ws/build" --install-base "$REPO/test_ws/install" \
  --event-handlers console_cohesion- summary+ --cmake-args -DBUILD_TESTING=OFF -Wno-dev
