"""``--help`` for the ROS executables: options and parameter defaults, ROS arguments untouched.

ROS 2 executables take their settings as ``--ros-args -p name:=value``; everything after
``--ros-args`` belongs to rcl and is never read here (``ros2 run pkg node --ros-args --help``
stays rcl's own help).
"""

from __future__ import annotations

import sys
import textwrap
from typing import Iterable, Sequence


def user_args(argv: Sequence[str] | None) -> list[str]:
    """The arguments before ``--ros-args`` (``argv`` as rclpy takes it: default sys.argv)."""
    args = list(sys.argv if argv is None else argv)
    return args[:args.index('--ros-args')] if '--ros-args' in args else args


def wants_help(argv: Sequence[str] | None) -> bool:
    """True when ``-h`` / ``--help`` is given before any ``--ros-args``."""
    return any(a in ('-h', '--help') for a in user_args(argv))


def _format_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return repr(value) if value == '' else value
    return str(value)


def parameter_lines(rows: Iterable[tuple]) -> list[str]:
    """``rows`` of (name, default, description[, min, max]) as aligned help lines."""
    rows = list(rows)
    width = max((len(r[0]) for r in rows), default=0)
    lines = []
    for name, default, description, *limits in rows:
        kind = type(default).__name__ if not isinstance(default, list) else 'string list'
        lo, hi = (limits + [None, None])[:2]
        bounds = f', range [{lo}, {hi}]' if lo is not None else ''
        lines.append(f'  {name:<{width}}  ({kind}, default {_format_value(default)}{bounds})')
        lines += textwrap.wrap(description, width=100, initial_indent=' ' * 6,
                               subsequent_indent=' ' * 6)
    return lines


def node_help(prog: str, summary: str, rows: Iterable[tuple], example: str) -> str:
    """Help text of a node executable: usage, its parameters with defaults, an example."""
    return '\n'.join([
        f'usage: {prog} [-h] [--ros-args -p NAME:=VALUE ... -r FROM:=TO ... '
        '--params-file FILE]',
        '',
        summary.strip(),
        '',
        'options:',
        '  -h, --help  show this help and exit (ROS arguments follow --ros-args)',
        '',
        'parameters (set with --ros-args -p NAME:=VALUE or a --params-file):',
        *parameter_lines(rows),
        '',
        'example:',
        f'  {example}',
    ])
