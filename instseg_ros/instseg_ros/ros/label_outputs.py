"""Outputs in the shapes other ROS tools consume: label images, a class map, vision_msgs detections.

Topics (relative names, under the node's namespace):

==================  ====================================  ======================================
labels/class        sensor_msgs/Image mono8 (mono16 when  0 = background, ``class_id + 1``
                    the model has > 254 classes)          elsewhere (the label_info id)
labels/instance     sensor_msgs/Image mono16              track id (tracking on; 0 for a track
                                                          not yet confirmed) or index + 1
label_info          vision_msgs/LabelInfo, else           class map 0 = background, k + 1 =
                    instseg_msgs/LabelInfo                class k; the score threshold;
                                                          transient local (late joiners get it)
detections          vision_msgs/Detection2DArray          bbox = mask ROI, id = track id
detections_3d       vision_msgs/Detection3DArray          box_center / box_size (depth only)
==================  ====================================  ======================================

Overlapping masks are resolved by score (the higher score owns the pixel) in both images, so
the two always agree on which instance a pixel shows. All messages carry the source image's
header. Images and detections are only built while someone subscribes.

How the node wires it (a few lines; one Tracker per camera stream, used from the worker thread)::

    from instseg_ros.core.tracking import Tracker, positions_from_instances_3d
    from instseg_ros.ros.label_outputs import VISION_MSGS_MISSING, create_label_publishers

    # _create_publishers(), after the other publishers:
    self.tracker = Tracker(self.params.tracker_params())
    self.label_outputs = create_label_publishers(
        self, self.pipeline.class_names, self.params.score_threshold,
        qos_overriding_options=qos.overridable())
    if not self.label_outputs.has_vision_msgs:
        self.get_logger().info(VISION_MSGS_MISSING)   # once: detections topics are off

    # _publish(result, header, image_bgr, params), first:
    self.tracker.params = params.tracker_params()       # runtime track_* changes
    ids, ages = self.tracker.update(result.rois, result.labels, result.scores,
                                    positions_from_instances_3d(result.instances_3d, len(result)),
                                    frames_elapsed=1, image_size=result.image_size)
    tracked = ids if params.track_enabled else None
    self._packer.pack(..., result.instances_3d, track_ids=ids, track_ages=ages)
    draw_overlay(..., track_ids=tracked)  /  self._markers.build(result, header, names, tracked)
    self.label_outputs.publish(result, header, tracked, labels=params.publish_labels,
                               detections=params.publish_detections)

    # _on_set_parameters, when score_threshold changed: self.label_outputs.set_threshold(value)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from instseg_ros.core.encoding import (CLASS_LABEL_OFFSET, class_label_image, instance_label_image,
                                       winner_index_image)
from instseg_ros.ros import qos
from instseg_ros.ros.conversions import numpy_to_image

try:  # vision_msgs is an optional run dependency (on every ROS install via rosdep / apt)
    import vision_msgs.msg as vision_msgs
except ImportError:  # pragma: no cover - depends on the install
    vision_msgs = None

LABELS_CLASS_TOPIC = 'labels/class'
LABELS_INSTANCE_TOPIC = 'labels/instance'
LABEL_INFO_TOPIC = 'label_info'
DETECTIONS_TOPIC = 'detections'
DETECTIONS_3D_TOPIC = 'detections_3d'

#: name of class map id 0 (background pixels of labels/class).
BACKGROUND_NAME = 'background'

#: logged once by the node when vision_msgs is missing.
VISION_MSGS_MISSING = ('vision_msgs is not installed: detections and detections_3d are off and '
                       'label_info uses instseg_msgs/LabelInfo (install '
                       'ros-$ROS_DISTRO-vision-msgs to get them)')

def label_info_qos() -> QoSProfile:
    """label_info: like camera_info of a pipeline, latched for late subscribers (a new profile
    each call: rclpy applies YAML overrides to it in place)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def label_info_types() -> tuple[type, type]:
    """(LabelInfo, VisionClass) classes: vision_msgs' when importable, else instseg_msgs'."""
    if vision_msgs is not None:
        return vision_msgs.LabelInfo, vision_msgs.VisionClass
    from instseg_msgs.msg import LabelInfo, VisionClass
    return LabelInfo, VisionClass


def label_info_msg(class_names: Sequence[str], threshold: float, header: Header | None = None,
                   types: tuple[type, type] | None = None) -> Any:
    """The class map: id 0 = background, ``k + 1`` = ``class_names[k]``; ``threshold`` in 0..1.

    Raises:
        ValueError: more classes than uint16 class ids allow.
    """
    if len(class_names) + CLASS_LABEL_OFFSET > 65535:
        raise ValueError(f'{len(class_names)} classes do not fit in uint16 class ids')
    label_info_cls, vision_class_cls = types or label_info_types()
    class_map = [vision_class_cls(class_id=0, class_name=BACKGROUND_NAME)]
    class_map += [vision_class_cls(class_id=k + CLASS_LABEL_OFFSET, class_name=str(name))
                  for k, name in enumerate(class_names)]
    return label_info_cls(header=header or Header(), class_map=class_map,
                          threshold=float(threshold))


def label_image_msgs(result: Any, header: Header, num_classes: int, track_ids: Any = None,
                     want_class: bool = True, want_instance: bool = True
                     ) -> tuple[Image | None, Image | None]:
    """labels/class and labels/instance images of one ``FrameResult`` (None where not wanted).

    Painted from the ROIs (one pass over the mask pixels, no per-instance full frames).
    """
    if not (want_class or want_instance):
        return None, None
    owner = winner_index_image(result.rois, result.scores, result.image_size)
    class_msg = instance_msg = None
    if want_class:
        classes = class_label_image(owner, result.labels, num_classes)
        class_msg = numpy_to_image(classes, 'mono8' if classes.dtype.itemsize == 1 else 'mono16',
                                   header)
    if want_instance:
        instance_msg = numpy_to_image(instance_label_image(owner, track_ids), 'mono16', header)
    return class_msg, instance_msg


def _track_string(track_ids: Any, index: int) -> str:
    """Detection id: the track id as a string, '' when not tracked (vision_msgs: may be empty)."""
    if track_ids is None or int(track_ids[index]) == 0:
        return ''
    return str(int(track_ids[index]))


def _hypothesis(label: int, score: float) -> Any:
    result = vision_msgs.ObjectHypothesisWithPose()
    result.hypothesis.class_id = str(int(label) + CLASS_LABEL_OFFSET)
    result.hypothesis.score = float(score)
    return result


def detections_2d_msg(result: Any, header: Header, track_ids: Any = None) -> Any:
    """vision_msgs/Detection2DArray of one ``FrameResult``, one detection per instance.

    bbox: the mask ROI (centre = ``x0 + w / 2, y0 + h / 2`` in pixel-edge coordinates, size =
    ROI width / height, theta 0); results[0].hypothesis: class_id = ``str(class_id + 1)`` (the
    label_info id), score; id = track id as a string ('' when not tracked).
    """
    out = vision_msgs.Detection2DArray(header=header)
    for index, (x0, y0, crop) in enumerate(result.rois):
        height, width = crop.shape
        det = vision_msgs.Detection2D(header=header, id=_track_string(track_ids, index))
        det.bbox.center.position.x = float(x0) + width / 2.0
        det.bbox.center.position.y = float(y0) + height / 2.0
        det.bbox.size_x, det.bbox.size_y = float(width), float(height)
        det.results.append(_hypothesis(result.labels[index], result.scores[index]))
        out.detections.append(det)
    return out


def detections_3d_msg(result: Any, header: Header, track_ids: Any = None) -> Any:
    """vision_msgs/Detection3DArray of the instances that have 3D (``has_position``).

    bbox: centre = box_center (identity orientation), size = box_size [m], in the header's
    frame; results[0]: class id and score as in 2D, pose = the robust centroid (position);
    id = track id as a string. Empty when the frame had no depth.
    """
    out = vision_msgs.Detection3DArray(header=header)
    for index, item in enumerate(result.instances_3d or ()):
        if item is None or not item.has_position:
            continue
        det = vision_msgs.Detection3D(header=header, id=_track_string(track_ids, index))
        center, size = det.bbox.center, det.bbox.size
        center.position.x, center.position.y, center.position.z = (float(v)
                                                                   for v in item.box_center_m)
        center.orientation.w = 1.0
        size.x, size.y, size.z = (float(v) for v in item.box_size_m)
        hypothesis = _hypothesis(result.labels[index], result.scores[index])
        position = hypothesis.pose.pose.position
        position.x, position.y, position.z = (float(v) for v in item.position_m)
        hypothesis.pose.pose.orientation.w = 1.0
        det.results.append(hypothesis)
        out.detections.append(det)
    return out


@dataclass
class LabelPublishers:
    """The publishers of this module's topics and what they need between frames."""

    node: Node
    class_names: tuple[str, ...]
    threshold: float
    pub_class: Any
    pub_instance: Any
    pub_label_info: Any
    pub_detections: Any | None
    pub_detections_3d: Any | None

    def publishers(self) -> list:
        """Every publisher created (for the lifecycle's deactivate)."""
        return [pub for pub in (self.pub_class, self.pub_instance, self.pub_label_info,
                                self.pub_detections, self.pub_detections_3d) if pub is not None]

    @property
    def has_vision_msgs(self) -> bool:
        """False: vision_msgs is missing, detections topics are off."""
        return self.pub_detections is not None

    def publish_label_info(self, frame_id: str = '') -> None:
        """(Re)publish the class map (latched: late subscribers get the last one)."""
        header = Header(stamp=self.node.get_clock().now().to_msg(), frame_id=frame_id)
        self.pub_label_info.publish(label_info_msg(self.class_names, self.threshold, header))

    def set_threshold(self, threshold: float) -> None:
        """The score threshold changed (ros2 param set): republish label_info."""
        self.threshold = float(threshold)
        self.publish_label_info()

    def publish(self, result: Any, header: Header, track_ids: Any = None, *, labels: bool = True,
                detections: bool = True) -> None:
        """Publish one frame's label images and detections, each only while subscribed.

        Args:
            result: a core.pipeline.FrameResult (rois, scores, labels, instances_3d, image_size).
            header: the source image's header.
            track_ids: N track ids (``Tracker.update``) or None (tracking off: labels/instance
                holds index + 1, detection ids are '').
            labels, detections: the node's publish_labels / publish_detections parameters.
        """
        if labels:
            want_class = self.pub_class.get_subscription_count() > 0
            want_instance = self.pub_instance.get_subscription_count() > 0
            class_msg, instance_msg = label_image_msgs(result, header, len(self.class_names),
                                                       track_ids, want_class, want_instance)
            if class_msg is not None:
                self.pub_class.publish(class_msg)
            if instance_msg is not None:
                self.pub_instance.publish(instance_msg)
        if detections and self.pub_detections is not None:
            if self.pub_detections.get_subscription_count() > 0:
                self.pub_detections.publish(detections_2d_msg(result, header, track_ids))
            if (result.instances_3d is not None
                    and self.pub_detections_3d.get_subscription_count() > 0):
                self.pub_detections_3d.publish(detections_3d_msg(result, header, track_ids))


def create_label_publishers(node: Node, class_names: Sequence[str], threshold: float,
                            result_qos: Any = qos.result_output, prefix: str = '',
                            **publisher_kwargs: Any) -> LabelPublishers:
    """Create the publishers (relative topic names) and publish label_info once.

    Args:
        node: the node that publishes.
        class_names: the model's class names (0-based class ids index them).
        threshold: the current score threshold.
        prefix: put before every topic name ('' or '<camera>/' for a multi-camera node).
        result_qos: a function returning a new QoS profile for each image and detection
            publisher (reliable keep-last by default; a new object each, since rclpy applies
            YAML overrides to the profile in place).
        publisher_kwargs: passed to every ``create_publisher`` (e.g.
            ``qos_overriding_options=qos.overridable()``). label_info always uses
            :func:`label_info_qos` (reliable, transient local, depth 1).
    """
    label_info_cls, _ = label_info_types()
    detection_pubs: tuple[Any, Any] = (None, None)
    if vision_msgs is not None:
        detection_pubs = (
            node.create_publisher(vision_msgs.Detection2DArray, prefix + DETECTIONS_TOPIC,
                                  result_qos(), **publisher_kwargs),
            node.create_publisher(vision_msgs.Detection3DArray, prefix + DETECTIONS_3D_TOPIC,
                                  result_qos(), **publisher_kwargs))
    outputs = LabelPublishers(
        node=node, class_names=tuple(class_names), threshold=float(threshold),
        pub_class=node.create_publisher(Image, prefix + LABELS_CLASS_TOPIC, result_qos(),
                                        **publisher_kwargs),
        pub_instance=node.create_publisher(Image, prefix + LABELS_INSTANCE_TOPIC, result_qos(),
                                           **publisher_kwargs),
        pub_label_info=node.create_publisher(label_info_cls, prefix + LABEL_INFO_TOPIC,
                                             label_info_qos(),
                                             **publisher_kwargs),
        pub_detections=detection_pubs[0], pub_detections_3d=detection_pubs[1])
    outputs.publish_label_info()
    return outputs
