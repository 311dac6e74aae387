"""Pure core: model, pre/post-processing, geometry, encoding, drawing. Never imports rclpy."""
