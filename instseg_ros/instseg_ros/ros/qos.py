"""Named QoS profiles of the node (never QoS as integer parameters).

Inputs use sensor-data QoS: a best-effort subscription matches both best-effort and reliable
camera publishers. Outputs are reliable keep-last: a reliable publisher serves reliable subscribers
(RViz and `ros2 topic echo` defaults) and best-effort ones alike. Users override either side from
YAML through QoSOverridingOptions (`qos_overrides./<topic>.subscription.depth: ...`).
"""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.qos_overriding_options import QoSOverridingOptions

#: Camera inputs (image, image/compressed, depth): best effort, keep last 5.
SENSOR_INPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                          reliability=qos_profile_sensor_data.reliability,
                          durability=DurabilityPolicy.VOLATILE)

#: camera_info: best effort too (drivers publish it next to the image), keep last 5.
CAMERA_INFO_INPUT = SENSOR_INPUT

#: /instances, overlay, markers, points: reliable, keep last 10.
RESULT_OUTPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.VOLATILE)


def overridable() -> QoSOverridingOptions:
    """Let users override history, depth and reliability of a topic from the parameters file."""
    return QoSOverridingOptions.with_default_policies()
