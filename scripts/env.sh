# Source this (bash) to use the workspace built by scripts/setup.sh:  source scripts/env.sh
# Activates the venv (the ROS 2 prefix), sets AMENT_PREFIX_PATH, sources install/setup.bash, puts
# the package's executables (yolact_node, instseg-train, ...) on PATH and keeps DDS traffic on
# this machine. An exported ROS_DOMAIN_ID is kept.
_INSTSEG_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_INSTSEG_VENV="${INSTSEG_VENV:-$_INSTSEG_REPO/.venv}"
# shellcheck disable=SC1091
# (colcon's and venv's scripts read unset variables: allow that while sourcing them)
_INSTSEG_NOUNSET=$([[ $- == *u* ]] && echo 1 || true)
set +u
source "$_INSTSEG_VENV/bin/activate"
export AMENT_PREFIX_PATH="$_INSTSEG_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
if [ -f "$_INSTSEG_REPO/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$_INSTSEG_REPO/install/setup.bash"
fi
# console scripts live in install/instseg_ros/lib/instseg_ros (where `ros2 run` finds them)
case ":$PATH:" in
  *":$_INSTSEG_REPO/install/instseg_ros/lib/instseg_ros:"*) ;;
  *) export PATH="$_INSTSEG_REPO/install/instseg_ros/lib/instseg_ros:$PATH" ;;
esac
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}"
[ -n "$_INSTSEG_NOUNSET" ] && set -u
unset _INSTSEG_REPO _INSTSEG_VENV _INSTSEG_NOUNSET
