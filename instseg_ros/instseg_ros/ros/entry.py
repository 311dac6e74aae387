"""The entry-point habit shared by every executable: init, spin, clean shutdown on Humble and Jazzy."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], args=None,
              fatal: tuple[type[BaseException], ...] = ()) -> int:
    """``rclpy.init``, build the node, spin until Ctrl-C / shutdown, destroy it, ``try_shutdown``.

    Exceptions listed in ``fatal`` (startup errors) are printed to stderr and give exit code 2.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except fatal as exc:
        name = getattr(node, 'get_name', lambda: 'node')()
        print(f'[{name}] ERROR: {exc}', file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
