"""Named QoS profiles of the node (never QoS as integer parameters).

Each function returns a *new* profile object: rclpy applies YAML QoS overrides to the profile it
is given, in place, so a shared module-level profile would carry one topic's override into every
other subscription created from it.

Inputs follow their publishers (``input_reliability: auto``, see :mod:`instseg_ros.ros.inputs`):
reliable when every publisher is reliable (large frames then arrive whole), best effort
otherwise; keep last 5 either way (the only setting that matches best-effort drivers).
Outputs are reliable keep-last: a reliable publisher serves reliable subscribers (RViz and
``ros2 topic echo`` defaults) and best-effort ones alike. Users override either side from YAML
(``qos_overrides./<topic>.subscription.reliability: reliable``); an override always wins.
"""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

RELIABILITY_CHOICES = ('auto', 'reliable', 'best_effort')


def input_profile(reliability: ReliabilityPolicy) -> QoSProfile:
    """A new input profile (image, image/compressed, depth, camera_info) of that reliability."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                      reliability=reliability, durability=DurabilityPolicy.VOLATILE)


def result_output() -> QoSProfile:
    """A new output profile (/instances, overlay, markers, labels, points): reliable, keep last 10."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def overridable() -> QoSOverridingOptions:
    """Let users override history, depth and reliability of a topic from the parameters file."""
    return QoSOverridingOptions.with_default_policies()


def reliability_name(policy: ReliabilityPolicy) -> str:
    """'reliable' / 'best_effort' / ... (for log lines and diagnostics)."""
    return ReliabilityPolicy(policy).name.lower()
