"""Offline tools that work without a ROS install (no rclpy, no message packages)."""
