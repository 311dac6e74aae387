"""ROS 2 layer: parameters, QoS, conversions, nodes. The only place that imports rclpy."""
