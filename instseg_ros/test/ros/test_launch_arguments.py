"""The launch file's argument handling: plain functions (everywhere) and, where launch is
importable, the generated description and its parameter-file substitution."""

import importlib.util
import pathlib
import sys

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import LAUNCH_FILE, PARAMS_FILE  # noqa: E402

from instseg_ros.ros import launch_arguments as la  # noqa: E402

HAVE_LAUNCH = importlib.util.find_spec('launch_ros') is not None

USER_YAML = {'/**': {'ros__parameters': {'score_threshold': 0.6, 'top_k': 50,
                                         'use_depth': True}}}


def configurations(**given) -> dict:
    """Launch configurations as ros2 launch leaves them: declared defaults + given values."""
    values = {name: la.NOT_GIVEN for name in la.PARAMETER_ARGUMENTS}
    values.update({name: target for name, (_, target) in la.REMAP_ARGUMENTS.items()})
    values.update({name: default for name, (default, _) in la.OTHER_ARGUMENTS.items()
                   if default is not None})
    values['params_file'] = str(PARAMS_FILE)
    values.update(given)
    return values


def effective(params_file_values: dict, configs: dict) -> dict:
    """What the node ends up with: params file first, then the launch overrides file (rcl
    applies --params-file arguments in order, later files win)."""
    return {**params_file_values, **la.parameter_overrides(configs)}


def test_params_file_values_survive_when_no_argument_is_given():
    configs = configurations()
    assert la.parameter_overrides(configs) == {}
    values = effective(USER_YAML['/**']['ros__parameters'], configs)
    assert values == {'score_threshold': 0.6, 'top_k': 50, 'use_depth': True}
    assert la.check_arguments(configs) == []


def test_a_given_argument_overrides_only_itself():
    configs = configurations(top_k='7', weights='')
    assert la.parameter_overrides(configs) == {'top_k': 7, 'weights': ''}
    values = effective(USER_YAML['/**']['ros__parameters'], configs)
    assert values == {'score_threshold': 0.6, 'top_k': 7, 'use_depth': True, 'weights': ''}


def test_values_take_the_declared_parameter_type():
    overrides = la.parameter_overrides(configurations(
        score_threshold='1', max_depth='5', top_k='50', use_depth='true', half='False',
        device='cpu', preset='auto', use_sim_time='true', mask_erosion='3.0'))
    assert overrides == {'score_threshold': 1.0, 'max_depth': 5.0, 'top_k': 50,
                         'use_depth': True, 'half': False, 'device': 'cpu', 'preset': 'auto',
                         'use_sim_time': True, 'mask_erosion': 3}
    assert type(overrides['score_threshold']) is float and type(overrides['max_depth']) is float
    assert type(overrides['top_k']) is int and type(overrides['mask_erosion']) is int
    # a number given for a string parameter stays its text (a file named 123)
    assert la.parse_value('weights', '123') == '123'


@pytest.mark.parametrize('name, text, expected', [
    ('score_threshold', 'abc', "score_threshold:=abc: 'abc' is not a number; pass a number in "
                               '[0.0, 1.0], e.g. score_threshold:=0.3'),
    ('score_threshold', '1.5', 'score_threshold:=1.5: 1.5 is outside [0.0, 1.0]'),
    ('top_k', '2.5', "top_k:=2.5: 2.5 is not a whole number"),
    ('use_depth', 'yes please', "use_depth:=yes please: 'yes please' is not true or false"),
])
def test_bad_values_are_one_clear_error(name, text, expected):
    with pytest.raises(la.LaunchArgumentError) as info:
        la.parse_value(name, text)
    assert expected in str(info.value)
    assert '\n' not in str(info.value)
    with pytest.raises(la.LaunchArgumentError):
        la.check_arguments(configurations(**{name: text}))


def test_misspelled_arguments_are_reported_with_the_nearest_name():
    configs = configurations(score_treshold='0.5', usedepth='true', robot_description='<urdf/>')
    misspelled, foreign = la.unknown_arguments(configs)
    assert misspelled == ['score_treshold (did you mean score_threshold?)',
                          'usedepth (did you mean use_depth?)']
    assert foreign == ['robot_description']  # e.g. an including launch file's own argument
    with pytest.raises(la.LaunchArgumentError, match=r'unknown launch argument\(s\): '
                       r'score_treshold \(did you mean score_threshold\?\)'):
        la.check_arguments(configs)
    # ros2 launch's own configurations are not reported
    assert la.unknown_arguments(configurations(**{'launch-prefix': 'gdb'})) == ([], [])


def test_other_arguments_are_checked_before_anything_starts(tmp_path):
    with pytest.raises(la.LaunchArgumentError, match='log_level:=loud: pass one of debug'):
        la.check_arguments(configurations(log_level='loud'))
    assert la.check_arguments(configurations(log_level='DEBUG')) == []
    with pytest.raises(la.LaunchArgumentError, match='respawn_delay:=-1 is not a number'):
        la.check_arguments(configurations(respawn_delay='-1'))
    assert la.respawn_delay_s('1.5') == 1.5
    with pytest.raises(la.LaunchArgumentError, match='rviz:=maybe is not a boolean'):
        la.check_arguments(configurations(rviz='maybe'))
    missing = tmp_path / 'nope.yaml'
    with pytest.raises(la.LaunchArgumentError, match=f'params_file:={missing} does not exist'):
        la.check_arguments(configurations(params_file=str(missing)))


def test_overrides_file_is_a_ros_parameters_file():
    text = la.overrides_yaml({'score_threshold': 1.0, 'weights': '', 'use_depth': True})
    assert yaml.safe_load(text) == {'/**': {'ros__parameters': {
        'score_threshold': 1.0, 'use_depth': True, 'weights': ''}}}
    path = pathlib.Path(la.write_overrides_file({'top_k': 7}))
    try:
        assert yaml.safe_load(path.read_text()) == {'/**': {'ros__parameters': {'top_k': 7}}}
    finally:
        path.unlink()


def test_rviz_and_node_failure_decisions():
    assert la.rviz_decision('false', True) == 'off'
    assert la.rviz_decision('true', True) == 'start'
    assert la.rviz_decision('True', False) == 'missing'
    assert la.package_executable_exists('rviz2', 'rviz2') is (
        la.package_executable_exists('rviz2', 'rviz2'))  # no exception either way
    assert la.package_executable_exists('no_such_package_xyz', 'x') is False
    assert la.node_failed(2, 'false', shutting_down=False) is True
    assert la.node_failed(0, 'false', shutting_down=False) is False
    assert la.node_failed(-2, 'false', shutting_down=True) is False   # Ctrl-C
    assert la.node_failed(2, 'true', shutting_down=False) is False    # respawned instead


def test_argument_descriptions_name_the_installed_default():
    assert la.argument_description('score_threshold').endswith('(installed: 0.3).')
    assert la.argument_description('use_depth').endswith('(installed: false).')
    assert la.argument_description('weights').endswith("(installed: '').")


# ------------------------------------------------------------------ with launch installed
def _description():
    spec = importlib.util.spec_from_file_location('yolact_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _entities(description, kind):
    return [e for e in description.entities if isinstance(e, kind)]


@pytest.mark.skipif(not HAVE_LAUNCH, reason='launch_ros is not installed (no PyPI wheel)')
def test_launch_description_declares_every_argument_with_the_sentinel():
    description = _description()
    arguments = {a.name: a for a in description.get_launch_arguments()}
    assert set(arguments) == la.known_arguments()
    for name in la.PARAMETER_ARGUMENTS:
        default = ''.join(s.perform(None) for s in arguments[name].default_value)
        assert default == la.NOT_GIVEN, name
    assert ''.join(s.perform(None) for s in arguments['params_file'].default_value).endswith(
        'config/yolact.yaml')


@pytest.mark.skipif(not HAVE_LAUNCH, reason='launch_ros is not installed (no PyPI wheel)')
def test_launch_description_nodes_exit_handlers_and_lifecycle_autostart():
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition

    description = _description()
    nodes = _entities(description, Node)
    by_executable = {n.node_executable: n for n in nodes}
    assert set(by_executable) == {'yolact_node', 'yolact_lifecycle_node', 'rviz2'}
    assert isinstance(by_executable['yolact_lifecycle_node'], LifecycleNode)
    assert not isinstance(by_executable['yolact_node'], LifecycleNode)
    handlers = [e.event_handler for e in _entities(description, RegisterEventHandler)]
    exits = [h for h in handlers if isinstance(h, OnProcessExit)]
    assert len(exits) == 2  # one per yolact node flavour
    assert any(isinstance(h, OnStateTransition) for h in handlers)  # inactive -> activate
    assert len(_entities(description, EmitEvent)) == 1  # configure at launch


@pytest.mark.skipif(not HAVE_LAUNCH, reason='launch_ros is not installed (no PyPI wheel)')
def test_launch_parameter_substitution_writes_only_given_arguments(tmp_path):
    from launch import LaunchContext
    from launch_ros.actions import Node

    description = _description()
    node = next(n for n in _entities(description, Node) if n.node_executable == 'yolact_node')
    given = node._Node__parameters[1]  # ParameterFile of [params_file, given arguments]
    context = LaunchContext()
    context.launch_configurations.update(configurations(score_threshold='1', top_k='50'))
    path = pathlib.Path(given.evaluate(context))
    assert yaml.safe_load(path.read_text()) == {'/**': {'ros__parameters': {
        'score_threshold': 1.0, 'top_k': 50}}}
    path.unlink()
    node = next(n for n in _entities(_description(), Node) if n.node_executable == 'yolact_node')
    given = node._Node__parameters[1]  # a fresh one (ParameterFile keeps its first result)
    context.launch_configurations['score_treshold'] = '0.5'
    with pytest.raises(la.LaunchArgumentError, match='did you mean score_threshold'):
        given.evaluate(context)


# ------------------------------------------------------------------ the real ros2 launch
needs_ros2_launch = pytest.mark.skipif(
    not HAVE_LAUNCH or __import__('shutil').which('ros2') is None,
    reason='no ros2 CLI / launch_ros (PyPI has no wheels); runs on a ROS install')


def _get_parameters(make_node, spin_until, node_name, names):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client_node = make_node('launch_param_reader')
    client = client_node.create_client(GetParameters, f'{node_name}/get_parameters')
    assert spin_until(client_node, client.service_is_ready, 30.0)
    future = client.call_async(GetParameters.Request(names=list(names)))
    assert spin_until(client_node, future.done, 30.0)
    return dict(zip(names, (parameter_value_to_python(v) for v in future.result().values)))


@needs_ros2_launch
def test_ros2_launch_keeps_the_params_file_and_applies_given_arguments(
        tmp_path, make_node, spin_until):
    """params_file:=user.yaml (0.6 / 50 / depth on) + top_k:=7 score_threshold:=1 under
    namespace:=launch_params; rviz:=true without rviz2 only warns."""
    from launch_args import start, stop, wait_for_text
    user = tmp_path / 'user.yaml'
    user.write_text(yaml.safe_dump(USER_YAML))
    log = tmp_path / 'launch.log'
    proc = start(['ros2', 'launch', 'instseg_ros', 'yolact.launch.py', f'params_file:={user}',
                  'top_k:=7', 'nms_threshold:=1', 'device:=cpu', 'namespace:=launch_params',
                  'rviz:=true'], log)
    try:
        assert wait_for_text(log, 'Ready: model', proc, 120), log.read_text()[-3000:]
        values = _get_parameters(make_node, spin_until, '/launch_params/yolact',
                                 ['score_threshold', 'top_k', 'use_depth', 'nms_threshold'])
        assert values == {'score_threshold': 0.6, 'top_k': 7, 'use_depth': True,
                          'nms_threshold': 1.0}
        if not la.package_executable_exists('rviz2', 'rviz2'):
            assert 'rviz:=true but rviz2 is not installed' in log.read_text()
            assert proc.poll() is None, 'the launch must keep running without rviz2'
    finally:
        stop(proc)


@needs_ros2_launch
def test_ros2_launch_exits_non_zero_when_the_node_cannot_start(tmp_path):
    from launch_args import start, wait_exit
    log = tmp_path / 'launch.log'
    proc = start(['ros2', 'launch', 'instseg_ros', 'yolact.launch.py',
                  f'weights:={tmp_path}/missing.pth'], log)
    code = wait_exit(proc, 90)
    text = log.read_text()
    assert code not in (0, None), text[-3000:]
    assert f"weights file '{tmp_path}/missing.pth' does not exist" in text
    assert 'exited with code 2' in text


@pytest.mark.skipif(not HAVE_LAUNCH, reason='launch_ros is not installed (no PyPI wheel)')
def test_maskrcnn_launch_includes_the_shared_launch_with_a_preset():
    """maskrcnn.launch.py holds no logic of its own: it includes yolact.launch.py, sets preset and
    passes weights, which it declares without a default (required: the shipped demo model is a
    YOLACT)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription

    path = LAUNCH_FILE.parent / 'maskrcnn.launch.py'
    spec = importlib.util.spec_from_file_location('maskrcnn_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description().entities
    declared = [e for e in entities if isinstance(e, DeclareLaunchArgument)]
    assert [d.name for d in declared] == ['preset', 'weights']
    assert ''.join(s.perform(None) for s in declared[0].default_value) == 'maskrcnn_resnet50_fpn_v2'
    assert declared[1].default_value is None                 # required
    include = next(e for e in entities if isinstance(e, IncludeLaunchDescription))
    context = LaunchContext()
    context.launch_configurations['preset'] = 'maskrcnn_resnet50_fpn'
    context.launch_configurations['weights'] = '/w/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth'
    included = include.launch_description_source.try_get_launch_description_without_context()
    assert {a.name for a in included.get_launch_arguments()} == la.known_arguments()  # yolact's
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    def text(value):
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    given = {text(k): text(v) for k, v in include.launch_arguments}
    assert given == {'preset': 'maskrcnn_resnet50_fpn', 'weights': '/w/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth'}


MMDET_RTMDET_NAME = 'rtmdet-ins_tiny_8xb32-300e_coco_20221130_151134-random.pth'


def test_model_argument_is_checked_against_the_preset_and_the_file_name(tmp_path):
    """model:=<family> (launch only: the node takes the family from preset, else the file name):
    accepted when the preset or the file name is of that family (also a preset from the params
    file), else one line saying which preset to pass."""
    assert la.OTHER_ARGUMENTS['model'][0] == 'auto'
    for given in ({'model': 'rtmdet_ins', 'preset': 'rtmdet_ins_tiny'},
                  {'model': 'rtmdet_ins', 'weights': f'/w/{MMDET_RTMDET_NAME}'},
                  {'model': 'solov2', 'weights': '/w/any.pth', 'preset': 'solov2_light_r50'},
                  {'model': 'condinst', 'preset': 'condinst_r50'}, {'model': 'yolact'},
                  {'model': 'auto', 'preset': 'solov2_r50'}):
        assert la.check_arguments(configurations(**given)) == [], given
    user = tmp_path / 'user.yaml'
    user.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'preset': 'rtmdet_ins_s'}}}))
    assert la.check_arguments(configurations(model='rtmdet_ins', weights='/w/any.pth',
                                             params_file=str(user))) == []
    refused = [
        ({'model': 'rtmdet'}, 'launch argument model:=rtmdet: pass one of auto, yolact, maskrcnn, '
                              'rtmdet_ins, solov2, condinst'),
        ({'model': 'rtmdet_ins', 'preset': 'solov2_r50'},
         "preset 'solov2_r50' is a solov2 preset, not a rtmdet_ins one; pass model:=solov2"),
        ({'model': 'solov2', 'weights': f'/w/{MMDET_RTMDET_NAME}'},
         f'with preset auto the node takes the family from the file name {MMDET_RTMDET_NAME} '
         '(rtmdet_ins); pass preset:=solov2_r50 | solov2_light_r50'),
        ({'model': 'condinst'}, 'the family from the shipped demo model (yolact); pass '
                                'preset:=condinst_r50'),
    ]
    for given, expected in refused:
        with pytest.raises(la.LaunchArgumentError) as info:
            la.check_arguments(configurations(**given))
        assert expected in str(info.value) and '\n' not in str(info.value), (given, info.value)


@needs_ros2_launch
def test_ros2_launch_runs_an_mmdetection_family_with_model_and_preset(
        tmp_path, make_node, spin_until):
    """ros2 launch yolact.launch.py weights:=<random RTMDet-Ins-tiny mmdet file> model:=rtmdet_ins
    preset:=rtmdet_ins_tiny image:=... with a params file of its own: the Ready line names the
    family, and a published frame comes back as instances (calibrated random weights detect)."""
    import torch
    from instseg_msgs.msg import InstanceMaskArray
    from launch_args import start, stop, wait_for_text
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from instseg_ros.core.classes import COCO_CLASSES
    from instseg_ros.core.models.rtmdet.config import get_config
    from instseg_ros.core.models.rtmdet.testing import calibrated_state_dict
    from instseg_ros.ros.conversions import numpy_to_image
    from instseg_ros.synth.scene import Camera, render_scene
    weights = tmp_path / MMDET_RTMDET_NAME
    torch.save({'meta': {'mmdet_version': '3.3.0', 'dataset_meta': {'classes': COCO_CLASSES}},
                'state_dict': calibrated_state_dict(get_config('rtmdet_ins_tiny'), seed=0)}, weights)
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'device': 'cpu', 'max_detections': 10, 'publish_markers': False}}}))
    log = tmp_path / 'launch.log'
    proc = start(['ros2', 'launch', 'instseg_ros', 'yolact.launch.py', f'weights:={weights}',
                  'model:=rtmdet_ins', 'preset:=rtmdet_ins_tiny', 'image:=/mmdet_cam/image',
                  f'params_file:={params}', 'namespace:=mmdet'], log)
    try:
        assert wait_for_text(log, 'Ready: model', proc, 120), log.read_text()[-3000:]
        assert ('Ready: model rtmdet_ins_tiny on cpu (torch fp32), RTMDet-Ins (mmdetection), '
                '80 classes, listening on /mmdet_cam/image') in log.read_text()
        node = make_node('mmdet_launch_client')
        results = []
        node.create_subscription(InstanceMaskArray, '/mmdet/instances', results.append, 10)
        pub = node.create_publisher(Image, '/mmdet_cam/image',
                                    QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        msg = numpy_to_image(render_scene(3, Camera(320, 240)).image_bgr, 'bgr8')
        for sec in range(60):
            msg.header.stamp.sec = 100 + sec
            pub.publish(msg)
            if spin_until(node, lambda: bool(results), timeout_s=2.0):
                break
        assert results and 0 < len(results[0].instances) <= 10, log.read_text()[-3000:]
        assert {i.class_name for i in results[0].instances} <= set(COCO_CLASSES)
        assert 'Traceback' not in log.read_text()
    finally:
        stop(proc)
