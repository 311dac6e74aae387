"""The README's quick start, run as written from a fresh clone of this repository.

The block between ``<!-- quickstart -->`` and ``<!-- /quickstart -->`` is run by bash in a new
shell; only its first line's placeholder (``git clone <this repo> ...``) becomes a clone of this
repository's committed HEAD (what CI tests). ``make setup`` in the clone reuses this checkout's
virtual environment through INSTSEG_VENV (so it only runs colcon build there) and DDS stays on
this machine in the test's own domain.
"""

import contextlib
import os
import pathlib
import re
import signal
import subprocess

import cv2
import pytest

pytestmark = pytest.mark.ros
REPO = pathlib.Path(__file__).resolve().parents[3]
README = REPO / 'README.md'


def quickstart_lines() -> list[str]:
    """The quick-start block's lines (a trailing backslash joins the next line)."""
    text = README.read_text(encoding='utf-8')
    block = re.search(r'<!-- quickstart -->\s*```bash\n(.*?)```\s*<!-- /quickstart -->', text, re.S)
    assert block, 'README has no quick-start block'
    return block.group(1).replace('\\\n', ' ').splitlines()


def test_quickstart_block_is_the_whole_story():
    lines = quickstart_lines()
    assert lines[0].startswith('git clone <this repo> instseg_ros && cd instseg_ros')
    commands = ' '.join(lines)
    for needed in ('make setup', 'source scripts/env.sh', 'synthetic_camera', 'yolact_node',
                   'instseg-echo'):
        assert needed in commands


def test_readme_quickstart_runs_from_a_fresh_clone(tmp_path, ros_domain_id):
    venv = pathlib.Path(os.environ.get('INSTSEG_VENV', REPO / '.venv'))
    if not (venv / 'bin' / 'python').exists():
        pytest.skip('no venv: run make setup')
    lines = quickstart_lines()
    first = lines[0].replace('git clone <this repo> instseg_ros',
                             f'git clone --quiet "{REPO}" instseg_ros')
    script = '\n'.join(['set -e', first, *lines[1:]])
    env = {'HOME': os.environ.get('HOME', str(tmp_path)), 'PATH': '/usr/local/bin:/usr/bin:/bin',
           'INSTSEG_VENV': str(venv), 'ROS_DOMAIN_ID': str(ros_domain_id),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'LANG': os.environ.get('LANG', 'C.UTF-8')}
    proc = subprocess.Popen(['bash', '-c', script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)   # the camera and node if the block stopped early
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    echoed = [line for line in result.stdout.splitlines() if ' instance(s)' in line]
    assert len(echoed) == 3, output[-4000:]
    assert all("frame 'camera_color_optical_frame' 640x480" in line for line in echoed), echoed
    assert any(' m' in line and ' at (' in line for line in echoed), echoed   # 3D from depth
    assert 'overlay saved to overlay.png' in result.stdout
    overlay = cv2.imread(str(tmp_path / 'instseg_ros' / 'overlay.png'))
    assert overlay is not None and overlay.shape == (480, 640, 3)
    assert 'Traceback' not in output, output[-4000:]
