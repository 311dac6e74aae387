#!/usr/bin/env bash
# The demo (README's first command): set up if needed, start the synthetic RGB-D camera and the
# yolact node (shipped demo model, depth on) exactly as the launch file would, watch /instances
# for DEMO_SECONDS (default 20), print frames, latency and instances per frame, and save a few
# overlay PNGs to demo_out/.
set -euo pipefail
SECONDS_TO_RUN="${DEMO_SECONDS:-20}"
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/prepare_run.sh"
OUT="${DEMO_OUT:-$REPO/demo_out}"
LIB="$REPO/install/instseg_ros/lib/instseg_ros"
SHARE="$REPO/install/instseg_ros/share/instseg_ros"
mkdir -p "$OUT"
rm -f "$OUT"/overlay_*.png
echo "[demo] ROS_DOMAIN_ID=$ROS_DOMAIN_ID, output in $OUT"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

setsid "$LIB/synthetic_camera" --ros-args -r __node:=synthetic_camera -r __ns:=/camera \
  -p rate:=10.0 -p width:=640 -p height:=480 -p pool_size:=20 -p seed:=900000 \
  > "$OUT/camera.log" 2>&1 &
pids+=($!)
setsid "$LIB/yolact_node" --ros-args -r __node:=yolact --params-file "$SHARE/config/yolact.yaml" \
  -p use_depth:=true \
  -r image:=/camera/color/image_raw -r depth:=/camera/aligned_depth_to_color/image_raw \
  -r camera_info:=/camera/color/camera_info \
  > "$OUT/yolact.log" 2>&1 &
pids+=($!)

python "$REPO/scripts/demo_monitor.py" --seconds "$SECONDS_TO_RUN" --out "$OUT" \
  --node-log "$OUT/yolact.log" --camera-rate 10.0
