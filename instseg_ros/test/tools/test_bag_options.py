"""instseg-bag options come from the node's parameter table and layer like the node's:
table default < params YAML (/** then the node's own section) < command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from instseg_ros.ros.params import PARAMETERS
from instseg_ros.tools.bag import build_parser
from instseg_ros.tools.bag_options import NODE_ONLY, OptionError, load_params_file, resolve_params

CONFIG = Path(__file__).resolve().parents[2] / 'config' / 'yolact.yaml'


def parse(*argv):
    return build_parser().parse_args(['in', 'out', *map(str, argv)])


def test_every_table_parameter_but_node_only_is_an_option():
    dests = {a.dest for a in build_parser()._actions}
    for spec in PARAMETERS:
        assert (spec.name in dests) == (spec.name not in NODE_ONLY), spec.name


def test_table_imports_without_ros():
    code = ('import sys; import instseg_ros.tools.bag_options, instseg_ros.tools.bag_types, '
            'instseg_ros.tools.bag_input, instseg_ros.tools.bag_output; '
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'rcl_interfaces', 'instseg_msgs', 'sensor_msgs', 'std_msgs')]; "
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=CONFIG.parents[1])


def test_defaults_are_the_table_defaults():
    params = resolve_params(parse())
    for spec in PARAMETERS:
        value = getattr(params, spec.name)
        assert value == (tuple(spec.default) if isinstance(spec.default, list) else spec.default)


def test_shipped_config_reads_and_layers(tmp_path):
    assert resolve_params(parse('--params-file', CONFIG)) == resolve_params(parse())
    yaml_file = tmp_path / 'p.yaml'
    yaml_file.write_text('/**:\n  ros__parameters:\n    score_threshold: 0.4\n    top_k: 50\n'
                         '    qos_overrides: {a: 1}\n'
                         '/cam/yolact:\n  ros__parameters:\n    score_threshold: 0.6\n'
                         '    classes: [ball, box]\n'
                         'other_node:\n  ros__parameters:\n    top_k: 7\n')
    params = resolve_params(parse('--params-file', yaml_file))
    assert (params.score_threshold, params.top_k, params.classes) == (0.6, 50, ('ball', 'box'))
    params = resolve_params(parse('--params-file', yaml_file, '--score-threshold', '0.7',
                                  '--classes', 'star', '--half'))
    assert (params.score_threshold, params.classes, params.half) == (0.7, ('star',), True)
    assert resolve_params(parse('--params-file', yaml_file, '--node-name', 'other_node')).top_k == 7


def test_bad_values_are_refused(tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse('--score-threshold', '1.5')
    assert exc.value.code == 2
    bad = tmp_path / 'bad.yaml'
    bad.write_text('/**:\n  ros__parameters:\n    top_k: many\n')
    with pytest.raises(OptionError, match='top_k'):
        load_params_file(bad)
    with pytest.raises(OptionError, match='min_depth'):
        resolve_params(parse('--min-depth', '5', '--max-depth', '2'))
    with pytest.raises(OptionError, match='cannot read'):
        load_params_file(tmp_path / 'missing.yaml')


def test_help_shows_every_default():
    """Every option's --help line says its default (as '(default: ...)')."""
    parser = build_parser()
    help_text = ' '.join(parser.format_help().split())
    missing = [action.option_strings[0] for action in parser._actions
               if action.option_strings and action.dest != 'help'
               and '(default: ' not in ' '.join(action.help.split())]
    assert missing == []
    for shown in ('--depth-topic DEPTH_TOPIC aligned depth (16UC1 mm / 32FC1 m) for 3D instances '
                  '(default: the only 16UC1 / 32FC1 Image topic of the bag, if any)',
                  '--no-depth no 3D even when the bag has a depth topic (default: off)',
                  '--overlay also write <ns>/overlay (bgr8) (default: off)',
                  '--end END stop at this many seconds after the bag start (default: to the end)',
                  '--storage {mcap,sqlite3} storage format of the output bag (default: mcap)',
                  "--score-threshold SCORE_THRESHOLD Minimum detection score to publish an "
                  "instance. (default: 0.3)"):
        assert shown in help_text, shown


def test_synth_bag_help_shows_defaults():
    from instseg_ros.tools.synth_bag import build_parser as synth_parser

    help_text = ' '.join(synth_parser().format_help().split())
    for shown in ('--frames FRAMES number of frames (default: 10)',
                  '--width WIDTH image width in pixels (default: 320)',
                  '--no-depth no depth and camera_info topics (default: written)'):
        assert shown in help_text, shown
