"""The node's parameters: one table -> descriptors, ranges, validation and a typed snapshot.

Every parameter is declared from ``PARAMETERS``; ``config/yolact.yaml`` holds the defaults users
edit and the launch file maps its arguments onto these names (tests keep the three in sync).
Read-only parameters (model, weights, device, topics' behaviour) are fixed at startup; the others
change at runtime with ``ros2 param set`` and are validated in one callback.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from instseg_ros.ros.errors import StartupError

if TYPE_CHECKING:
    from instseg_ros.core.tracking import TrackerParams


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (its type is the parameter's type), range, description."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    min_value: float | None = None
    max_value: float | None = None
    dynamic_typing: bool = False
    choices: tuple[str, ...] = ()


PARAMETERS: tuple[ParamSpec, ...] = (
    # --- model (read-only) ---
    ParamSpec('weights', '', 'Path to a YOLACT/YOLACT++ checkpoint, a torchvision Mask R-CNN '
              'file or an mmdetection 3.x RTMDet-Ins / SOLOv2 / CondInst checkpoint (.pth). Empty: the small '
              'demo model shipped with the package (synthetic shapes).', read_only=True),
    ParamSpec('preset', 'auto', "Model preset (yolact_base, yolact_resnet50, yolact_darknet53, "
              "yolact_im700, yolact_plus_base, yolact_plus_resnet50, yolact_small, "
              "maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2, rtmdet_ins_tiny, rtmdet_ins_s, "
              "rtmdet_ins_m, solov2_r50, solov2_light_r50, condinst_r50) or 'auto' (the family from "
              "the file name: maskrcnn_*, mmdetection's rtmdet-ins_* / solov2* / condinst_*, else "
              "YOLACT; the preset "
              'from the name, checked against the tensor shapes).', read_only=True),
    ParamSpec('class_names_file', '', 'Text/YAML/JSON file with one class name per class for '
              'custom-trained checkpoints. Empty: COCO names (or the shipped model\'s names).',
              read_only=True),
    ParamSpec('device', 'auto', "Inference device: 'auto' (cuda if available), 'cuda', 'cuda:N' or "
              "'cpu'. CUDA requested but absent: warning and CPU.", read_only=True),
    ParamSpec('half', False, "Legacy alias of precision:=fp16 (CUDA only; ignored with a warning "
              'on CPU).', read_only=True),
    ParamSpec('precision', 'fp32', "Network precision: 'fp32', 'bf16' (CPUs with native bf16, "
              "CUDA) or 'fp16' (CUDA). Detection, NMS and masks stay fp32. Unsupported: one "
              'warning and fp32.', read_only=True, choices=('fp32', 'bf16', 'fp16')),
    ParamSpec('backend', 'torch', "Network backend: 'torch', or the ONNX export (instseg-export; "
              "a .pth is exported on first use) run by 'onnxruntime' or 'openvino' on the CPU.",
              read_only=True, choices=('torch', 'onnxruntime', 'openvino')),
    ParamSpec('num_threads', 0, 'CPU threads for torch in this process (0 = torch default). '
              'On small CPUs shared with other processes, 1 is often fastest.', read_only=True,
              min_value=0, max_value=256),
    ParamSpec('cameras', [], 'Camera namespaces served by this one node and model, e.g. '
              '[front, rear] (a string list or one comma-separated string): inputs '
              '<camera>/image, <camera>/depth, <camera>/camera_info, outputs <camera>/instances, '
              '... Empty: one camera, topics without a prefix.', read_only=True,
              dynamic_typing=True),
    ParamSpec('camera_topics', ['color/image_raw', 'aligned_depth_to_color/image_raw',
                                'color/camera_info'],
              'With cameras: the colour, depth and camera_info topics under each camera namespace '
              '(the RealSense layout by default: /front/color/image_raw ...).', read_only=True),
    ParamSpec('max_batch', 4, 'Most camera frames batched into one forward pass.',
              read_only=True, min_value=1, max_value=64),
    ParamSpec('batch_wait_ms', 5.0, 'Once one camera frame is ready, wait at most this long for '
              'the other cameras before running the batch [ms].', read_only=True,
              min_value=0.0, max_value=1000.0),
    ParamSpec('input_compressed', False, 'Subscribe to <image>/compressed (JPEG/PNG '
              'sensor_msgs/CompressedImage, image_transport naming: the remapped image topic + '
              '"/compressed") instead of image.', read_only=True),
    ParamSpec('input_reliability', 'auto', "QoS reliability of every input subscription: 'auto' "
              '(reliable when every publisher on the topic is reliable, else best effort; '
              "re-checked when publishers change), 'reliable' or 'best_effort'. A YAML "
              'qos_overrides entry for a topic wins.', read_only=True,
              choices=('auto', 'reliable', 'best_effort')),
    ParamSpec('max_image_pixels', 4096 * 4096, 'Input images (raw or compressed, read from the '
              'header before decoding) with more pixels than this are rejected with one error.',
              min_value=1, max_value=1 << 31),
    # --- detection (runtime) ---
    ParamSpec('score_threshold', 0.3, 'Minimum detection score to publish an instance.',
              min_value=0.0, max_value=1.0),
    ParamSpec('nms_threshold', 0.5, 'IoU above which Fast NMS suppresses a lower-scored box of the '
              'same class.', min_value=0.0, max_value=1.0),
    ParamSpec('top_k', 200, 'Candidates per class kept before NMS.', min_value=1, max_value=1000),
    ParamSpec('max_detections', 100, 'Maximum instances per image.', min_value=1, max_value=1000),
    ParamSpec('classes', [], 'Class names to keep, as a string list or one comma-separated '
              'string; empty keeps all classes. Unknown names are rejected.', dynamic_typing=True),
    ParamSpec('min_mask_area', 0, 'Drop instances whose mask has fewer pixels than this.',
              min_value=0, max_value=10_000_000),
    # --- outputs (runtime) ---
    ParamSpec('publish_overlay', True, 'Publish the overlay image (rendered only while '
              'subscribed).'),
    ParamSpec('publish_markers', True, 'Publish RViz markers (rendered only while subscribed).'),
    ParamSpec('publish_label_image', False, 'Publish a full-frame 16UC1 label image on '
              '"labels" (0 = background, i+1 = instance i).'),
    ParamSpec('overlay_alpha', 0.45, 'Mask opacity in the overlay.', min_value=0.0, max_value=1.0),
    ParamSpec('overlay_draw_boxes', True, 'Draw boxes in the overlay.'),
    ParamSpec('overlay_draw_labels', True, 'Draw class names and scores in the overlay.'),
    ParamSpec('overlay_font_scale', 0.5, 'OpenCV font scale of overlay labels.',
              min_value=0.1, max_value=5.0),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.',
              read_only=True, min_value=0.1, max_value=60.0),
    # --- depth (issue: 3D instances) ---
    ParamSpec('use_depth', False, 'Subscribe to aligned depth + camera_info and place instances in '
              '3D (camera optical frame of the image header).', read_only=True),
    ParamSpec('depth_slop', 0.05, 'Maximum |stamp difference| in seconds between a colour image '
              'and the depth image paired with it.', min_value=0.0, max_value=10.0),
    ParamSpec('depth_wait', 0.5, 'Longest time in seconds a colour frame waits for its depth '
              'image before it is processed without 3D (only while depth images arrive).',
              min_value=0.0, max_value=5.0),
    ParamSpec('min_depth', 0.1, 'Depth values below this (metres) are ignored.',
              min_value=0.0, max_value=1000.0),
    ParamSpec('max_depth', 10.0, 'Depth values above this (metres) are ignored.',
              min_value=0.0, max_value=1000.0),
    ParamSpec('depth_scale', 0.0, 'Metres per depth unit; 0 = from the encoding (16UC1: 0.001, '
              '32FC1: 1.0).', min_value=0.0, max_value=1000.0),
    ParamSpec('mask_erosion', 2, 'Erode masks by this many pixels before reading depth (drops '
              'edge pixels that fall on the background).', min_value=0, max_value=50),
    ParamSpec('min_depth_points', 20, 'Fewer valid depth points than this: has_position = false.',
              min_value=1, max_value=1_000_000),
    ParamSpec('publish_points', False, 'Publish "points" (PointCloud2 of all instances: x, y, z, '
              'instance, class_id, rgb).'),
    # --- tracking and standard outputs (issue 13) ---
    ParamSpec('track_enabled', True, 'Track instances across frames: InstanceMask.track_id / '
              'track_age, labels/instance and detection ids. False: track_id = 0.'),
    ParamSpec('track_min_hits', 3, 'Frames an object must be matched in before its track gets '
              'an id.', min_value=1, max_value=100),
    ParamSpec('track_max_age', 15, 'Frames a track survives without a match (occlusion, '
              'missed detections).', min_value=0, max_value=1000),
    ParamSpec('track_min_iou', 0.1, 'Minimum mask IoU (after motion prediction) to continue a '
              'track without depth.', min_value=0.0, max_value=1.0),
    ParamSpec('track_max_distance', 0.3, 'Maximum 3D distance in metres to continue a track when '
              'both have a 3D position.', min_value=0.001, max_value=100.0),
    ParamSpec('track_distance_weight', 0.5, 'Weight of the 3D distance against 1 - IoU in the '
              'association cost (with depth).', min_value=0.0, max_value=1.0),
    ParamSpec('publish_labels', True, 'Publish labels/class (mono8 class id + 1, 0 = background), '
              'labels/instance (mono16 track id) and label_info (class map, transient local); '
              'images rendered only while subscribed.'),
    ParamSpec('publish_detections', True, 'Publish vision_msgs detections (Detection2DArray) and '
              'detections_3d (Detection3DArray, with depth) while subscribed; off when '
              'vision_msgs is not installed.'),
    # --- Mask R-CNN (issue 15) ---
    ParamSpec('maskrcnn_min_size', 800, 'Mask R-CNN only: shorter image side after '
              "torchvision's resize (the longer side at most 1333/800 times this; 800 as "
              "torchvision's COCO models). Smaller is faster and less accurate.", read_only=True,
              min_value=64, max_value=4096),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeParams:
    """A typed snapshot of every parameter (field names = parameter names)."""

    weights: str
    preset: str
    class_names_file: str
    device: str
    half: bool
    precision: str
    backend: str
    num_threads: int
    cameras: tuple[str, ...]
    camera_topics: tuple[str, ...]
    max_batch: int
    batch_wait_ms: float
    input_compressed: bool
    input_reliability: str
    max_image_pixels: int
    score_threshold: float
    nms_threshold: float
    top_k: int
    max_detections: int
    classes: tuple[str, ...]
    min_mask_area: int
    publish_overlay: bool
    publish_markers: bool
    publish_label_image: bool
    overlay_alpha: float
    overlay_draw_boxes: bool
    overlay_draw_labels: bool
    overlay_font_scale: float
    diagnostics_period: float
    use_depth: bool
    depth_slop: float
    depth_wait: float
    min_depth: float
    max_depth: float
    depth_scale: float
    mask_erosion: int
    min_depth_points: int
    publish_points: bool
    track_enabled: bool
    track_min_hits: int
    track_max_age: int
    track_min_iou: float
    track_max_distance: float
    track_distance_weight: float
    publish_labels: bool
    publish_detections: bool
    maskrcnn_min_size: int

    def tracker_params(self) -> 'TrackerParams':
        """The core tracker's settings from the track_* parameters."""
        from instseg_ros.core.tracking import TrackerParams
        return TrackerParams(enabled=self.track_enabled, min_hits=self.track_min_hits,
                             max_age=self.track_max_age, min_iou=self.track_min_iou,
                             max_distance_m=self.track_max_distance,
                             distance_weight=self.track_distance_weight)

    @staticmethod
    def from_values(values: dict[str, Any]) -> 'NodeParams':
        """Build from a {name: value} dict holding every parameter."""
        kwargs = dict(values)
        kwargs['classes'] = normalize_classes(values['classes'])
        kwargs['cameras'] = normalize_classes(values['cameras'])
        kwargs['camera_topics'] = tuple(values['camera_topics'])
        return NodeParams(**kwargs)


def normalize_classes(value: Any) -> tuple[str, ...]:
    """The ``classes`` parameter as a tuple of names: accepts a string list, a comma-separated
    string, or an empty list of any type (``ros2 param set ... classes "[]"``)."""
    if isinstance(value, str):
        value = value.split(',')
    return tuple(str(name).strip() for name in (value or ()) if str(name).strip())


def descriptor(spec: ParamSpec) -> 'ParameterDescriptor':  # noqa: F821
    """The rcl ParameterDescriptor of ``spec`` (description, read-only flag, range)."""
    # rcl_interfaces is imported here, not at module top, so that the table imports without ROS
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    desc = ParameterDescriptor(name=spec.name, description=spec.description,
                               read_only=spec.read_only, dynamic_typing=spec.dynamic_typing)
    if not spec.dynamic_typing:
        desc.type = _param_type(spec.default)
    if spec.min_value is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(spec.min_value),
                                               to_value=int(spec.max_value), step=0)]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                            to_value=float(spec.max_value),
                                                            step=0.0)]
    return desc


def _param_type(default: Any) -> int:
    from rcl_interfaces.msg import ParameterType
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, list):
        return ParameterType.PARAMETER_STRING_ARRAY
    return ParameterType.PARAMETER_STRING


def validate(name: str, value: Any, current: NodeParams) -> str | None:
    """Why setting ``name`` to ``value`` is refused, or None if it is fine."""
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time, qos_overrides.*)
    if spec.read_only:
        return f'{name} is read-only: restart the node to change it'
    if spec.choices and value not in spec.choices:
        return f'{name}={value!r} is not one of {", ".join(spec.choices)}'
    if name == 'classes':
        if not isinstance(value, (str, list, tuple)) or not all(
                isinstance(v, str) for v in (value if not isinstance(value, str) else [value])):
            return 'classes must be a list of class names or a comma-separated string'
        return None
    if spec.min_value is not None and not isinstance(value, (bool, str, list, tuple)):
        if not spec.min_value <= value <= spec.max_value:
            return (f'{name}={value} is outside [{spec.min_value}, {spec.max_value}]; '
                    f'keeping {getattr(current, name)}')
    if name in ('min_depth', 'max_depth'):
        lo = value if name == 'min_depth' else current.min_depth
        hi = value if name == 'max_depth' else current.max_depth
        if lo >= hi:
            return f'min_depth ({lo}) must be below max_depth ({hi})'
    return None


def validate_all(params: list, current: NodeParams) -> 'SetParametersResult':  # noqa: F821
    """The on-set-parameters callback body: reject the whole set if any value is invalid."""
    from rcl_interfaces.msg import SetParametersResult
    for param in params:
        reason = validate(param.name, param.value, current)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def field_names() -> list[str]:
    """Names of NodeParams fields (== parameter names)."""
    return [f.name for f in fields(NodeParams)]


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return 'true or false'
    if isinstance(default, int):
        return 'a whole number'
    if isinstance(default, float):
        return 'a number'
    return 'a string'


def _range_text(spec: ParamSpec) -> str:
    return f' in [{spec.min_value}, {spec.max_value}]' if spec.min_value is not None else ''


def startup_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` converted to the declared type of ``spec`` and range-checked.

    An integer for a double becomes a float (``score_threshold:=1`` -> 1.0), an integral float for
    an integer becomes an int, a number for a string becomes its text. Raises ValueError (one line:
    what is wrong and what to pass) for anything else, a value outside the range or not among
    ``spec.choices``.
    """
    default, name = spec.default, spec.name
    converted: Any = None
    if isinstance(default, bool):
        converted = value if isinstance(value, bool) else None
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            converted = value
        elif isinstance(value, float) and value.is_integer():
            converted = int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            converted = float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            converted = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            converted = str(value)
    else:
        converted = value
    if converted is None:
        raise ValueError(f'parameter {name}: {value!r} is not {_type_name(default)}; pass '
                         f'{_type_name(default)}{_range_text(spec)}, e.g. '
                         f'{name}:={_example(default)}')
    if spec.min_value is not None and not spec.min_value <= converted <= spec.max_value:
        raise ValueError(f'parameter {name}: {converted} is outside [{spec.min_value}, '
                         f'{spec.max_value}]; pass a value in that range')
    if spec.choices and converted not in spec.choices:
        raise ValueError(f'parameter {name}: {converted!r} is not valid; pass one of '
                         f'{", ".join(spec.choices)}')
    return converted


def _example(default: Any) -> str:
    if isinstance(default, bool):
        return 'true' if default else 'false'
    return str(default) if default != '' else '<text>'


def declare(node, spec: ParamSpec) -> Any:
    """Declare one parameter with its descriptor, converting the value given at startup."""
    from rcl_interfaces.msg import ParameterDescriptor
    if spec.dynamic_typing:
        return node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
    # Read the override (params file / -p) untyped first: rclpy would raise on 1 for a double.
    given = node.declare_parameter(spec.name, spec.default,
                                   ParameterDescriptor(dynamic_typing=True)).value
    node.undeclare_parameter(spec.name)
    try:
        value = startup_value(spec, given)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return node.declare_parameter(spec.name, value, descriptor(spec), ignore_override=True).value


def declare_all(node) -> NodeParams:
    """Declare every parameter of ``PARAMETERS`` on ``node`` and return their typed snapshot.

    Raises StartupError (one line) for a wrong-type or out-of-range value given at startup, or
    min_depth not below max_depth.
    """
    values = {spec.name: declare(node, spec) for spec in PARAMETERS}
    if values['min_depth'] >= values['max_depth']:
        raise StartupError(f"min_depth ({values['min_depth']}) must be below max_depth "
                           f"({values['max_depth']}); pass e.g. min_depth:=0.1 max_depth:=10.0")
    params = NodeParams.from_values(values)
    problem = camera_problem(params.cameras, params.camera_topics, params.use_depth)
    if problem:
        raise StartupError(problem)
    return params


def camera_problem(cameras: tuple[str, ...], camera_topics: tuple[str, ...], use_depth: bool) -> str | None:
    """What is wrong with the ``cameras`` / ``camera_topics`` pair (one line saying what to pass),
    or None: each camera a distinct relative ROS namespace, and the colour (+ depth and
    camera_info with use_depth) topics, each a valid relative topic name under every camera."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name
    if not cameras:
        return None
    cameras = tuple(name.strip('/') for name in cameras)  # as the node uses them (a prefix each)
    repeated = sorted({name for name in cameras if cameras.count(name) > 1})
    if repeated:
        return f'parameter cameras: {repeated} given more than once; pass each camera once'
    wanted = 3 if use_depth else 1
    if not wanted <= len(camera_topics) <= 3:
        what = 'colour, depth and camera_info' if use_depth else 'colour (then depth, camera_info)'
        return (f'parameter camera_topics: {len(camera_topics)} topic(s) {list(camera_topics)}; with '
                f'cameras{" and use_depth" if use_depth else ""} pass the {what} topics, e.g. '
                "camera_topics:=['color/image_raw','aligned_depth_to_color/image_raw','color/camera_info']")
    for camera in cameras:
        for topic in camera_topics[:wanted]:
            name = f'{camera}/{topic}'
            try:
                if topic.startswith(('/', '~')):
                    raise InvalidTopicNameException(name, 'must be relative', 0)
                validate_topic_name(name)
            except InvalidTopicNameException:
                return (f'parameter cameras / camera_topics: {name!r} is not a valid relative topic name; '
                        'use letters, digits and _ in names separated by / (no spaces, no leading / or ~ in '
                        'camera_topics, no name starting with a digit)')
    return None


def help_rows(specs=PARAMETERS) -> list[tuple]:
    """(name, default, description, min, max) of every parameter of ``specs``, for ``--help``."""
    return [(s.name, s.default, s.description + (' Read-only.' if s.read_only else ''),
             s.min_value, s.max_value) for s in specs]


def command_line_parameter_names(argv: list[str]) -> list[str]:
    """Names given with ``-p name:=value`` / ``--param name:=value`` in the ``--ros-args`` parts of
    ``argv`` (``-p node:name:=value`` gives ``name``)."""
    names, in_ros_args = [], False
    for flag, token in zip(argv, argv[1:]):
        if flag == '--ros-args':
            in_ros_args = True
        elif flag == '--':
            in_ros_args = False
        elif in_ros_args and flag in ('-p', '--param') and ':=' in token:
            names.append(token.split(':=', 1)[0].rsplit(':', 1)[-1])
    return names


def _suggest(name: str, known: list[str]) -> str:
    import difflib
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f'{name} (did you mean {close[0]}?)' if close else name


def check_unknown_parameters(node, argv: list[str], specs=PARAMETERS) -> None:
    """A ``-p`` name that is not a parameter of ``node`` raises StartupError (a misspelling would
    otherwise be ignored without a word); unknown names from a params file (often shared with
    other nodes) get one warning. ``qos_overrides.*`` entries are declared later by the
    publishers and are not checked."""
    known = sorted({spec.name for spec in specs} | {'use_sim_time', 'start_type_description_service'})
    given = set(command_line_parameter_names(argv))
    overrides = set(getattr(node, '_parameter_overrides', {}) or {})
    unknown = sorted(n for n in given | overrides if n not in known and not n.startswith('qos_overrides.'))
    bad_flags = [n for n in unknown if n in given]
    if bad_flags:
        raise StartupError(f'-p {", ".join(_suggest(n, known) for n in bad_flags)}: not a parameter of '
                           'this node; see --help for the parameters')
    if unknown:
        node.get_logger().warning('params file entries that are not parameters of this node (ignored): '
                                  + ', '.join(_suggest(n, known) for n in unknown))
