"""The node's inputs: QoS-matched subscriptions and RGB-D pairing in the callbacks.

``MatchedSubscription`` subscribes one topic with the reliability its publishers offer
(``input_reliability: auto``): reliable when every publisher is reliable, so large
frames arrive whole, and best effort otherwise, the only setting that matches best-effort
drivers; reliable while there is no publisher yet (most drivers are). It re-checks the
publishers from a timer and re-subscribes when the set changes; a YAML override of the topic's reliability always wins. ``CameraInputs`` owns the colour (raw or
``<image>/compressed``), depth and camera_info subscriptions, pairs them with
:class:`~instseg_ros.core.rgbd_sync.RgbdSync` and hands each resolved frame to ``deliver``.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from instseg_ros.core import rgbd_sync
from instseg_ros.core.rgbd_sync import RgbdFrame, RgbdSync, stamp_s
from instseg_ros.ros import qos

#: how often publishers are re-checked for ``auto`` reliability [s]
QOS_CHECK_PERIOD_S = 1.0
#: resolve pending colour frames this often [s] (frames whose depth does not come)
PAIRING_POLL_PERIOD_S = 0.05
#: warn when more than this fraction of recent frames went without depth
UNPAIRED_WARN_FRACTION = 0.05


class MatchedSubscription:
    """One input subscription whose reliability follows its publishers (see module doc)."""

    def __init__(self, node, msg_type, topic: str, callback: Callable, mode: str, label: str):
        self._node, self._type, self._callback = node, msg_type, callback
        self.topic = node.resolve_topic_name(topic)
        self.label, self.mode = label, mode
        overrides = getattr(node, '_parameter_overrides', {})  # user-given values only
        prefix = f'qos_overrides.{self.topic}.subscription.'
        self._fixed = mode != 'auto' or f'{prefix}reliability' in overrides
        self._depth_overridden = f'{prefix}depth' in overrides
        self._publishers = self._publisher_set()
        if mode == 'reliable':
            wanted = ReliabilityPolicy.RELIABLE
        elif mode == 'best_effort':
            wanted = ReliabilityPolicy.BEST_EFFORT
        else:
            # no publisher yet: most drivers are reliable; a best-effort one is matched within
            # QOS_CHECK_PERIOD_S of appearing
            wanted = self._wanted(self._publishers) or ReliabilityPolicy.RELIABLE
        self.profile: QoSProfile = qos.input_profile(wanted)
        # rclpy applies the YAML overrides to this (our own) profile object, in place
        self.subscription = node.create_subscription(msg_type, topic, callback, self.profile,
                                                     qos_overriding_options=qos.overridable())
        self._log_choice(initial=True)

    @property
    def reliability(self) -> str:
        return qos.reliability_name(self.profile.reliability)

    def publisher_reliabilities(self) -> list[str]:
        """Reliability of each publisher currently on the topic."""
        return [rel for _, rel in self._publishers]

    def refresh(self) -> None:
        """Re-check the publishers; re-subscribe (auto only) when they want another reliability."""
        publishers = self._publisher_set()
        if publishers == self._publishers:
            return
        self._publishers = publishers
        wanted = self._wanted(publishers)
        if self._fixed or wanted is None or wanted == self.profile.reliability:
            self._log_choice(initial=False)
            return
        depth = self.profile.depth if self._depth_overridden else qos.input_profile(wanted).depth
        self.profile = QoSProfile(history=self.profile.history, depth=depth, reliability=wanted,
                                  durability=self.profile.durability)
        self._node.destroy_subscription(self.subscription)
        self.subscription = self._node.create_subscription(self._type, self.topic, self._callback,
                                                           self.profile)
        self._log_choice(initial=False)

    def _publisher_set(self) -> frozenset:
        infos = self._node.get_publishers_info_by_topic(self.topic)
        return frozenset((bytes(info.endpoint_gid),
                          qos.reliability_name(info.qos_profile.reliability)) for info in infos)

    @staticmethod
    def _wanted(publishers: frozenset) -> ReliabilityPolicy | None:
        if not publishers:
            return None
        if all(rel == 'reliable' for _, rel in publishers):
            return ReliabilityPolicy.RELIABLE
        return ReliabilityPolicy.BEST_EFFORT

    def _log_choice(self, initial: bool) -> None:
        rels = collections.Counter(self.publisher_reliabilities())
        offered = ', '.join(f'{n} {rel}' for rel, n in sorted(rels.items())) or 'none yet'
        if self.mode != 'auto':
            why = f'input_reliability {self.mode}'
        elif self._fixed:
            why = 'QoS override from the parameters'
        elif not rels:
            why = 'no publisher yet: reliable, as most drivers are; re-checked when one appears'
        elif len(rels) == 1 and 'reliable' in rels:
            why = 'every publisher is reliable'
        else:
            why = 'not every publisher is reliable'
        verb = 'subscribing' if initial else 'publishers changed:'
        self._node.get_logger().info(f'{self.label} {self.topic}: {verb} {self.reliability} '
                                     f'(publishers: {offered}; {why})')


class CameraInputs:
    """Colour (+ depth + camera_info) subscriptions of one camera, paired by stamp.

    Args:
        node: the node creating the subscriptions.
        params: NodeParams (input_compressed, use_depth, input_reliability, depth_slop, depth_wait).
        deliver: called with each resolved :class:`RgbdFrame` (from the executor thread).
        on_color: called for every colour message received (counting, rate).
        report: ``report(kind, text)``: throttled warnings.
        prefix: '' or '<camera>/' before the topic names (multi-camera node).
        topics: (colour, depth, camera_info) topic names after the prefix.
    """

    def __init__(self, node, params, deliver: Callable[[RgbdFrame], None],
                 on_color: Callable[[], None], report: Callable[[str, str], None],
                 prefix: str = '', topics: tuple[str, str, str] = ('image', 'depth',
                                                                    'camera_info')):
        self._node, self._deliver, self._on_color, self._report = node, deliver, on_color, report
        self.use_depth = params.use_depth
        self.prefix = prefix
        mode = params.input_reliability
        self.sync = RgbdSync(slop_s=params.depth_slop, wait_s=params.depth_wait)
        self._resolved_at_check = 0
        if params.input_compressed:
            # image_transport's convention: <image topic after remapping>/compressed
            topic = node.resolve_topic_name(prefix + topics[0]) + '/compressed'
            self.color = MatchedSubscription(node, CompressedImage, topic, self._on_color_msg,
                                             mode, prefix + 'image (compressed)')
        else:
            self.color = MatchedSubscription(node, Image, prefix + topics[0], self._on_color_msg,
                                             mode, prefix + 'image')
        self.inputs = [self.color]
        self.depth = self.info = None
        self._timers = [node.create_timer(QOS_CHECK_PERIOD_S, self._check)]
        if self.use_depth:
            self.depth = MatchedSubscription(node, Image, prefix + topics[1], self._on_depth_msg,
                                             mode, prefix + 'depth')
            self.info = MatchedSubscription(node, CameraInfo, prefix + topics[2],
                                            self._on_info_msg, mode, prefix + 'camera_info')
            self.inputs += [self.depth, self.info]
            self._timers.append(node.create_timer(PAIRING_POLL_PERIOD_S, self._poll))

    def set_pairing(self, slop_s: float, wait_s: float) -> None:
        """Apply runtime changes of depth_slop / depth_wait."""
        self.sync.slop_s, self.sync.wait_s = float(slop_s), float(wait_s)

    def destroy(self) -> None:
        """Remove every subscription and timer (lifecycle deactivate)."""
        for timer in self._timers:
            self._node.destroy_timer(timer)
        for item in self.inputs:
            self._node.destroy_subscription(item.subscription)
        self._timers, self.inputs = [], []

    # ----------------------------------------------------------------------------- callbacks
    def _on_color_msg(self, msg: Any) -> None:
        self._on_color()
        if not self.use_depth:
            self._deliver(RgbdFrame(color=msg, color_stamp_s=stamp_s(msg.header)))
            return
        for frame in self.sync.add_color(stamp_s(msg.header), msg):
            self._deliver(frame)

    def _on_depth_msg(self, msg: Image) -> None:
        for frame in self.sync.add_depth(stamp_s(msg.header), msg):
            self._deliver(frame)

    def _on_info_msg(self, msg: CameraInfo) -> None:
        self.sync.add_info(stamp_s(msg.header), msg)

    def _poll(self) -> None:
        for frame in self.sync.poll():
            self._deliver(frame)

    def _check(self) -> None:
        for item in self.inputs:
            item.refresh()
        if self.use_depth:
            self._warn_unpaired()

    # ----------------------------------------------------------------------------- pairing report
    def _warn_unpaired(self) -> None:
        resolved = self.sync.paired + self.sync.unpaired
        if resolved == self._resolved_at_check:
            return  # no colour frame since the last check (camera stopped): nothing new to say
        self._resolved_at_check = resolved
        fraction, count = self.sync.recent_unpaired_fraction()
        if count < 10 or fraction <= UNPAIRED_WARN_FRACTION:
            return
        self._report('pairing', f'{self.prefix}{fraction:.0%} of the last {count} colour frames '
                                f'had no depth: {self.likely_cause()}')

    def likely_cause(self) -> str:
        """Why colour frames go without depth, in words (the most frequent recent reason)."""
        reason = self.sync.recent_reason()
        if reason is None:
            return 'none'
        depth, info = self.depth, self.info
        if reason == rgbd_sync.NO_CAMERA_INFO:
            return (f'no camera_info received on {info.topic} '
                    f'({len(info.publisher_reliabilities())} publisher(s))')
        if reason == rgbd_sync.STAMP_GAP:
            gap = self.sync.last_gap_s
            return (f'colour and depth stamps are {gap:.3f} s apart, depth_slop is '
                    f'{self.sync.slop_s} s: raise depth_slop or synchronise the camera streams')
        publishers = depth.publisher_reliabilities()
        if not publishers:
            return f'no depth publisher on {depth.topic}'
        if not self.sync.has_depth():
            return (f'{len(publishers)} depth publisher(s) ({", ".join(publishers)}) on '
                    f'{depth.topic} but no depth image received with subscription '
                    f'{depth.reliability}: QoS mismatch?')
        return (f'depth images on {depth.topic} arrive more than depth_wait={self.sync.wait_s} s '
                f'after colour, or are lost (subscription {depth.reliability}, publishers '
                f'{", ".join(publishers)})')
