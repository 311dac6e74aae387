"""The ``yolact`` node: wiring only (parameters -> FramePipeline -> subscriptions and publishers).

Topics (relative names, node name ``yolact``):
  in : image (sensor_msgs/Image) or image/compressed; depth + camera_info when use_depth
  out: instances (instseg_msgs/InstanceMaskArray), overlay (Image, bgr8), markers (MarkerArray),
       labels (Image 16UC1, optional), points (PointCloud2, optional), /diagnostics
Only the newest frame is processed: callbacks drop frames into a one-element slot and a worker
thread runs inference, so latency never grows when the camera is faster than the model.
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from instseg_msgs.msg import InstanceMaskArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from instseg_ros.core.encoding import label_image, paste_roi
from instseg_ros.core.geometry import CameraIntrinsics, DepthParams, depth_to_meters
from instseg_ros.core.latest import LatestSlot
from instseg_ros.core.pipeline import DepthInput, FramePipeline, FrameResult, nearest_stamp
from instseg_ros.core.predictor import InferenceParams
from instseg_ros.core.stats import RateMeter, RunningStats
from instseg_ros.core.visualization import draw_overlay
from instseg_ros.ros import qos
from instseg_ros.ros.cli import node_help, wants_help
from instseg_ros.ros.conversions import (compressed_to_bgr8, image_to_bgr8, image_to_numpy,
                                         InstancesPacker, numpy_to_image)
from instseg_ros.ros.diagnostics import build_diagnostics
from instseg_ros.ros.entry import spin_node
from instseg_ros.ros.markers import MarkerBuilder, result_to_cloud
from instseg_ros.ros.model_loading import StartupError, load_pipeline
from instseg_ros.ros.params import (SPECS, NodeParams, declare_all, help_rows, normalize_classes,
                                   validate_all)

BAD_INPUT_LOG_PERIOD_S = 5.0
DEPTH_BUFFER = 30


def stamp_s(header) -> float:
    """Header stamp in seconds (float)."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class YolactNode(Node):
    """YOLACT instance segmentation node. Raises StartupError when the model cannot load."""

    def __init__(self, **kwargs):
        super().__init__('yolact', **kwargs)
        self.params = declare_all(self)
        self.pipeline: FramePipeline = load_pipeline(self.params, self.get_logger())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._stats = RunningStats(window=100)
        self._rate_in, self._rate_out = RateMeter(), RateMeter()
        self._counters = collections.Counter()
        self._bad_input_logged: dict[str, float] = {}
        self._slot = LatestSlot()
        self._markers = MarkerBuilder()  # both reuse their messages; worker thread only
        self._packer = InstancesPacker()
        self._depth_lock = threading.Condition()
        self._depth_buffer: collections.deque = collections.deque(maxlen=DEPTH_BUFFER)
        self._camera_info: CameraInfo | None = None
        self._create_publishers()
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self.params.diagnostics_period, self._publish_diagnostics)
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name='yolact_inference',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'Ready: model {self.pipeline.predictor.cfg.name} on {self.pipeline.predictor.device}, '
            f'{len(self.pipeline.class_names)} classes, listening on '
            f'{self.resolve_topic_name("image/compressed" if self.params.input_compressed else "image")}'
            + (f' + depth {self.resolve_topic_name("depth")}' if self.params.use_depth else ''))

    # ----------------------------------------------------------------------------- wiring
    def _create_publishers(self) -> None:
        opts = {'qos_overriding_options': qos.overridable()}
        self.pub_instances = self.create_publisher(InstanceMaskArray, 'instances',
                                                   qos.RESULT_OUTPUT, **opts)
        self.pub_overlay = self.create_publisher(Image, 'overlay', qos.RESULT_OUTPUT, **opts)
        self.pub_markers = self.create_publisher(MarkerArray, 'markers', qos.RESULT_OUTPUT, **opts)
        self.pub_labels = self.create_publisher(Image, 'labels', qos.RESULT_OUTPUT, **opts)
        self.pub_points = self.create_publisher(PointCloud2, 'points', qos.RESULT_OUTPUT, **opts)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def _create_subscriptions(self) -> None:
        opts = {'qos_overriding_options': qos.overridable()}
        if self.params.input_compressed:
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image,
                                     qos.SENSOR_INPUT, **opts)
        else:
            self.create_subscription(Image, 'image', self._on_image, qos.SENSOR_INPUT, **opts)
        if self.params.use_depth:
            self.create_subscription(Image, 'depth', self._on_depth, qos.SENSOR_INPUT, **opts)
            self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info,
                                     qos.CAMERA_INFO_INPUT, **opts)

    def _on_set_parameters(self, params):
        result = validate_all(params, self.params)
        if result.successful:
            result = self._check_classes(params) or result
        if result.successful:
            values = {name: getattr(self.params, name) for name in SPECS}
            values.update({p.name: p.value for p in params if p.name in SPECS})
            self.params = NodeParams.from_values(values)
        return result

    def _check_classes(self, params):
        """Reject class names the model does not know (names the valid ones)."""
        for param in params:
            if param.name != 'classes':
                continue
            unknown = [c for c in normalize_classes(param.value)
                       if c not in self.pipeline.class_names]
            if unknown:
                names = ', '.join(self.pipeline.class_names[:20])
                return SetParametersResult(
                    successful=False, reason=f'unknown class name(s) {unknown}; known: {names}...')
        return None

    # ----------------------------------------------------------------------------- callbacks
    def _on_image(self, msg) -> None:
        self._rate_in.tick()
        self._counters['received'] += 1
        self._slot.put(msg)

    def _on_depth(self, msg: Image) -> None:
        with self._depth_lock:
            self._depth_buffer.append((stamp_s(msg.header), msg))
            self._depth_lock.notify_all()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    # ----------------------------------------------------------------------------- worker
    def _worker_loop(self) -> None:
        while self._running:
            msg = self._slot.take(timeout_s=0.2)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as exc:  # noqa: BLE001 - the node must survive any single frame
                if not self.context.ok():
                    return  # shutting down (Ctrl-C): publishers are gone, nothing to report
                self._bad_input('processing', f'frame skipped: {type(exc).__name__}: {exc}')

    def _process(self, msg) -> None:
        params = self.params
        began = time.perf_counter()
        image_bgr = self._decode(msg)
        if image_bgr is None:
            return
        decoded = time.perf_counter()
        result = self.pipeline.process(image_bgr, self._inference_params(params),
                                       min_mask_area=params.min_mask_area)
        depth_began = time.perf_counter()
        if params.use_depth:
            self._attach_depth(result, msg.header, params)
        start = time.perf_counter()
        self._publish(result, msg.header, image_bgr, params)
        done = time.perf_counter()
        timings = result.timings_ms
        timings['decode'] = (decoded - began) * 1e3
        timings['publish'] = (done - start) * 1e3
        # the node's own work: all but the forward pass and the depth step (waiting + projection)
        timings['overhead'] = ((done - began) - (start - depth_began)) * 1e3 - timings['forward']
        self._stats.add_all(timings)
        self._stats.add('latency', (self.get_clock().now().nanoseconds * 1e-9
                                    - stamp_s(msg.header)) * 1e3)
        self._stats.add('instances', float(len(result)))
        self._rate_out.tick()
        self._counters['processed'] += 1

    def _decode(self, msg):
        """bgr8 array of an Image/CompressedImage, or None after a throttled error."""
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_bgr8(msg)
            return image_to_bgr8(msg)
        except ValueError as exc:
            self._counters['bad_input'] += 1
            self._bad_input('image', f'bad input image, frame skipped: {exc}')
            return None

    def _inference_params(self, params: NodeParams) -> InferenceParams:
        names = list(self.pipeline.class_names)
        class_ids = tuple(names.index(c) for c in params.classes if c in names)
        return InferenceParams(score_threshold=params.score_threshold,
                               nms_threshold=params.nms_threshold, top_k=params.top_k,
                               max_detections=params.max_detections,
                               class_ids=class_ids or None)

    def _attach_depth(self, result: FrameResult, header, params: NodeParams) -> None:
        depth = self._match_depth(stamp_s(header), params)
        if depth is None:
            self._counters['without_depth'] += 1
            return
        try:
            self.pipeline.add_depth(result, depth, DepthParams(
                min_depth_m=params.min_depth, max_depth_m=params.max_depth,
                mask_erosion_px=params.mask_erosion, min_points=params.min_depth_points),
                want_points=params.publish_points)
        except ValueError as exc:
            self._counters['without_depth'] += 1
            self._bad_input('depth', f'depth not used: {exc}')

    def _match_depth(self, target_s: float, params: NodeParams) -> DepthInput | None:
        """The depth image nearest in time (within depth_slop) with camera_info, else None."""
        info = self._camera_info
        if info is None:
            self._bad_input('camera_info', 'no camera_info received yet: publishing without 3D')
            return None
        deadline = time.monotonic() + min(params.depth_slop, 0.2)
        with self._depth_lock:
            # The depth frame may trail the colour frame a little: wait while none is newer.
            self._depth_lock.wait_for(
                lambda: any(s >= target_s for s, _ in self._depth_buffer),
                timeout=max(0.0, deadline - time.monotonic()))
            buffered = list(self._depth_buffer)
        index = nearest_stamp([s for s, _ in buffered], target_s, params.depth_slop)
        if index is None:
            return None
        depth_msg = buffered[index][1]
        try:
            depth_m = depth_to_meters(image_to_numpy(depth_msg), depth_msg.encoding,
                                      params.depth_scale or None)
            intrinsics = CameraIntrinsics.from_k(list(info.k), info.width, info.height)
            intrinsics = intrinsics.scaled_to(depth_m.shape[1], depth_m.shape[0])
        except ValueError as exc:
            self._bad_input('depth', f'bad depth image or camera_info, frame without 3D: {exc}')
            return None
        return DepthInput(depth_m=depth_m, intrinsics=intrinsics)

    # ----------------------------------------------------------------------------- outputs
    def _publish(self, result: FrameResult, header, image_bgr, params: NodeParams) -> None:
        names = self.pipeline.class_names
        self.pub_instances.publish(self._packer.pack(
            header, result.image_size, result.rois, result.scores, result.labels, names,
            result.instances_3d))
        if params.publish_overlay and self.pub_overlay.get_subscription_count() > 0:
            overlay = draw_overlay(image_bgr, result.rois, result.boxes_xyxy, result.labels,
                                   result.scores, names, alpha=params.overlay_alpha,
                                   draw_boxes=params.overlay_draw_boxes,
                                   draw_labels=params.overlay_draw_labels,
                                   font_scale=params.overlay_font_scale,
                                   depth_text=_depth_texts(result))
            self.pub_overlay.publish(numpy_to_image(overlay, 'bgr8', header))
        if params.publish_markers and self.pub_markers.get_subscription_count() > 0:
            self.pub_markers.publish(self._markers.build(result, header, names))
        if params.publish_label_image and self.pub_labels.get_subscription_count() > 0:
            labels = label_image(np.stack([paste_roi(x0, y0, crop, *result.image_size)
                                           for x0, y0, crop in result.rois])
                                 if result.rois else np.zeros((0, *result.image_size), bool))
            self.pub_labels.publish(numpy_to_image(labels, '16UC1', header))
        if params.publish_points and result.points_m is not None:
            self.pub_points.publish(result_to_cloud(result, header))

    def _publish_diagnostics(self) -> None:
        self.pub_diagnostics.publish(build_diagnostics(
            stamp=self.get_clock().now().to_msg(), node_name=self.get_fully_qualified_name(),
            device=str(self.pipeline.predictor.device), model=self.pipeline.predictor.cfg.name,
            input_rate_hz=self._rate_in.rate_hz(), output_rate_hz=self._rate_out.rate_hz(),
            counters={**self._counters, 'dropped': self._slot.dropped},
            stages=self._stats.summary()))

    def _bad_input(self, kind: str, text: str) -> None:
        """Log ``text`` at most once every BAD_INPUT_LOG_PERIOD_S seconds per distinct problem
        (same kind and same message apart from numbers), so a broken stream cannot flood logs."""
        key = kind + ':' + re.sub(r'\d+', '#', text)
        now = time.monotonic()
        if now - self._bad_input_logged.get(key, -1e9) >= BAD_INPUT_LOG_PERIOD_S:
            self._bad_input_logged[key] = now
            self.get_logger().error(text)

    def destroy_node(self):
        self._running = False
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def _depth_texts(result: FrameResult) -> list[str | None] | None:
    if result.instances_3d is None:
        return None
    return [f'{inst.position_m[2]:.2f} m' if inst.has_position else None
            for inst in result.instances_3d]


def main(args=None) -> int:
    """Entry point (executable ``yolact_node``); exit code 2 when the node cannot start."""
    if wants_help(args):
        print(node_help('yolact_node', __doc__, help_rows(),
                        'yolact_node --ros-args -r __node:=yolact -p score_threshold:=0.5 '
                        '-r image:=/camera/color/image_raw'))
        return 0
    return spin_node(YolactNode, args, fatal=(StartupError,), name='yolact')


if __name__ == '__main__':
    sys.exit(main())
