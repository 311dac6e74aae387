"""The entry-point habit shared by every executable: init, spin, clean shutdown on Humble and Jazzy."""

from __future__ import annotations

import re
import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

#: exit code of a node that cannot start (bad argument, parameter, weights ...)
STARTUP_FAILURE = 2


def rcl_message(exc: BaseException) -> str:
    """An rcl error as one line, without the C source locations (', at /src/rcl/x.c:12')."""
    text = ' '.join(str(exc).split())
    return re.sub(r',? at [^,]*\.(?:c|cpp):\d+', '', text)


def _fail(name: str, text: str) -> int:
    print(f'[{name}] ERROR: {text}', file=sys.stderr, flush=True)
    return STARTUP_FAILURE


def spin_node(make_node: Callable[[], Node], args=None,
              fatal: tuple[type[BaseException], ...] = (), name: str = 'node') -> int:
    """``rclpy.init``, build the node, spin until Ctrl-C / shutdown, destroy it, ``try_shutdown``.

    Exceptions listed in ``fatal`` (startup errors) and rcl's refusal of the ROS arguments (e.g.
    a params file that does not exist or is not YAML) are printed as one line on stderr and give
    exit code 2. ``name`` names the executable in those lines.
    """
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:  # rcl's RCLError (a RuntimeError; its module differs by distro)
        return _fail(name, f'{rcl_message(exc)} (check the --ros-args: --params-file path and '
                           'YAML, -p name:=value, -r from:=to, --log-level)')
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except fatal as exc:
        return _fail(getattr(node, 'get_name', lambda: name)(), ' '.join(str(exc).split()))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
