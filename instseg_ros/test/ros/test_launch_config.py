"""The launch file, config/yolact.yaml and the parameter table must not drift apart."""

import importlib.util
import pathlib
import shutil
import sys

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import LAUNCH_FILE, PARAMS_FILE, load_launch_tables, ros_args  # noqa: E402

from instseg_ros.ros.params import PARAMETERS, SPECS, NodeParams, field_names  # noqa: E402

NODE_INPUT_TOPICS = {'image', 'image/compressed', 'depth', 'camera_info'}


def yaml_parameters() -> dict:
    data = yaml.safe_load(PARAMS_FILE.read_text())
    return data['/**']['ros__parameters']


def test_every_launch_parameter_argument_is_a_declared_parameter():
    tables = load_launch_tables()
    unknown = sorted(set(tables['parameters']) - set(SPECS) - {'use_sim_time'})
    assert unknown == []
    # use_depth and the depth options of the depth issue are launch arguments
    for name in ('use_depth', 'depth_slop', 'min_depth', 'max_depth', 'depth_scale',
                 'mask_erosion', 'publish_points', 'weights', 'preset', 'device', 'half',
                 'score_threshold', 'nms_threshold', 'top_k', 'use_sim_time'):
        assert name in tables['parameters'], name


def test_every_remap_argument_targets_a_node_input_topic():
    tables = load_launch_tables()
    assert {topic for topic, _ in tables['remaps'].values()} <= NODE_INPUT_TOPICS
    assert set(tables['remaps']) == {'image', 'depth', 'camera_info'}
    assert set(tables['other']) == {'namespace', 'params_file', 'rviz', 'log_level', 'respawn',
                                    'respawn_delay', 'lifecycle', 'autostart', 'model'}


def test_rviz_config_uses_relative_topics():
    """RViz runs in the node's namespace: its topics must be relative to follow it."""
    text = (PARAMS_FILE.parent / 'yolact.rviz').read_text()
    values = [line.split('Value:', 1)[1].strip() for line in text.splitlines()
              if line.strip().startswith('Value:')]
    topics = [v for v in values if v not in ('true', 'false')]
    assert sorted(topics) == ['markers', 'overlay', 'points']


def test_yaml_keys_and_defaults_match_the_parameter_table():
    values = yaml_parameters()
    assert sorted(values) == sorted(SPECS), 'config/yolact.yaml and params.PARAMETERS differ'
    for name, value in values.items():
        default = SPECS[name].default
        assert value == default, name
        if not isinstance(default, list):
            assert type(value) is type(default), name
    assert sorted(field_names()) == sorted(SPECS)


def test_parameter_table_is_complete():
    for spec in PARAMETERS:
        assert spec.description, spec.name
        if spec.min_value is not None:
            assert spec.min_value <= spec.default <= spec.max_value, spec.name
    snapshot = NodeParams.from_values({s.name: s.default for s in PARAMETERS})
    assert snapshot.classes == ()


def test_ros_args_match_launch_ros_conventions():
    args = ros_args(namespace='/robot', params_file='/p.yaml',
                    parameters={'score_threshold': 0.5, 'half': True},
                    remaps={'image': '/cam/image'})
    assert args == ['--ros-args', '-r', '__node:=yolact', '-r', '__ns:=/robot',
                    '--params-file', '/p.yaml', '-p', 'score_threshold:=0.5',
                    '-p', 'half:=true', '-r', 'image:=/cam/image']


@pytest.mark.skipif(shutil.which('ros2') is None or importlib.util.find_spec('launch_ros') is None,
                    reason='no ros2 CLI / launch_ros (PyPI has no wheels); runs on a ROS install')
def test_ros2_launch_starts_the_node_with_the_shipped_model(tmp_path):
    """`ros2 launch instseg_ros yolact.launch.py device:=cpu` brings the node up (needs the
    workspace installed and sourced)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from launch_args import start, stop, wait_for_text
    log = tmp_path / 'launch.log'
    proc = start(['ros2', 'launch', 'instseg_ros', 'yolact.launch.py', 'device:=cpu',
                  'namespace:=launch_test'], log)
    try:
        wait_for_text(log, 'Ready: model', proc, 120)
        assert 'Ready: model yolact_small' in log.read_text(), log.read_text()[-3000:]
        assert 'No weights given: using the shipped demo model' in log.read_text()
    finally:
        stop(proc)
