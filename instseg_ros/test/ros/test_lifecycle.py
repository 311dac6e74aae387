"""The managed (lifecycle) node over the real middleware: unconfigured -> configure -> activate
(instances flow) -> deactivate (none) -> activate (flow again) -> shutdown, every transition
through the node's own lifecycle services, the node a separate process."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from launch_args import PARAMS_FILE, node_command, start, stop  # noqa: E402

pytestmark = pytest.mark.ros
NODE = '/lc/yolact'


def call(node, spin_until, client, request, timeout_s=120.0):
    assert spin_until(node, client.service_is_ready, timeout_s=60)
    future = client.call_async(request)
    assert spin_until(node, future.done, timeout_s=timeout_s)
    return future.result()


def test_lifecycle_transitions(make_node, spin_until, tmp_path):
    from instseg_msgs.msg import InstanceMaskArray
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from instseg_ros.ros.conversions import numpy_to_image
    from instseg_ros.synth.scene import Camera, render_scene
    log = tmp_path / 'lifecycle.log'
    proc = start(node_command(module='instseg_ros.ros.lifecycle_node', namespace='/lc',
                              params_file=PARAMS_FILE, parameters={'score_threshold': 0.2},
                              remaps={'image': '/lc_cam/image'}), log)
    try:
        node = make_node('lifecycle_client')
        get_state = node.create_client(GetState, f'{NODE}/get_state')
        change = node.create_client(ChangeState, f'{NODE}/change_state')
        received = []
        node.create_subscription(InstanceMaskArray, '/lc/instances', received.append, 10)
        pub = node.create_publisher(Image, '/lc_cam/image',
                                    QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        image = numpy_to_image(render_scene(5, Camera(320, 240)).image_bgr, 'bgr8')

        def state():
            return call(node, spin_until, get_state, GetState.Request()).current_state.id

        def transition(transition_id):
            return call(node, spin_until, change, ChangeState.Request(
                transition=Transition(id=transition_id))).success

        def flows(seconds):
            """Publish frames for up to ``seconds``; True once an answer arrives."""
            before = len(received)
            for sec in range(int(seconds * 2)):
                image.header.stamp.sec = 1000 + len(received) * 100 + sec
                pub.publish(image)
                if spin_until(node, lambda: len(received) > before, timeout_s=0.5):
                    return True
            return False

        assert state() == State.PRIMARY_STATE_UNCONFIGURED, log.read_text()[-2000:]
        assert node.count_publishers('/lc/instances') == 0       # nothing before activate
        assert transition(Transition.TRANSITION_CONFIGURE), log.read_text()[-2000:]
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        assert flows(60), log.read_text()[-2000:]
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        spin_until(node, lambda: False, timeout_s=1.0)           # in-flight results drain
        assert not flows(4), 'instances published while inactive'
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert flows(60), log.read_text()[-2000:]
        assert transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert state() == State.PRIMARY_STATE_FINALIZED
        assert proc.poll() is None
        assert 'Traceback' not in log.read_text(), log.read_text()[-3000:]
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


@pytest.mark.parametrize('fault', ['missing', 'truncated_onnx'])
def test_configure_fault_fails_the_transition_without_traceback(make_node, spin_until, tmp_path, fault):
    """A startup fault (a missing checkpoint; a truncated .onnx, which used to fail configure
    without a log line) fails configure with one error line; the node stays unconfigured."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    parameters = {'weights': str(tmp_path / 'missing.pth')}
    expected = 'missing.pth'
    if fault == 'truncated_onnx':
        from instseg_ros.core.checkpoint import load_model
        from instseg_ros.core.export import export_onnx
        from instseg_ros.ros.model_loading import SHIPPED_WEIGHTS
        from instseg_ros.synth.scene import CLASS_NAMES
        model, cfg = load_model(SHIPPED_WEIGHTS)
        export_onnx(model, cfg, tmp_path / 'cut.onnx', CLASS_NAMES)
        data = (tmp_path / 'cut.onnx').read_bytes()
        (tmp_path / 'cut.onnx').write_bytes(data[:len(data) // 3])
        parameters = {'weights': str(tmp_path / 'cut.onnx'), 'backend': 'onnxruntime'}
        expected = 'cut.onnx'
    log = tmp_path / 'lifecycle_bad.log'
    proc = start(node_command(module='instseg_ros.ros.lifecycle_node', namespace='/lcbad',
                              params_file=PARAMS_FILE, parameters=parameters), log)
    try:
        node = make_node('lifecycle_bad_client')
        change = node.create_client(ChangeState, '/lcbad/yolact/change_state')
        get_state = node.create_client(GetState, '/lcbad/yolact/get_state')
        result = call(node, spin_until, change, ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        assert not result.success
        assert call(node, spin_until, get_state,
                    GetState.Request()).current_state.id == State.PRIMARY_STATE_UNCONFIGURED
        text = log.read_text()
        errors = [line for line in text.splitlines() if 'ERROR' in line]
        assert len(errors) == 1 and 'configure failed' in errors[0] and expected in errors[0], text
        assert 'Traceback' not in text
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def test_every_invalid_transition_is_refused_and_the_node_lives(make_node, spin_until, tmp_path):
    """From each primary state, every transition id of lifecycle_msgs/Transition that the state
    does not offer (and an unknown id and label) gets success false; the state stays, the node
    lives, the refusals are logged without a traceback and throttled."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
    log = tmp_path / 'lifecycle_invalid.log'
    proc = start(node_command(module='instseg_ros.ros.lifecycle_node', namespace='/lcinv',
                              params_file=PARAMS_FILE), log)
    all_ids = sorted({v for k, v in vars(Transition).items() if k.startswith('TRANSITION_')} | {99})
    try:
        node = make_node('lifecycle_invalid_client')
        change = node.create_client(ChangeState, '/lcinv/yolact/change_state')
        get_state = node.create_client(GetState, '/lcinv/yolact/get_state')
        offered = node.create_client(GetAvailableTransitions, '/lcinv/yolact/get_available_transitions')

        def state():
            return call(node, spin_until, get_state, GetState.Request()).current_state.id

        def transition(transition_id=0, label=''):
            return call(node, spin_until, change, ChangeState.Request(
                transition=Transition(id=transition_id, label=label))).success

        refused = 0
        for primary, step in ((State.PRIMARY_STATE_UNCONFIGURED, Transition.TRANSITION_CONFIGURE),
                              (State.PRIMARY_STATE_INACTIVE, Transition.TRANSITION_ACTIVATE),
                              (State.PRIMARY_STATE_ACTIVE, Transition.TRANSITION_ACTIVE_SHUTDOWN),
                              (State.PRIMARY_STATE_FINALIZED, None)):
            assert state() == primary, log.read_text()[-2000:]
            valid = {t.transition.id for t in call(node, spin_until, offered,
                                                   GetAvailableTransitions.Request()).available_transitions}
            assert (step in valid) if step is not None else not valid
            invalid = [i for i in all_ids if i not in valid]
            for transition_id in invalid:
                assert not transition(transition_id), f'id {transition_id} accepted in {primary}'
                assert state() == primary, f'id {transition_id} changed state {primary}'
            assert not transition(label='bogus')
            refused += len(invalid) + 1
            assert proc.poll() is None, log.read_text()[-3000:]
            if step is not None:
                assert transition(step), log.read_text()[-2000:]
        text = log.read_text()
        assert refused > 60
        assert 'Traceback' not in text and 'RCLError' not in text, text[-3000:]
        assert "transition id 0 refused: not available in state 'unconfigured'; available: configure (1)" in text, text[-3000:]
        assert 1 <= text.count('refused') < refused / 4, text[-3000:]     # throttled
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
