"""One camera of the node: its inputs, newest-frame slot, outputs and per-camera state.

The node has one ``CameraStream`` per camera (``cameras`` parameter; one with an empty prefix
when it is empty): subscriptions under ``<camera>/`` (``camera_topics``: colour or its
``/compressed``, depth, camera_info; ``image``, ``depth``, ``camera_info`` for a single camera), publishers ``<camera>/instances``, ``overlay``, ``markers``,
``labels``, ``points``, ``labels/class``, ``labels/instance``, ``label_info``, ``detections`` and
``detections_3d``, each with that camera's header; its own RGB-D pairing, tracker, message pools,
counters and latency statistics. The model, the worker and the parameters are the runtime's
(ros/node.py).
"""

from __future__ import annotations

import collections

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from instseg_msgs.msg import InstanceMaskArray
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from instseg_ros.core.encoding import label_image, paste_roi
from instseg_ros.core.geometry import (CameraIntrinsics, DepthParams, check_rgbd_geometry,
                                       depth_to_meters)
from instseg_ros.core.image_codec import (ImageTooLarge, compressed_to_bgr8, image_to_bgr8,
                                          image_to_numpy)
from instseg_ros.core.pipeline import DepthInput, FrameResult
from instseg_ros.core.rgbd_sync import RgbdFrame
from instseg_ros.core.stats import RateMeter, RunningStats
from instseg_ros.core.tracking import Tracker, positions_from_instances_3d
from instseg_ros.core.visualization import depth_texts, draw_overlay
from instseg_ros.ros import qos
from instseg_ros.ros.conversions import InstancesPacker, numpy_to_image
from instseg_ros.ros.diagnostics import build_status
from instseg_ros.ros.inputs import CameraInputs
from instseg_ros.ros.label_outputs import create_label_publishers
from instseg_ros.ros.markers import MarkerBuilder, result_to_cloud
from instseg_ros.ros.params import NodeParams


class CameraStream:
    """One camera's I/O and state. ``prefix`` is '' (single camera) or '<camera>/'."""

    def __init__(self, runtime, prefix: str):
        self._runtime, self.node = runtime, runtime.node
        self.prefix = prefix
        self.name = prefix.rstrip('/') or 'camera'
        self.label = f'[{self.name}] ' if prefix else ''
        self.counters_raw: collections.Counter = collections.Counter()
        self.stats = RunningStats(window=100)
        self.rate_in, self.rate_out = RateMeter(), RateMeter()
        self._markers = MarkerBuilder()  # both reuse their messages; worker thread only
        self._packer = InstancesPacker()
        self.inputs: CameraInputs | None = None
        self.publishers: list = []

    # ----------------------------------------------------------------------------- lifecycle
    def activate(self, deliver) -> None:
        """Create this camera's publishers and subscriptions; frames go to ``deliver``."""
        node, params, opts = self.node, self._runtime.params, {
            'qos_overriding_options': qos.overridable()}
        p = self.prefix
        self.pub_instances = node.create_publisher(InstanceMaskArray, p + 'instances',
                                                   qos.result_output(), **opts)
        self.pub_overlay = node.create_publisher(Image, p + 'overlay', qos.result_output(), **opts)
        self.pub_markers = node.create_publisher(MarkerArray, p + 'markers', qos.result_output(),
                                                 **opts)
        self.pub_labels = node.create_publisher(Image, p + 'labels', qos.result_output(), **opts)
        self.pub_points = node.create_publisher(PointCloud2, p + 'points', qos.result_output(),
                                                **opts)
        self.label_outputs = create_label_publishers(
            node, self._runtime.pipeline.class_names, params.score_threshold, prefix=p, **opts)
        self.publishers = [self.pub_instances, self.pub_overlay, self.pub_markers,
                           self.pub_labels, self.pub_points, *self.label_outputs.publishers()]
        self.tracker = Tracker(params.tracker_params())  # a new run: new ids
        self._received_at_last = 0
        topics = tuple(params.camera_topics) if p else ('image', 'depth', 'camera_info')
        self.inputs = CameraInputs(node, params, deliver=deliver, on_color=self._on_color,
                                   report=self._runtime.report, prefix=p, topics=topics)

    def deactivate(self) -> None:
        if self.inputs is not None:
            self.inputs.destroy()
            self.inputs = None
        for pub in self.publishers:
            self.node.destroy_publisher(pub)
        self.publishers = []

    def _on_color(self) -> None:
        self.rate_in.tick()
        self.counters_raw['received'] += 1

    # ----------------------------------------------------------------------------- input
    def decode(self, msg, params: NodeParams):
        """bgr8 array of an Image/CompressedImage, or None after a throttled error."""
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_bgr8(msg, params.max_image_pixels)
            return image_to_bgr8(msg, params.max_image_pixels)
        except ImageTooLarge as exc:
            self.counters_raw['bad_input'] += 1
            self._runtime.report('image_too_large', f'{self.label}input image too large: {exc}')
        except ValueError as exc:
            self.counters_raw['bad_input'] += 1
            self._runtime.report('image', f'{self.label}bad input image, frame skipped: {exc}')
        return None

    def attach_depth(self, result: FrameResult, frame: RgbdFrame, params: NodeParams) -> None:
        depth = self._depth_input(frame, result.image_size, params)
        if depth is None:
            self.counters_raw['without_depth'] += 1
            return
        try:
            self._runtime.pipeline.add_depth(result, depth, DepthParams(
                min_depth_m=params.min_depth, max_depth_m=params.max_depth,
                mask_erosion_px=params.mask_erosion, min_points=params.min_depth_points),
                want_points=params.publish_points)
        except ValueError as exc:
            self.counters_raw['without_depth'] += 1
            self._runtime.report('depth', f'{self.label}depth not used: {exc}')
            return
        self.counters_raw['with_depth'] += 1

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
            self.counters_raw['depth_rejected'] += 1
            self._runtime.report('depth', f'{self.label}bad depth image or camera_info, frame '
                                          f'without 3D: {exc}')
            return None
        return DepthInput(depth_m=depth_m, intrinsics=intrinsics)

    # ----------------------------------------------------------------------------- outputs
    def _track(self, result: FrameResult, params: NodeParams):
        """(track ids, track ages) of this frame's instances; (None, None) when tracking is off
        (then the tracker is not run at all)."""
        received = self.counters_raw['received']
        elapsed, self._received_at_last = max(1, received - self._received_at_last), received
        if not params.track_enabled:
            return None, None
        self.tracker.params = params.tracker_params()
        return self.tracker.update(
            result.rois, result.labels, result.scores,
            positions_from_instances_3d(result.instances_3d, len(result)),
            frames_elapsed=elapsed, image_size=result.image_size)

    def publish(self, result: FrameResult, header, image_bgr, params: NodeParams) -> None:
        names = self._runtime.pipeline.class_names
        tracked, ages = self._track(result, params)
        self.pub_instances.publish(self._packer.pack(
            header, result.image_size, result.rois, result.scores, result.labels, names,
            result.instances_3d, track_ids=tracked, track_ages=ages))
        if params.publish_overlay and self.pub_overlay.get_subscription_count() > 0:
            overlay = draw_overlay(image_bgr, result.rois, result.boxes_xyxy, result.labels,
                                   result.scores, names, alpha=params.overlay_alpha,
                                   draw_boxes=params.overlay_draw_boxes,
                                   draw_labels=params.overlay_draw_labels,
                                   font_scale=params.overlay_font_scale,
                                   depth_text=depth_texts(result.instances_3d),
                                   track_ids=tracked)
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

    def counters(self, dropped: int) -> dict[str, int]:
        """Frame counters: received, processed, dropped, bad_input, paired, unpaired, ..."""
        counters = dict(self.counters_raw)
        counters['dropped'] = dropped
        if self.inputs is not None and self.inputs.use_depth:
            counters['paired'] = self.inputs.sync.paired
            counters['unpaired'] = self.inputs.sync.unpaired
            counters['depth_received'] = self.inputs.sync.depth_received
        return counters

    def status(self, node_name: str, device: str, model: str, dropped: int) -> DiagnosticStatus:
        """This camera's DiagnosticStatus (named '<node>: inference[ <camera>]')."""
        inputs = {}
        if self.inputs is not None:
            inputs = {item.label: item.reliability for item in self.inputs.inputs}
        return build_status(node_name=node_name + (f' {self.name}' if self.prefix else ''),
                            device=device, model=model, input_rate_hz=self.rate_in.rate_hz(),
                            output_rate_hz=self.rate_out.rate_hz(),
                            counters=self.counters(dropped), stages=self.stats.summary(),
                            input_qos=inputs)
