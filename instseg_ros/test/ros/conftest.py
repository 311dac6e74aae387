"""Shared fixtures for ROS-layer tests.

Keeps DDS traffic on this machine and in a domain of its own: ``ROS_AUTOMATIC_DISCOVERY_RANGE``
is LOCALHOST and ``ROS_DOMAIN_ID`` is derived from this pytest process's pid (10..99; override
with ``INSTSEG_TEST_ROS_DOMAIN_ID``). The variables are set when this conftest is imported, i.e.
before any test can call ``rclpy.init``, and child processes inherit them.

Fixtures:
    ros_domain_id: the domain id in use (int).
    ros_context: a session-wide, initialised ``rclpy.context.Context`` (shut down at the end).
        Pass it to ``rclpy.create_node(..., context=ros_context)`` and executors.
    make_node: factory ``make_node(name, **kwargs) -> Node`` in ``ros_context``; nodes are
        destroyed after the test.
    spin_until: ``spin_until(node, predicate, timeout_s=20.0) -> bool`` spins ``node`` until
        ``predicate()`` is true (True) or the timeout passes (False).
"""

import os
import time

import pytest


def _domain_id() -> int:
    """Domain id 10..99 from INSTSEG_TEST_ROS_DOMAIN_ID or this process's pid."""
    forced = os.environ.get('INSTSEG_TEST_ROS_DOMAIN_ID')
    return int(forced) if forced else 10 + os.getpid() % 90


os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = str(_domain_id())
os.environ.pop('ROS_STATIC_PEERS', None)
os.environ.pop('ROS_LOCALHOST_ONLY', None)  # deprecated in Jazzy; conflicts with the range above


@pytest.fixture(scope='session')
def ros_domain_id() -> int:
    """The ROS_DOMAIN_ID every node (and child process) of this test session uses."""
    return int(os.environ['ROS_DOMAIN_ID'])


@pytest.fixture(scope='session')
def ros_context(ros_domain_id):
    """An initialised rclpy Context for the whole session, shut down at the end."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    context.try_shutdown()


@pytest.fixture
def make_node(ros_context):
    """Factory creating nodes in ``ros_context``; destroys them after the test."""
    import rclpy

    nodes = []

    def _make(name: str, **kwargs):
        node = rclpy.create_node(name, context=ros_context, **kwargs)
        nodes.append(node)
        return node

    yield _make
    for node in nodes:
        node.destroy_node()


@pytest.fixture
def spin_until(ros_context):
    """``spin_until(node, predicate, timeout_s=20.0) -> bool``: spin until predicate() holds."""
    from rclpy.executors import SingleThreadedExecutor

    def _spin(node, predicate, timeout_s: float = 20.0) -> bool:
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        try:
            deadline = time.monotonic() + timeout_s
            while not predicate():
                if time.monotonic() > deadline:
                    return False
                executor.spin_once(timeout_sec=0.05)
            return True
        finally:
            executor.remove_node(node)
            executor.shutdown()
    return _spin
