"""The ``yolact`` node: wiring only (parameters -> FramePipeline -> subscriptions and publishers).

Topics (relative names, node name ``yolact``; with ``cameras: [front, rear]`` each under
``front/`` and ``rear/``, see ros/camera_stream.py):
  in : image (sensor_msgs/Image) or <image>/compressed; depth + camera_info when use_depth
  out: instances (instseg_msgs/InstanceMaskArray), overlay (Image, bgr8), markers (MarkerArray),
       labels/*, label_info, detections*, points (optional), /diagnostics
Inputs are paired by stamp in the callbacks (ros/inputs.py); only the newest resolved frame of
each camera is processed: a worker thread takes it from a one-element slot per camera (several
cameras: one batched forward pass, round robin, core/batching.py), so latency never grows when
a camera is faster than the model. ``YolactRuntime`` holds the behaviour in four steps (configure,
activate, deactivate, cleanup): the plain node runs the first two at construction, the
lifecycle node (ros/lifecycle_node.py) runs each on its transition.
"""

from __future__ import annotations

import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from std_msgs.msg import Header

from instseg_ros.core import rgbd_sync
from instseg_ros.core.batching import BatchScheduler
from instseg_ros.core.classes import unknown_classes, unknown_classes_text
from instseg_ros.core.pipeline import FramePipeline, FrameResult
from instseg_ros.core.predictor import InferenceParams
from instseg_ros.core.rgbd_sync import RgbdFrame, stamp_s
from instseg_ros.core.segmenter import FAMILY_TITLES
from instseg_ros.core.throttle import KindThrottle
from instseg_ros.ros.camera_stream import CameraStream
from instseg_ros.ros.cli import node_help, wants_help
from instseg_ros.ros.entry import spin_node
from instseg_ros.ros.label_outputs import VISION_MSGS_MISSING
from instseg_ros.ros.model_loading import StartupError, load_pipeline
from instseg_ros.ros.params import (SPECS, NodeParams, check_unknown_parameters, declare_all,
                                    help_rows, normalize_classes, validate_all)

BAD_INPUT_LOG_PERIOD_S = 5.0
#: a colour frame with depth waiting for the worker is not replaced by a newer one without depth
#: while it is younger than this [s]
PREFER_PAIRED_MAX_HOLD_S = 0.3


def declare_parameters(node: Node) -> NodeParams:
    """Declare every parameter of the table on ``node`` (params.declare_all: types converted,
    ranges and choices checked, StartupError with one line otherwise; a ``-p`` name that is not
    a parameter is refused the same way)."""
    params = declare_all(node)
    check_unknown_parameters(node, sys.argv)
    return params


class YolactRuntime:
    """What the node does, in four steps driven by the plain or the lifecycle node.

    ``configure`` loads the model (raises StartupError), ``activate`` creates every camera's
    publishers and subscriptions, the timers and the inference worker, ``deactivate`` removes
    them again (the model stays loaded) and ``cleanup`` frees the model. One model serves every
    camera of ``cameras``: the worker batches their newest frames (core.batching).
    """

    def __init__(self, node: Node, params: NodeParams):
        self.node, self.params = node, params
        self.pipeline: FramePipeline | None = None
        self._throttle = KindThrottle(BAD_INPUT_LOG_PERIOD_S)
        self.streams: list[CameraStream] = []
        self._scheduler: BatchScheduler | None = None
        self._worker: threading.Thread | None = None
        self._diag_timer = None
        self._running = False
        node.add_on_set_parameters_callback(self._on_set_parameters)

    # ----------------------------------------------------------------------------- steps
    def configure(self) -> None:
        pipeline = load_pipeline(self.params, self.node.get_logger())
        unknown = unknown_classes(self.params.classes, pipeline.class_names)
        if unknown:  # the same check as `ros2 param set` (_check_classes), at startup
            raise StartupError(f'parameter classes: {unknown_classes_text(unknown, pipeline.class_names)}; '
                               'pass classes:=[name,...] with names of the model, or [] for all')
        self.pipeline = pipeline

    def activate(self) -> None:
        node, params = self.node, self.params
        prefixes = [f'{name.strip("/")}/' for name in params.cameras] or ['']
        self.streams = [CameraStream(self, prefix) for prefix in prefixes]
        # prefer the newest colour frame that has its depth (see LatestSlot); without any depth
        # stream there is nothing better to wait for
        prefer = ((lambda frame: frame.depth is not None
                   or frame.unpaired_reason == rgbd_sync.NO_DEPTH_YET)
                  if params.use_depth else None)
        self._scheduler = BatchScheduler(len(self.streams), max_batch=params.max_batch,
                                         wait_s=params.batch_wait_ms / 1e3, prefer=prefer,
                                         max_hold_s=PREFER_PAIRED_MAX_HOLD_S)
        self.pub_diagnostics = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name='yolact_inference',
                                        daemon=True)
        self._worker.start()
        for stream, slot in zip(self.streams, self._scheduler.slots):
            stream.activate(deliver=slot.put)
        if not self.streams[0].label_outputs.has_vision_msgs:
            node.get_logger().info(VISION_MSGS_MISSING)
        self._diag_timer = node.create_timer(params.diagnostics_period, self._publish_diagnostics)
        predictor = self.pipeline.predictor
        inputs = ', '.join(s.inputs.color.topic + (f' + depth {s.inputs.depth.topic}'
                                                   if s.inputs.depth else '')
                           for s in self.streams)
        family = FAMILY_TITLES.get(self.pipeline.family, 'unknown family')
        node.get_logger().info(
            f'Ready: model {predictor.name} on {predictor.device} '
            f'({getattr(predictor, "backend", "torch")} {getattr(predictor, "precision", "fp32")}), '
            f'{family}, {len(self.pipeline.class_names)} classes, listening on {inputs}'
            + (f' (batches of up to {params.max_batch})' if len(self.streams) > 1 else ''))

    def deactivate(self) -> None:
        for stream in self.streams:
            stream.deactivate()
        self._running = False
        if self._scheduler is not None:
            self._scheduler.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._worker = None
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
            self.node.destroy_publisher(self.pub_diagnostics)

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
            for stream in self.streams:
                if stream.inputs is not None:
                    stream.inputs.set_pairing(self.params.depth_slop, self.params.depth_wait)
                if threshold_changed and stream.publishers:
                    stream.label_outputs.set_threshold(self.params.score_threshold)
        return result

    def _check_classes(self, params):
        """Reject class names the model does not know (names the valid ones)."""
        if self.pipeline is None:
            return None
        for param in params:
            if param.name != 'classes':
                continue
            unknown = unknown_classes(normalize_classes(param.value), self.pipeline.class_names)
            if unknown:
                return SetParametersResult(
                    successful=False, reason=unknown_classes_text(unknown, self.pipeline.class_names))
        return None

    # ----------------------------------------------------------------------------- worker
    def _worker_loop(self) -> None:
        scheduler = self._scheduler
        while self._running:
            batch = scheduler.take(timeout_s=0.2)
            if not batch:
                continue
            try:
                self._process([(self.streams[i], frame) for i, frame in batch])
            except Exception as exc:  # noqa: BLE001 - the node must survive any single frame
                if not self.node.context.ok() or not self._running:
                    return  # shutting down: publishers are gone, nothing to report
                for i, _ in batch:
                    self.streams[i].counters_raw['failed'] += 1
                self.report('processing', f'frame skipped: {type(exc).__name__}: {exc}')

    def _process(self, batch: list[tuple[CameraStream, RgbdFrame]]) -> None:
        """One forward pass for the newest frame of each camera in ``batch``; each result is
        published to its own camera with that camera's header."""
        params = self.params
        began = time.perf_counter()
        decoded = [(stream, frame, stream.decode(frame.color, params)) for stream, frame in batch]
        decoded = [item for item in decoded if item[2] is not None]
        if not decoded:
            return
        decode_ms = (time.perf_counter() - began) * 1e3 / len(decoded)
        inference = self._inference_params(params)
        if len(decoded) == 1:
            results = [self.pipeline.process(decoded[0][2], inference,
                                             min_mask_area=params.min_mask_area)]
        else:
            results = self.pipeline.process_batch([image for _, _, image in decoded], inference,
                                                  min_mask_area=params.min_mask_area)
        shared_ms = (time.perf_counter() - began) * 1e3 / len(decoded)
        for (stream, frame, image_bgr), result in zip(decoded, results):
            self._finish(stream, frame, image_bgr, result, params, decode_ms, shared_ms)

    def _finish(self, stream: CameraStream, frame: RgbdFrame, image_bgr, result: FrameResult,
                params: NodeParams, decode_ms: float, shared_ms: float) -> None:
        """Depth, publishing and statistics of one camera's result (``shared_ms``: this frame's
        share of decoding and the batched model call)."""
        msg = frame.color
        if params.use_depth:
            stream.attach_depth(result, frame, params)
        start = time.perf_counter()
        stream.publish(result, msg.header, image_bgr, params)
        done = time.perf_counter()
        timings = result.timings_ms
        timings['decode'] = decode_ms
        timings['publish'] = (done - start) * 1e3
        # the node's own work: all but the forward pass and the depth step
        timings['overhead'] = shared_ms + timings['publish'] - timings['forward']
        stream.stats.add_all(timings)
        stream.stats.add('latency', (self.node.get_clock().now().nanoseconds * 1e-9
                                     - stamp_s(msg.header)) * 1e3)
        stream.stats.add('instances', float(len(result)))
        stream.rate_out.tick()
        stream.counters_raw['processed'] += 1

    def _inference_params(self, params: NodeParams) -> InferenceParams:
        names = list(self.pipeline.class_names)
        class_ids = tuple(names.index(c) for c in params.classes if c in names)
        return InferenceParams(score_threshold=params.score_threshold,
                               nms_threshold=params.nms_threshold, top_k=params.top_k,
                               max_detections=params.max_detections,
                               class_ids=class_ids or None)

    # ----------------------------------------------------------------------------- reporting
    def counters(self) -> dict[str, int]:
        """Frame counters of the (first) camera: received, processed, dropped, paired, ..."""
        return self.streams[0].counters(self._scheduler.dropped[0]) if self.streams else {}

    def _publish_diagnostics(self) -> None:
        predictor = self.pipeline.predictor
        name = self.node.get_fully_qualified_name()
        statuses = [stream.status(name, str(predictor.device), predictor.name, dropped)
                    for stream, dropped in zip(self.streams, self._scheduler.dropped)]
        self.pub_diagnostics.publish(DiagnosticArray(
            header=Header(stamp=self.node.get_clock().now().to_msg()), status=statuses))

    def report(self, kind: str, text: str) -> None:
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
