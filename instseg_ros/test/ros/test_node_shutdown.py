"""Ctrl-C on ``ros2 launch``: the terminal's SIGINT and the one launch forwards both reach the node.

The node must shut down cleanly (exit code 0, no traceback) whichever moment the second SIGINT hits.
"""

import os
import pathlib
import signal
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import node_command, start, stop, wait_exit, wait_for_text  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.mark.parametrize('gap_s', [0.0, 0.05, 0.3])
def test_two_sigints_exit_cleanly(tmp_path, gap_s):
    log = tmp_path / 'node.log'
    proc = start(node_command(parameters={'device': 'cpu'}), log)
    try:
        assert wait_for_text(log, 'Ready: model', proc, 120), log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(gap_s)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        code = wait_exit(proc, 20)  # a node still running then ignores SIGINT and is killed: -9
    finally:
        stop(proc)
    text = log.read_text(errors='replace')
    assert code == 0, text[-3000:]
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text[-3000:]


def test_sigterm_while_publishing_exits_cleanly(tmp_path):
    """``kill`` (SIGTERM) on a node whose timer is publishing (the README quick start ends with
    ``kill %1 %2``): rclpy shuts the context down under a running callback, whose publish then
    raises "publisher's context is invalid"; that is the requested shutdown, not a traceback.
    The synthetic camera at 40 Hz waits 20 ms between its depth and colour publish in the
    callback (as RGB-D drivers deliver), so most kills land inside a callback."""
    codes, texts = [], []
    for attempt in range(6):
        log = tmp_path / f'camera_{attempt}.log'
        proc = start(node_command(module='instseg_ros.ros.synthetic_camera', node_name='synthetic_camera',
                                  namespace=f'/term{attempt}',
                                  parameters={'rate': 40.0, 'width': 160, 'height': 120,
                                              'pool_size': 1, 'color_delay_ms': 20.0}), log)
        try:
            assert wait_for_text(log, 'Publishing', proc, 60), log.read_text()[-3000:]
            time.sleep(0.5 + 0.1 * attempt)
            proc.send_signal(signal.SIGTERM)
            codes.append(wait_exit(proc, 20))
        finally:
            stop(proc)
        texts.append(log.read_text(errors='replace'))
    for code, text in zip(codes, texts):
        assert 'Traceback' not in text and 'RCLError' not in text, text[-3000:]
        assert code == 0, text[-3000:]
