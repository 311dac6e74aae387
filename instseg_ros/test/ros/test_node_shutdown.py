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
from launch_args import node_command, start, stop  # noqa: E402

pytestmark = pytest.mark.ros


def _wait_for(log: pathlib.Path, text: str, proc, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if text in log.read_text(errors='replace'):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize('gap_s', [0.0, 0.05, 0.3])
def test_two_sigints_exit_cleanly(tmp_path, gap_s):
    log = tmp_path / 'node.log'
    proc = start(node_command(parameters={'device': 'cpu'}), log)
    try:
        assert _wait_for(log, 'Ready: model', proc, 120), log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(gap_s)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        code = proc.poll()
    finally:
        stop(proc)
    text = log.read_text(errors='replace')
    assert code == 0, text[-3000:]
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text[-3000:]
