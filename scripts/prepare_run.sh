# Sourced by test.sh, demo.sh and bench.sh: set up if needed, source the workspace, and keep DDS
# traffic on this machine in a domain of this run's own (Fast DDS shm files are shared by runs),
# unless the user exported ROS_DOMAIN_ID: that one is kept.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_USER_DOMAIN_ID="${ROS_DOMAIN_ID:-}"
bash "$REPO/scripts/setup.sh"
# shellcheck disable=SC1091
source "$REPO/scripts/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${_USER_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}"
unset _USER_DOMAIN_ID
