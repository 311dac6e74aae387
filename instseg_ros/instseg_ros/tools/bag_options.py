"""The node's parameters as command-line options (from ``ros.params.PARAMETERS``, one table).

Values are layered: the table's defaults, then a params YAML in the node's layout
(``/**: ros__parameters: ...`` and node-name sections such as ``yolact:`` or ``/ns/yolact:``),
then the options given on the command line. Every value is checked against the table's type and
range. Parameters that only make sense for a live node (topic behaviour, publish switches,
diagnostics) are left out; the bag tool has its own output switches.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from instseg_ros.ros.params import PARAMETERS, SPECS, NodeParams, ParamSpec, normalize_classes

#: Node parameters without meaning offline: input_compressed is detected from the bag, use_depth
#: follows --depth-topic, and what to write is chosen with --overlay / --labels.
NODE_ONLY = frozenset({'input_compressed', 'use_depth', 'diagnostics_period', 'publish_overlay',
                       'publish_markers', 'publish_label_image', 'publish_points',
                       'input_reliability', 'depth_wait', 'cameras', 'camera_topics', 'max_batch',
                       'batch_wait_ms'})


class OptionError(ValueError):
    """A parameter value (YAML or command line) of the wrong type or outside its range."""


def option_name(spec: ParamSpec) -> str:
    return '--' + spec.name.replace('_', '-')


def check_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` converted to ``spec``'s type and checked against its range.

    Raises:
        OptionError: wrong type or out of range.
    """
    default = spec.default
    try:
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ('true', 'false'):
                value = value.lower() == 'true'
            if not isinstance(value, bool):
                raise TypeError
        elif isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            value = int(value)
        elif isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
        elif isinstance(default, list):
            value = list(normalize_classes(value))
        else:
            if not isinstance(value, str):
                raise TypeError
    except (TypeError, ValueError):
        raise OptionError(f'{spec.name}: {value!r} is not a {type(default).__name__}') from None
    if spec.min_value is not None and not isinstance(value, (bool, list, str)):
        if not spec.min_value <= value <= spec.max_value:
            raise OptionError(f'{spec.name}={value} is outside [{spec.min_value}, {spec.max_value}]')
    return value


def _arg_type(spec: ParamSpec):
    def convert(text: str) -> Any:
        try:
            return check_value(spec, text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = type(spec.default).__name__  # argparse names it in its messages
    return convert


def add_parameter_options(parser: argparse.ArgumentParser) -> None:
    """One option per table entry (except :data:`NODE_ONLY`), default None = not given."""
    groups = {'model': parser.add_argument_group('model (node parameters)'),
              'detection': parser.add_argument_group('detection and overlay (node parameters)'),
              'depth': parser.add_argument_group('depth / 3D (node parameters)')}
    group = groups['model']
    for spec in PARAMETERS:
        if spec.name == 'score_threshold':
            group = groups['detection']
        elif spec.name == 'depth_slop':
            group = groups['depth']
        if spec.name in NODE_ONLY:
            continue
        shown = ','.join(spec.default) if isinstance(spec.default, list) else spec.default
        help_text = f'{spec.description} (default: {shown!r})'.replace('%', '%%')
        if isinstance(spec.default, bool):
            group.add_argument(option_name(spec), dest=spec.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(option_name(spec), dest=spec.name, default=None,
                               type=_arg_type(spec), metavar=spec.name.upper(), help=help_text)


def _sections(document: Any, node_name: str) -> list[dict]:
    """``ros__parameters`` dicts that apply to ``node_name``: wildcards first, then its own."""
    if not isinstance(document, dict):
        raise OptionError('expected a mapping of node names to {ros__parameters: ...}')
    wild, own = [], []
    for key, section in document.items():
        if not isinstance(section, dict) or not isinstance(section.get('ros__parameters'), dict):
            continue
        name = str(key).strip('/')
        if name in ('**', '*'):
            wild.append(section['ros__parameters'])
        elif name.split('/')[-1] == node_name:
            own.append(section['ros__parameters'])
    return wild + own


def load_params_file(path: str | Path, node_name: str = 'yolact') -> dict[str, Any]:
    """Parameter values of a node params YAML (keys not in the table, e.g. qos_overrides, ignored).

    Raises:
        OptionError: unreadable or malformed file, or a value of the wrong type / range.
    """
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise OptionError(f'cannot read params file {str(path)!r}: {exc}') from None
    values: dict[str, Any] = {}
    for section in _sections(document or {}, node_name):
        for name, value in section.items():
            if name in SPECS:
                values[name] = check_value(SPECS[name], value)
    return values


def resolve_params(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> NodeParams:
    """NodeParams from the table's defaults, ``--params-file`` and the given options (in that order).

    Raises:
        OptionError: a bad value, or min_depth >= max_depth.
    """
    values = {spec.name: spec.default for spec in PARAMETERS}
    if getattr(args, 'params_file', None):
        values.update(load_params_file(args.params_file, getattr(args, 'node_name', 'yolact')))
    values.update({spec.name: getattr(args, spec.name) for spec in PARAMETERS
                   if getattr(args, spec.name, None) is not None})
    values.update(overrides or {})
    if values['min_depth'] >= values['max_depth']:
        raise OptionError(f"min_depth ({values['min_depth']}) must be below max_depth "
                          f"({values['max_depth']})")
    return NodeParams.from_values(values)
