"""The entry-point habit shared by every executable: init, spin, clean shutdown on Humble and Jazzy."""

from __future__ import annotations

import re
import signal
import sys
import threading
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


def _ignore_interrupts() -> None:
    """Shutting down: further Ctrl-C's are ignored. On Ctrl-C in a terminal the node gets the
    terminal's SIGINT and the one ``ros2 launch`` forwards; the second must not interrupt the
    clean-up (a KeyboardInterrupt traceback, or death by signal once rclpy's handler is gone)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    except RuntimeError:  # rcl's RCLError from a callback that raced a signal's shutdown
        if node is None or node.context.ok():
            raise
        # SIGTERM / SIGINT shut the context down while a callback was publishing ("publisher's
        # context is invalid"): that is the requested shutdown, not a fault
    finally:
        _ignore_interrupts()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        _ignore_interrupts()  # try_shutdown puts back the handler that was there before rclpy.init
    return 0
