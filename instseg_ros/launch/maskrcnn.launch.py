"""Launch the node with a torchvision Mask R-CNN: yolact.launch.py with a Mask R-CNN preset.

    ros2 launch instseg_ros maskrcnn.launch.py \
        weights:=/path/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth image:=/camera/color/image_raw

Every argument of yolact.launch.py applies unchanged (same node name, topics and messages); only
the preset's default differs here: maskrcnn_resnet50_fpn_v2 (pass preset:=maskrcnn_resnet50_fpn
for maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth, or preset:=auto to infer it from the file name).
yolact.launch.py weights:=<maskrcnn_*.pth> does the same with preset auto. ``weights`` is
required here (the shipped demo model is a YOLACT; without it the launch stops with a message).
"""

import os

PRESET_DEFAULT = 'maskrcnn_resnet50_fpn_v2'


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration

    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'yolact.launch.py')
    return LaunchDescription([
        DeclareLaunchArgument('preset', default_value=PRESET_DEFAULT,
                              description='maskrcnn_resnet50_fpn_v2 | maskrcnn_resnet50_fpn | auto'),
        # no default: the shipped demo model is a YOLACT, so a Mask R-CNN launch needs a file
        DeclareLaunchArgument('weights', description='torchvision Mask R-CNN checkpoint (required), '
                              'e.g. maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth'),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(shared),
                                 launch_arguments={'preset': LaunchConfiguration('preset'),
                                                   'weights': LaunchConfiguration('weights')}.items()),
    ])
