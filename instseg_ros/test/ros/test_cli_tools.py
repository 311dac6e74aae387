"""The README's commands: after `source scripts/env.sh` the tools run by name, every executable
answers --help (nodes list their parameters and defaults), and ROS arguments stay untouched."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
LIB = REPO / 'install' / 'instseg_ros' / 'lib' / 'instseg_ros'

pytestmark = pytest.mark.skipif(not (LIB / 'yolact_node').exists(),
                                reason='workspace not built (scripts/setup.sh)')


def in_fresh_shell(command: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    """``command`` in a new bash after ``source scripts/env.sh`` (the shared venv is kept)."""
    env = {k: v for k, v in os.environ.items() if k in ('HOME', 'INSTSEG_VENV', 'TERM', 'LANG',
                                                        'ROS_DOMAIN_ID', 'USER')}
    env['PATH'] = '/usr/local/bin:/usr/bin:/bin'
    if 'INSTSEG_VENV' not in env and not (REPO / '.venv').exists():
        pytest.skip('no venv: set INSTSEG_VENV or run scripts/setup.sh')
    return subprocess.run(['bash', '-c', f'set -e; cd "{REPO}"; source scripts/env.sh; {command}'],
                          env=env, capture_output=True, text=True, timeout=timeout_s)


def test_tools_run_by_name_after_sourcing_env():
    result = in_fresh_shell('instseg-synth --help; echo ===; instseg-train --help; echo ===; '
                            'instseg-eval --help; echo ===; instseg-export --help; echo ===; '
                            'instseg-echo --help')
    assert result.returncode == 0, result.stderr
    synth, train, evaluate, export, echo = (' '.join(part.split()) for part in result.stdout.split('==='))
    assert 'usage: instseg-synth' in synth and '--num-images' in synth
    assert 'usage: instseg-train' in train and '--preset' in train
    assert 'usage: instseg-eval' in evaluate and '--weights' in evaluate
    # every default is shown (issue 21.7), also for options without a help text
    assert '--width WIDTH (default: 640)' in synth and '--seed SEED (default: 0)' in synth
    assert '--iterations ITERATIONS (default: 1000)' in train and '(default: yolact_small)' in train
    assert '(default: ' in evaluate and '--preset PRESET preset of WEIGHTS (default: from the file)' in export
    assert '--count COUNT messages to print, then exit (default: 3)' in echo


def test_nodes_print_their_parameters_and_defaults():
    result = in_fresh_shell('yolact_node --help; echo ===; synthetic_camera -h; echo ===; '
                            'yolact_node --help --ros-args -p score_threshold:=0.5')
    assert result.returncode == 0, result.stderr
    node, camera, with_ros_args = result.stdout.split('===')
    assert node.startswith('usage: yolact_node')
    assert re.search(r'score_threshold +\(float, default 0\.3, range \[0\.0, 1\.0\]\)', node)
    assert re.search(r"weights +\(str, default ''\)", node)
    assert re.search(r'rate +\(float, default 10\.0, range \[0\.1, 1000\.0\]\)', camera)
    assert with_ros_args.strip() == node.strip()
    assert 'Ready' not in result.stdout + result.stderr  # help never starts the node


@pytest.mark.skipif(shutil.which('ros2') is None and not (pathlib.Path(
    os.environ.get('INSTSEG_VENV', REPO / '.venv')) / 'bin' / 'ros2').exists(),
    reason='no ros2 CLI (PyPI has no wheel)')
def test_ros2_run_finds_the_tools():
    result = in_fresh_shell('ros2 run instseg_ros instseg-train --help')
    assert result.returncode == 0, result.stderr
    assert 'usage: instseg-train' in result.stdout


def test_echo_stopped_by_sigterm_exits_without_traceback():
    """`timeout 3 instseg-echo` (SIGTERM while it waits): exit 130, no traceback (helper finding:
    ExternalShutdownException printed one)."""
    result = in_fresh_shell('set +e; timeout --preserve-status 4 instseg-echo --topic /nobody_publishes_here --timeout 60; '
                            'echo "rc=$?"', timeout_s=60.0)
    assert 'rc=130' in result.stdout, (result.stdout, result.stderr)
    assert 'Traceback' not in result.stderr, result.stderr
