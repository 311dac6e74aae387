"""The ``yolact`` node: wiring only (parameters -> FramePipeline -> subscriptions and publishers).

Topics (relative names, node name ``yolact``):
  in : image (sensor_msgs/Image) or <image>/compressed; depth + camera_info when use_depth
  out: instances (instseg_msgs/InstanceMaskArray), overlay (Image, bgr8), markers (MarkerArray),
       labels (Image 16UC1, optional), points (PointCloud2, optional), /diagnostics
Inputs are paired by stamp in the callbacks (ros/inputs.py); only the newest resolved frame is
processed: a worker thread takes it from a one-element slot, so latency never grows when the
camera is faster than the model. ``YolactRuntime`` holds the behaviour in four steps (configure,
activate, deactivate, cleanup): the plain node runs the first two at construction, the
lifecycle node (ros/lifecycle_node.py) runs each on its transition.
"""

from __future__ import annotations

import collections
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from instseg_msgs.msg import InstanceMaskArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from instseg_ros.core.encoding import label_image, paste_roi
from instseg_ros.core.geometry import (CameraIntrinsics, DepthParams, check_rgbd_geometry,
                                       depth_to_meters)
from instseg_ros.core.image_codec import (ImageTooLarge, compressed_to_bgr8, image_to_bgr8,
                                          image_to_numpy)
from instseg_ros.core.latest import LatestSlot
from instseg_ros.core.pipeline import DepthInput, FramePipeline, FrameResult
from instseg_ros.core.predictor import InferenceParams
from instseg_ros.core import rgbd_sync
from instseg_ros.core.rgbd_sync import RgbdFrame
from instseg_ros.core.stats import RateMeter, RunningStats
from instseg_ros.core.throttle import KindThrottle
from instseg_ros.core.tracking import Tracker, positions_from_instances_3d
from instseg_ros.core.visualization import draw_overlay
from instseg_ros.ros import qos
from instseg_ros.ros.cli import node_help, wants_help
from instseg_ros.ros.conversions import InstancesPacker, numpy_to_image
from instseg_ros.ros.diagnostics import build_diagnostics
from instseg_ros.ros.entry import spin_node
from instseg_ros.ros.inputs import CameraInputs, stamp_s
from instseg_ros.ros.label_outputs import VISION_MSGS_MISSING, create_label_publishers
from instseg_ros.ros.markers import MarkerBuilder, result_to_cloud
from instseg_ros.ros.model_loading import StartupError, load_pipeline
from instseg_ros.ros.params import (PARAMETERS, SPECS, NodeParams, declare_all, help_rows,
                                    normalize_classes, validate_all)

BAD_INPUT_LOG_PERIOD_S = 5.0
#: a colour frame with depth waiting for the worker is not replaced by a newer one without depth
#: while it is younger than this [s]
PREFER_PAIRED_MAX_HOLD_S = 0.3


def declare_parameters(node: Node) -> NodeParams:
    """Declare every parameter of the table on ``node`` (params.declare_all: types converted,
    ranges checked, StartupError with one line otherwise) and check the choices."""
    params = declare_all(node)
    for spec in PARAMETERS:
        value = getattr(params, spec.name)
        if spec.choices and value not in spec.choices:
            raise StartupError(f'{spec.name}:={value!r} is not valid: pass one of '
                               f'{", ".join(spec.choices)}')
    return params


class YolactRuntime:
    """What the node does, in four steps driven by the plain or the lifecycle node.

    ``configure`` loads the model (raises StartupError), ``activate`` creates publishers,
    subscriptions, timers and the inference worker, ``deactivate`` removes them again (the model
    stays loaded) and ``cleanup`` frees the model.
    """

    def __init__(self, node: Node, params: NodeParams):
        self.node, self.params = node, params
        self.pipeline: FramePipeline | None = None
        self._throttle = KindThrottle(BAD_INPUT_LOG_PERIOD_S)
        self._stats = RunningStats(window=100)
        self._rate_in, self._rate_out = RateMeter(), RateMeter()
        self._counters: collections.Counter = collections.Counter()
        self._markers = MarkerBuilder()  # both reuse their messages; worker thread only
        self._packer = InstancesPacker()
        self._slot: LatestSlot | None = None
        self._worker: threading.Thread | None = None
        self.inputs: CameraInputs | None = None
        self._publishers: list = []
        self._diag_timer = None
        node.add_on_set_parameters_callback(self._on_set_parameters)

    # ----------------------------------------------------------------------------- steps
    def configure(self) -> None:
        self.pipeline = load_pipeline(self.params, self.node.get_logger())

    def activate(self) -> None:
        node, opts = self.node, {'qos_overriding_options': qos.overridable()}
        self.pub_instances = node.create_publisher(InstanceMaskArray, 'instances',
                                                   qos.result_output(), **opts)
        self.pub_overlay = node.create_publisher(Image, 'overlay', qos.result_output(), **opts)
        self.pub_markers = node.create_publisher(MarkerArray, 'markers', qos.result_output(),
                                                 **opts)
        self.pub_labels = node.create_publisher(Image, 'labels', qos.result_output(), **opts)
        self.pub_points = node.create_publisher(PointCloud2, 'points', qos.result_output(), **opts)
        self.pub_diagnostics = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.label_outputs = create_label_publishers(node, self.pipeline.class_names,
                                                     self.params.score_threshold, **opts)
        if not self.label_outputs.has_vision_msgs:
            node.get_logger().info(VISION_MSGS_MISSING)
        self._publishers = [self.pub_instances, self.pub_overlay, self.pub_markers,
                            self.pub_labels, self.pub_points, self.pub_diagnostics,
                            *self.label_outputs.publishers()]
        self.tracker = Tracker(self.params.tracker_params())  # a new run: new ids
        self._received_at_last = 0
        # prefer the newest colour frame that has its depth (see LatestSlot); without any depth
        # stream there is nothing better to wait for
        self._slot = (LatestSlot(prefer=lambda frame: frame.depth is not None
                                 or frame.unpaired_reason == rgbd_sync.NO_DEPTH_YET,
                                 max_hold_s=PREFER_PAIRED_MAX_HOLD_S)
                      if self.params.use_depth else LatestSlot())
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, args=(self._slot,),
                                        name='yolact_inference', daemon=True)
        self._worker.start()
        self.inputs = CameraInputs(node, self.params, deliver=self._slot.put,
                                   on_color=self._on_color, report=self._report)
        self._diag_timer = node.create_timer(self.params.diagnostics_period,
                                             self._publish_diagnostics)
        predictor = self.pipeline.predictor
        node.get_logger().info(
            f'Ready: model {predictor.cfg.name} on {predictor.device}, '
            f'{len(self.pipeline.class_names)} classes, listening on {self.inputs.color.topic}'
            + (f' + depth {self.inputs.depth.topic}' if self.inputs.depth else ''))

    def deactivate(self) -> None:
        if self.inputs is not None:
            self.inputs.destroy()
            self.inputs = None
        self._running = False
        if self._slot is not None:
            self._slot.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._worker = None
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
        for pub in self._publishers:
            self.node.destroy_publisher(pub)
        self._publishers = []

    def cleanup(self) -> None:
        self.pipeline = None
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------------- parameters
    def _on_set_parameters(self, params):
        result = validate_all(params, self.params)
        if result.successful:
            result = self._check_classes(params) or result
        if result.successful:
            values = {name: getattr(self.params, name) for name in SPECS}
            values.update({p.name: p.value for p in params if p.name in SPECS})
            threshold_changed = self.params.score_threshold != values['score_threshold']
            self.params = NodeParams.from_values(values)
            if self.inputs is not None:
                self.inputs.set_pairing(self.params.depth_slop, self.params.depth_wait)
            if threshold_changed and self._publishers:
                self.label_outputs.set_threshold(self.params.score_threshold)
        return result

    def _check_classes(self, params):
        """Reject class names the model does not know (names the valid ones)."""
        if self.pipeline is None:
            return None
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

    # ----------------------------------------------------------------------------- worker
    def _on_color(self) -> None:
        self._rate_in.tick()
        self._counters['received'] += 1

    def _worker_loop(self, slot: LatestSlot) -> None:
        while self._running:
            frame = slot.take(timeout_s=0.2)
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as exc:  # noqa: BLE001 - the node must survive any single frame
                if not self.node.context.ok() or not self._running:
                    return  # shutting down: publishers are gone, nothing to report
                self._counters['failed'] += 1
                self._report('processing', f'frame skipped: {type(exc).__name__}: {exc}')

    def _process(self, frame: RgbdFrame) -> None:
        params, msg = self.params, frame.color
        began = time.perf_counter()
        image_bgr = self._decode(msg, params)
        if image_bgr is None:
            return
        decoded = time.perf_counter()
        result = self.pipeline.process(image_bgr, self._inference_params(params),
                                       min_mask_area=params.min_mask_area)
        depth_began = time.perf_counter()
        if params.use_depth:
            self._attach_depth(result, frame, params)
        start = time.perf_counter()
        self._publish(result, msg.header, image_bgr, params)
        done = time.perf_counter()
        timings = result.timings_ms
        timings['decode'] = (decoded - began) * 1e3
        timings['publish'] = (done - start) * 1e3
        # the node's own work: all but the forward pass and the depth step
        timings['overhead'] = ((done - began) - (start - depth_began)) * 1e3 - timings['forward']
        self._stats.add_all(timings)
        self._stats.add('latency', (self.node.get_clock().now().nanoseconds * 1e-9
                                    - stamp_s(msg.header)) * 1e3)
        self._stats.add('instances', float(len(result)))
        self._rate_out.tick()
        self._counters['processed'] += 1

    def _decode(self, msg, params: NodeParams):
        """bgr8 array of an Image/CompressedImage, or None after a throttled error."""
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_bgr8(msg, params.max_image_pixels)
            return image_to_bgr8(msg, params.max_image_pixels)
        except ImageTooLarge as exc:
            self._counters['bad_input'] += 1
            self._report('image_too_large', f'input image too large: {exc}')
        except ValueError as exc:
            self._counters['bad_input'] += 1
            self._report('image', f'bad input image, frame skipped: {exc}')
        return None

    def _inference_params(self, params: NodeParams) -> InferenceParams:
        names = list(self.pipeline.class_names)
        class_ids = tuple(names.index(c) for c in params.classes if c in names)
        return InferenceParams(score_threshold=params.score_threshold,
                               nms_threshold=params.nms_threshold, top_k=params.top_k,
                               max_detections=params.max_detections,
                               class_ids=class_ids or None)

    def _attach_depth(self, result: FrameResult, frame: RgbdFrame, params: NodeParams) -> None:
        depth = self._depth_input(frame, result.image_size, params)
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
            self._report('depth', f'depth not used: {exc}')
            return
        self._counters['with_depth'] += 1

    def _depth_input(self, frame: RgbdFrame, image_hw, params: NodeParams) -> DepthInput | None:
        """Depth in metres with intrinsics scaled to it, checked against the colour image."""
        if frame.depth is None:
            return None
        depth_msg, info = frame.depth, frame.info
        try:
            check_rgbd_geometry(image_hw, (int(depth_msg.height), int(depth_msg.width)),
                                (int(info.width), int(info.height)))
            depth_m = depth_to_meters(image_to_numpy(depth_msg, params.max_image_pixels),
                                      depth_msg.encoding, params.depth_scale or None)
            intrinsics = CameraIntrinsics.from_k(list(info.k), info.width, info.height)
            intrinsics = intrinsics.scaled_to(depth_m.shape[1], depth_m.shape[0])
        except ValueError as exc:
            self._counters['depth_rejected'] += 1
            self._report('depth', f'bad depth image or camera_info, frame without 3D: {exc}')
            return None
        return DepthInput(depth_m=depth_m, intrinsics=intrinsics)

    # ----------------------------------------------------------------------------- outputs
    def _track(self, result: FrameResult, params: NodeParams):
        """(track ids, track ages) of this frame's instances; ids None when tracking is off."""
        received = self._counters['received']
        elapsed, self._received_at_last = max(1, received - self._received_at_last), received
        self.tracker.params = params.tracker_params()
        ids, ages = self.tracker.update(
            result.rois, result.labels, result.scores,
            positions_from_instances_3d(result.instances_3d, len(result)),
            frames_elapsed=elapsed, image_size=result.image_size)
        return (ids if params.track_enabled else None), ages

    def _publish(self, result: FrameResult, header, image_bgr, params: NodeParams) -> None:
        names = self.pipeline.class_names
        tracked, ages = self._track(result, params)
        self.pub_instances.publish(self._packer.pack(
            header, result.image_size, result.rois, result.scores, result.labels, names,
            result.instances_3d, track_ids=tracked,
            track_ages=ages if tracked is not None else None))
        if params.publish_overlay and self.pub_overlay.get_subscription_count() > 0:
            overlay = draw_overlay(image_bgr, result.rois, result.boxes_xyxy, result.labels,
                                   result.scores, names, alpha=params.overlay_alpha,
                                   draw_boxes=params.overlay_draw_boxes,
                                   draw_labels=params.overlay_draw_labels,
                                   font_scale=params.overlay_font_scale,
                                   depth_text=_depth_texts(result), track_ids=tracked)
            self.pub_overlay.publish(numpy_to_image(overlay, 'bgr8', header))
        if params.publish_markers and self.pub_markers.get_subscription_count() > 0:
            self.pub_markers.publish(self._markers.build(result, header, names, tracked))
        if params.publish_label_image and self.pub_labels.get_subscription_count() > 0:
            labels = label_image(np.stack([paste_roi(x0, y0, crop, *result.image_size)
                                           for x0, y0, crop in result.rois])
                                 if result.rois else np.zeros((0, *result.image_size), bool))
            self.pub_labels.publish(numpy_to_image(labels, '16UC1', header))
        if params.publish_points and result.points_m is not None:
            self.pub_points.publish(result_to_cloud(result, header))
        self.label_outputs.publish(result, header, tracked, labels=params.publish_labels,
                                   detections=params.publish_detections)

    def counters(self) -> dict[str, int]:
        """Frame counters: received, processed, dropped, bad_input, paired, unpaired, ..."""
        counters = dict(self._counters)
        counters['dropped'] = self._slot.dropped if self._slot is not None else 0
        if self.inputs is not None and self.inputs.use_depth:
            counters['paired'] = self.inputs.sync.paired
            counters['unpaired'] = self.inputs.sync.unpaired
            counters['depth_received'] = self.inputs.sync.depth_received
        return counters

    def _publish_diagnostics(self) -> None:
        predictor = self.pipeline.predictor
        inputs = {}
        if self.inputs is not None:
            inputs = {item.label: item.reliability for item in self.inputs.inputs}
        self.pub_diagnostics.publish(build_diagnostics(
            stamp=self.node.get_clock().now().to_msg(),
            node_name=self.node.get_fully_qualified_name(), device=str(predictor.device),
            model=predictor.cfg.name, input_rate_hz=self._rate_in.rate_hz(),
            output_rate_hz=self._rate_out.rate_hz(), counters=self.counters(),
            stages=self._stats.summary(), input_qos=inputs))

    def _report(self, kind: str, text: str) -> None:
        """Log ``text`` at most once every BAD_INPUT_LOG_PERIOD_S seconds per kind of problem
        (never per distinct text), so a stream of distinct bad inputs cannot flood the log."""
        suppressed = self._throttle.admit(kind)
        if suppressed is None:
            return
        more = f' ({suppressed} more like this in the last {BAD_INPUT_LOG_PERIOD_S:.0f} s)' \
            if suppressed else ''
        if kind == 'pairing':  # rclpy: one severity per call site
            self.node.get_logger().warning(text + more)
        else:
            self.node.get_logger().error(text + more)


def _depth_texts(result: FrameResult) -> list[str | None] | None:
    if result.instances_3d is None:
        return None
    return [f'{inst.position_m[2]:.2f} m' if inst.has_position else None
            for inst in result.instances_3d]


class YolactNode(Node):
    """YOLACT instance segmentation node. Raises StartupError when the model cannot load."""

    def __init__(self, **kwargs):
        super().__init__('yolact', **kwargs)
        self.params = declare_parameters(self)
        self.runtime = YolactRuntime(self, self.params)
        self.runtime.configure()
        self.runtime.activate()

    @property
    def pipeline(self) -> FramePipeline:
        return self.runtime.pipeline

    def destroy_node(self):
        self.runtime.deactivate()
        return super().destroy_node()


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
