"""instseg_ros: YOLACT / YOLACT++ instance segmentation for ROS 2."""
