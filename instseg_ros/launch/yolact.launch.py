"""Launch the yolact node (and optionally RViz).

    ros2 launch instseg_ros yolact.launch.py weights:=/path/yolact_base_54_800000.pth \
        image:=/camera/color/image_raw use_depth:=true depth:=/camera/aligned_depth_to_color/image_raw \
        camera_info:=/camera/color/camera_info rviz:=true

Launch arguments override config/yolact.yaml (params_file). The tables below are plain data so
tests can check them against the node's parameter table without launch installed.
"""

import os

#: launch argument -> (default, description); each is passed as the node parameter of that name.
PARAMETER_ARGUMENTS = {
    'weights': ('', 'Checkpoint (.pth). Empty: the shipped demo model.'),
    'preset': ('auto', 'Model preset or auto (from the file name).'),
    'device': ('auto', 'auto | cuda | cuda:N | cpu'),
    'half': ('false', 'FP16 inference on CUDA.'),
    'score_threshold': ('0.3', 'Minimum detection score.'),
    'nms_threshold': ('0.5', 'Fast NMS IoU threshold.'),
    'top_k': ('200', 'Candidates per class before NMS.'),
    'input_compressed': ('false', 'Subscribe to image/compressed instead of image.'),
    'use_depth': ('false', 'Use aligned depth + camera_info for 3D positions and boxes.'),
    'depth_slop': ('0.05', 'Max colour/depth stamp difference [s].'),
    'min_depth': ('0.1', 'Ignore depth below this [m].'),
    'max_depth': ('10.0', 'Ignore depth above this [m].'),
    'depth_scale': ('0.0', 'Metres per depth unit; 0 = from the encoding.'),
    'mask_erosion': ('2', 'Erode masks by N px before reading depth.'),
    'publish_points': ('false', 'Publish the instances point cloud on points.'),
}

#: parameter arguments whose values are strings (not YAML-parsed)
STRING_ARGUMENTS = ('weights', 'preset', 'device')

#: launch argument -> (node-relative topic it remaps, default target)
REMAP_ARGUMENTS = {
    'image': ('image', '/camera/color/image_raw'),
    'depth': ('depth', '/camera/aligned_depth_to_color/image_raw'),
    'camera_info': ('camera_info', '/camera/color/camera_info'),
}

#: other launch arguments (not parameters or remaps)
OTHER_ARGUMENTS = {
    'namespace': ('', 'Namespace of the node.'),
    'params_file': (None, 'YAML parameters file (default: the installed config/yolact.yaml).'),
    'rviz': ('false', 'Start RViz with config/yolact.rviz.'),
}


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    share = get_package_share_directory('instseg_ros')
    defaults = {'params_file': os.path.join(share, 'config', 'yolact.yaml')}
    arguments = [DeclareLaunchArgument(name, default_value=default, description=desc)
                 for name, (default, desc) in PARAMETER_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value=target,
                                        description=f'Topic remapped to the node\'s "{topic}".')
                  for name, (topic, target) in REMAP_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                        description=desc)
                  for name, (default, desc) in OTHER_ARGUMENTS.items()]
    def _value(name):
        # Strings stay strings (an empty weights:= must not become a YAML null).
        if name in STRING_ARGUMENTS:
            return ParameterValue(LaunchConfiguration(name), value_type=str)
        return LaunchConfiguration(name)

    node = Node(
        package='instseg_ros', executable='yolact_node', name='yolact',
        namespace=LaunchConfiguration('namespace'), output='screen', emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'),
                    {name: _value(name) for name in PARAMETER_ARGUMENTS}],
        remappings=[(topic, LaunchConfiguration(name))
                    for name, (topic, _) in REMAP_ARGUMENTS.items()],
    )
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                arguments=['-d', os.path.join(share, 'config', 'yolact.rviz')],
                condition=IfCondition(LaunchConfiguration('rviz')))
    return LaunchDescription(arguments + [node, rviz])
