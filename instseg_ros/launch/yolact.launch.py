"""Launch the yolact node (and optionally RViz).

    ros2 launch instseg_ros yolact.launch.py weights:=/path/yolact_base_54_800000.pth \
        image:=/camera/color/image_raw use_depth:=true depth:=/camera/aligned_depth_to_color/image_raw \
        camera_info:=/camera/color/camera_info rviz:=true

Parameter arguments that are given override params_file (default: the installed
config/yolact.yaml); those not given leave the file's values alone. `--show-args` lists them.
The argument handling is plain functions in instseg_ros.ros.launch_arguments (tested without
launch); this file only wires them into launch actions. A node that exits with an error ends
the launch with an error (exit code 1) unless respawn:=true.
"""

import os

from instseg_ros.ros.launch_arguments import (NOT_GIVEN, OTHER_ARGUMENTS, PARAMETER_ARGUMENTS,
                                              REMAP_ARGUMENTS, argument_description,
                                              check_arguments, is_true, node_failed,
                                              package_executable_exists, parameter_overrides,
                                              respawn_delay_s, rviz_decision,
                                              write_overrides_file)

NODE_NAME = 'yolact'


def _launch_classes():
    """Small launch extensions (defined lazily: importing this file needs no launch)."""
    from launch import Action, Substitution
    from launch.logging import get_logger
    from launch_ros.actions import LifecycleNode, Node

    class GivenParameters(Substitution):
        """Path of a parameters file with the given parameter arguments only (checked and typed).

        With ``check``, all arguments are checked first (misspelled names, values, params_file).
        """

        def __init__(self, names=None, check=False):
            super().__init__()
            self._names, self._check = names, check

        def describe(self):
            return 'GivenParameters(%s)' % ('all' if self._names is None else ', '.join(self._names))

        def perform(self, context):
            configurations = context.launch_configurations
            if self._check:
                foreign = check_arguments(configurations)
                if foreign:
                    get_logger('launch').info(
                        'yolact.launch.py ignores launch configuration(s) it does not declare: '
                        + ', '.join(foreign))
            return write_overrides_file(parameter_overrides(configurations, self._names))

    class RespawnDelay:
        """Mixin: the respawn delay read from the respawn_delay argument when the node starts
        (launch's ExecuteLocal takes only a number at construction)."""

        def execute(self, context):
            delay = respawn_delay_s(context.launch_configurations.get('respawn_delay', '0'))
            self._ExecuteLocal__respawn_delay = delay  # launch 3.x: ExecuteLocal's own field
            return super().execute(context)

    class YolactNode(RespawnDelay, Node):
        pass

    class YolactLifecycleNode(RespawnDelay, LifecycleNode):
        pass

    class FailOnNodeError(Action):
        """In an OnProcessExit handler: end the launch with an error when the node failed."""

        def execute(self, context):
            event = context.locals.event
            respawn = context.launch_configurations.get('respawn', 'false')
            if node_failed(event.returncode, respawn, context.is_shutdown):
                raise RuntimeError(f'{event.action.name} exited with code {event.returncode} '
                                   '(its error is above); ending the launch')

    class Warn(Action):
        """Log one warning from the launch file."""

        def __init__(self, text, **kwargs):
            super().__init__(**kwargs)
            self._text = text

        def execute(self, context):
            get_logger('launch').warning(self._text)

    return GivenParameters, YolactNode, YolactLifecycleNode, FailOnNodeError, Warn


def _declare_arguments(share):
    from launch.actions import DeclareLaunchArgument

    defaults = {'params_file': os.path.join(share, 'config', 'yolact.yaml')}
    arguments = [DeclareLaunchArgument(name, default_value=NOT_GIVEN,
                                       description=argument_description(name))
                 for name in PARAMETER_ARGUMENTS]
    arguments += [DeclareLaunchArgument(name, default_value=target,
                                        description=f'Topic remapped to the node\'s "{topic}".')
                  for name, (topic, target) in REMAP_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                        description=desc)
                  for name, (default, desc) in OTHER_ARGUMENTS.items()]
    return arguments


def _when(predicate):
    """A launch Condition from ``predicate(launch_configurations) -> bool``."""
    from launch import Condition
    return Condition(predicate=lambda context: predicate(context.launch_configurations))


def _lifecycle_autostart(node):
    """Configure at launch, then activate once the node is inactive (lifecycle:=true)."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition, **kwargs):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition), **kwargs)

    wanted = _when(lambda c: is_true(c['lifecycle']) and is_true(c['autostart']))
    activate_when_inactive = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
        entities=[change(Transition.TRANSITION_ACTIVATE)]), condition=wanted)
    return [activate_when_inactive, change(Transition.TRANSITION_CONFIGURE, condition=wanted)]


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import RegisterEventHandler
    from launch.conditions import IfCondition, UnlessCondition
    from launch.event_handlers import OnProcessExit
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    GivenParameters, YolactNode, YolactLifecycleNode, FailOnNodeError, Warn = _launch_classes()
    share = get_package_share_directory('instseg_ros')
    common = dict(
        package='instseg_ros', name=NODE_NAME, namespace=LaunchConfiguration('namespace'),
        output='screen', emulate_tty=True, respawn=LaunchConfiguration('respawn'),
        parameters=[LaunchConfiguration('params_file'), GivenParameters(check=True)],
        remappings=[(topic, LaunchConfiguration(name))
                    for name, (topic, _) in REMAP_ARGUMENTS.items()],
        ros_arguments=['--log-level', LaunchConfiguration('log_level')],
    )
    node = YolactNode(executable='yolact_node', condition=UnlessCondition(
        LaunchConfiguration('lifecycle')), **common)
    managed = YolactLifecycleNode(executable='yolact_lifecycle_node', condition=IfCondition(
        LaunchConfiguration('lifecycle')), **common)
    rviz2_installed = package_executable_exists('rviz2', 'rviz2')
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                namespace=LaunchConfiguration('namespace'),
                parameters=[GivenParameters(names=('use_sim_time',))],
                arguments=['-d', os.path.join(share, 'config', 'yolact.rviz')],
                condition=_when(lambda c: rviz_decision(c['rviz'], rviz2_installed) == 'start'))
    no_rviz = Warn('rviz:=true but rviz2 is not installed (no package rviz2 with an rviz2 '
                   'executable): not starting RViz, yolact keeps running. Install rviz2 '
                   '(e.g. apt install ros-$ROS_DISTRO-rviz2) or pass rviz:=false.',
                   condition=_when(lambda c: rviz_decision(c['rviz'], rviz2_installed)
                                   == 'missing'))
    on_exit = [RegisterEventHandler(OnProcessExit(target_action=target,
                                                  on_exit=[FailOnNodeError()]))
               for target in (node, managed)]
    return LaunchDescription(_declare_arguments(share) + on_exit
                             + [node, managed, *_lifecycle_autostart(managed), rviz, no_rviz])
