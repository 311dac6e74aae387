"""The argument handling of ``launch/yolact.launch.py`` as plain functions (no launch import).

A parameter argument that is not given keeps the sentinel default :data:`NOT_GIVEN`; only the
given ones become parameters, written to a YAML file that is loaded *after* the params file, so
a user's params file keeps every value not overridden on the command line. Values are converted
to the declared type of the parameter (``score_threshold:=1`` -> 1.0) and checked against its
range, misspelled argument names are refused with the nearest known name, and the other
arguments (log level, respawn delay, switches) are checked before anything starts.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from typing import Mapping

import yaml

from instseg_ros.ros.params import SPECS, ParamSpec, startup_value

#: default of every parameter argument: "not given, keep the params file's value"
NOT_GIVEN = '(from params_file)'

#: launch argument -> description; each is the node parameter of that name (see params.py)
PARAMETER_ARGUMENTS = {
    'weights': 'Checkpoint (.pth): YOLACT, torchvision Mask R-CNN, mmdetection RTMDet-Ins / SOLOv2 / '
               'CondInst. '
               'Empty: the shipped demo model.',
    'preset': 'Model preset (yolact_*, maskrcnn_resnet50_fpn[_v2], rtmdet_ins_{tiny,s,m}, '
              'solov2_[light_]r50, condinst_r50) or auto (from the file name).',
    'class_names_file': 'Class names of a custom-trained checkpoint (one per line).',
    'device': 'auto | cuda | cuda:N | cpu',
    'half': 'FP16 inference on CUDA (alias of precision:=fp16).',
    'precision': 'fp32 | bf16 (native-bf16 CPU, CUDA) | fp16 (CUDA); the network only.',
    'backend': 'torch | onnxruntime | openvino (the ONNX export, CPU).',
    'score_threshold': 'Minimum detection score.',
    'nms_threshold': 'Fast NMS IoU threshold.',
    'top_k': 'Candidates per class before NMS.',
    'input_compressed': 'Subscribe to <image>/compressed (image_transport name) instead of image.',
    'use_depth': 'Use aligned depth + camera_info for 3D positions and boxes.',
    'depth_slop': 'Max colour/depth stamp difference [s].',
    'min_depth': 'Ignore depth below this [m].',
    'max_depth': 'Ignore depth above this [m].',
    'depth_scale': 'Metres per depth unit; 0 = from the encoding.',
    'mask_erosion': 'Erode masks by N px before reading depth.',
    'publish_points': 'Publish the instances point cloud on points.',
    'use_sim_time': 'Use the /clock topic (replaying bags).',
    'input_reliability': 'Input QoS: auto (follow the publishers) | reliable | best_effort.',
    'cameras': 'Camera namespaces served by one model, e.g. [front,rear] (inputs '
               '/<camera>/color/image_raw ..., outputs /<camera>/instances ...).',
    'maskrcnn_min_size': 'Mask R-CNN input shorter side (torchvision resize; 800 = COCO default).',
}

#: parameters that are launch arguments but not in the node's table
EXTRA_SPECS = {'use_sim_time': ParamSpec('use_sim_time', False, 'Use /clock as time source.')}

#: launch argument -> (node-relative topic it remaps, default target)
REMAP_ARGUMENTS = {
    'image': ('image', '/camera/color/image_raw'),
    'depth': ('depth', '/camera/aligned_depth_to_color/image_raw'),
    'camera_info': ('camera_info', '/camera/color/camera_info'),
}

#: other launch arguments -> (default, description); params_file's default is set by the launch
#: file (the installed config/yolact.yaml)
OTHER_ARGUMENTS = {
    'namespace': ('', 'Namespace of the node (and of RViz).'),
    'params_file': (None, 'YAML parameters file (default: the installed config/yolact.yaml).'),
    'rviz': ('false', 'Start RViz with config/yolact.rviz (only if rviz2 is installed).'),
    'log_level': ('info', 'Log level of the node: debug, info, warn, error or fatal.'),
    'respawn': ('false', 'Restart the node when it exits.'),
    'respawn_delay': ('2.0', 'Seconds to wait before a restart (with respawn:=true).'),
    'lifecycle': ('false', 'Start the managed (lifecycle) node yolact_lifecycle_node instead.'),
    'autostart': ('true', 'With lifecycle:=true: configure and activate it at launch.'),
    'model': ('auto', 'Model family: auto | yolact | maskrcnn | rtmdet_ins | solov2 | condinst. '
                      'Checked before the node starts: the node takes the family from preset '
                      '(or, with preset auto, from the weights file name), so model:=F needs a '
                      'preset of F or a file name of F (e.g. model:=rtmdet_ins '
                      'preset:=rtmdet_ins_tiny).'),
}

BOOLEAN_ARGUMENTS = ('rviz', 'respawn', 'lifecycle', 'autostart')
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')
#: configurations ros2 launch itself may set (ros2 launch --launch-prefix ...)
LAUNCH_CONFIGURATIONS = ('launch-prefix', 'launch-prefix-filter')


class LaunchArgumentError(ValueError):
    """A launch argument is misspelled or has a value that cannot be used (one line)."""


def spec_of(name: str) -> ParamSpec:
    """The ParamSpec of parameter argument ``name``."""
    return EXTRA_SPECS.get(name) or SPECS[name]


def known_arguments() -> set[str]:
    """Every argument name the launch file declares."""
    return set(PARAMETER_ARGUMENTS) | set(REMAP_ARGUMENTS) | set(OTHER_ARGUMENTS)


def argument_description(name: str) -> str:
    """The description of parameter argument ``name`` with the installed default."""
    default = spec_of(name).default
    shown = ('true' if default else 'false') if isinstance(default, bool) else repr(default)
    return f'{PARAMETER_ARGUMENTS[name]} Not given: the params file value (installed: {shown}).'


def parse_value(name: str, text: str):
    """Launch argument text -> value of parameter ``name``'s declared type.

    Like rcl's ``-p name:=value``, the text is read as YAML, except for string parameters (an
    empty ``weights:=`` stays ''). Raises LaunchArgumentError saying what to pass.
    """
    spec = spec_of(name)
    if isinstance(spec.default, str):
        value = text
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
    try:
        return startup_value(spec, value)
    except ValueError as exc:
        raise LaunchArgumentError(f'launch argument {name}:={text}: '
                                  f'{str(exc).split(": ", 1)[-1]}') from None


def parameter_overrides(configurations: Mapping[str, str], names=None) -> dict:
    """{parameter: typed value} of the parameter arguments that were given (not NOT_GIVEN).

    ``names`` limits the result to those arguments (default: all parameter arguments).
    """
    names = PARAMETER_ARGUMENTS if names is None else names
    return {name: parse_value(name, configurations[name]) for name in names
            if configurations.get(name, NOT_GIVEN) != NOT_GIVEN}


def unknown_arguments(configurations: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(misspelled, foreign): unknown configuration names close to a known argument (with the
    suggestion, 'score_treshold (did you mean score_threshold?)'), and other unknown names (e.g.
    those of a parent launch file that includes this one)."""
    known = known_arguments()
    misspelled, foreign = [], []
    for name in sorted(set(configurations) - known - set(LAUNCH_CONFIGURATIONS)):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        if close:
            misspelled.append(f'{name} (did you mean {close[0]}?)')
        else:
            foreign.append(name)
    return misspelled, foreign


def is_true(text: str) -> bool:
    """A launch boolean ('true'/'false', '1'/'0', any case), as launch's IfCondition reads it."""
    value = str(text).strip().lower()
    if value in ('true', '1'):
        return True
    if value in ('false', '0'):
        return False
    raise LaunchArgumentError(f'{text!r} is not a boolean; pass true or false')


def respawn_delay_s(text: str) -> float:
    """The respawn_delay argument in seconds (>= 0)."""
    try:
        delay = float(text)
    except ValueError:
        delay = -1.0
    if not delay >= 0.0:
        raise LaunchArgumentError(f'launch argument respawn_delay:={text} is not a number of '
                                  'seconds >= 0; pass e.g. respawn_delay:=2.0')
    return delay


def check_arguments(configurations: Mapping[str, str]) -> list[str]:
    """Raise LaunchArgumentError for the first unusable argument; return the foreign names.

    Checks: misspelled names, boolean switches, log_level, respawn_delay, that params_file exists,
    and every given parameter value (type and range).
    """
    misspelled, foreign = unknown_arguments(configurations)
    if misspelled:
        raise LaunchArgumentError(
            f'unknown launch argument(s): {", ".join(misspelled)}; list them with '
            '`ros2 launch instseg_ros yolact.launch.py --show-args`')
    for name in BOOLEAN_ARGUMENTS:
        if name in configurations:
            try:
                is_true(configurations[name])
            except LaunchArgumentError:
                raise LaunchArgumentError(f'launch argument {name}:={configurations[name]} is '
                                          'not a boolean; pass true or false') from None
    level = configurations.get('log_level', 'info')
    if level.split(':')[-1].strip().lower() not in LOG_LEVELS:
        raise LaunchArgumentError(f'launch argument log_level:={level}: pass one of '
                                  f'{", ".join(LOG_LEVELS)}')
    respawn_delay_s(configurations.get('respawn_delay', '0'))
    params_file = configurations.get('params_file')
    if params_file and not os.path.isfile(params_file):
        raise LaunchArgumentError(f'params_file:={params_file} does not exist; pass the path of a '
                                  'YAML parameters file (see config/yolact.yaml)')
    parameter_overrides(configurations)
    check_model(configurations)
    return foreign


def _params_file_preset(path: str | None) -> str | None:
    """The preset a params file sets for the node (``/**`` or a ``yolact`` section), if any."""
    if not path:
        return None
    try:
        with open(path, encoding='utf-8') as stream:
            document = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError):
        return None  # the node reports an unreadable file itself
    preset = None
    for key, section in (document or {}).items() if isinstance(document, dict) else ():
        values = section.get('ros__parameters') if isinstance(section, dict) else None
        if isinstance(values, dict) and 'preset' in values and (
                str(key).strip('/') in ('**', '*') or str(key).split('/')[-1] == 'yolact'):
            preset = str(values['preset'])
    return preset


def check_model(configurations: Mapping[str, str]) -> None:
    """model:=<family> against the preset (argument, else params file) or, with preset auto, the
    weights file name; LaunchArgumentError (one line) when the node would run another family."""
    model = configurations.get('model', 'auto')
    if model == 'auto':
        return
    from instseg_ros.core.checkpoint import CheckpointError  # torch: only with model:= given
    from instseg_ros.core.segmenter import BUILDERS, family_presets, model_family
    if model not in BUILDERS:
        raise LaunchArgumentError(f'launch argument model:={model}: pass one of auto, '
                                  f'{", ".join(BUILDERS)}')
    preset = configurations.get('preset', NOT_GIVEN)
    if preset == NOT_GIVEN:
        preset = _params_file_preset(configurations.get('params_file')) or 'auto'
    weights = configurations.get('weights', NOT_GIVEN)
    weights = '' if weights == NOT_GIVEN else weights
    presets = ' | '.join(family_presets()[model])
    try:
        family = model_family(preset, weights or 'weights.pth', model)
    except CheckpointError as exc:
        raise LaunchArgumentError(f'launch argument model:={model}: {exc}') from None
    if preset == 'auto':
        family = model_family('auto', weights) if weights else 'yolact'
        if family != model:
            named = f'the file name {os.path.basename(weights)}' if weights else 'the shipped demo model'
            raise LaunchArgumentError(
                f'launch argument model:={model}: with preset auto the node takes the family from '
                f'{named} ({family}); pass preset:={presets}')


def overrides_yaml(overrides: Mapping) -> str:
    """A ROS parameters file (for every node, ``/**``) holding ``overrides``."""
    return yaml.safe_dump({'/**': {'ros__parameters': dict(overrides)}}, sort_keys=True)


def write_overrides_file(overrides: Mapping) -> str:
    """Write :func:`overrides_yaml` to a new temporary file; returns its path (as launch_ros
    does for dictionary parameters, the file is left for the node to read)."""
    fd, path = tempfile.mkstemp(prefix='yolact_launch_args_', suffix='.yaml')
    with os.fdopen(fd, 'w', encoding='utf-8') as stream:
        stream.write(overrides_yaml(overrides))
    return path


def rviz_decision(rviz: str, rviz2_installed: bool) -> str:
    """'start', 'missing' (wanted but rviz2 is not installed: warn) or 'off'."""
    if not is_true(rviz):
        return 'off'
    return 'start' if rviz2_installed else 'missing'


def package_executable_exists(package: str, executable: str) -> bool:
    """Whether ``ros2 run package executable`` would find something (ament index + lib dir)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return False
    try:
        prefix = get_package_prefix(package)
    except (PackageNotFoundError, ValueError):
        return False
    return os.access(os.path.join(prefix, 'lib', package, executable), os.X_OK)


def node_failed(returncode: int | None, respawn: str, shutting_down: bool) -> bool:
    """Whether a yolact exit must end the launch with an error: it exited non-zero by itself
    (not while launch shuts down) and will not be respawned."""
    return bool(returncode) and not shutting_down and not is_true(respawn)
