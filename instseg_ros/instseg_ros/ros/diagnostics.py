"""The node's /diagnostics status: rates, counters, per-stage times, device."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

STAGES = ('decode', 'preprocess', 'forward', 'postprocess', 'encode', 'depth', 'publish', 'overhead',
          'latency')
COUNTERS = ('received', 'processed', 'dropped', 'bad_input', 'depth_received', 'paired', 'unpaired', 'with_depth',
            'without_depth', 'depth_rejected', 'failed')


def build_diagnostics(stamp, node_name: str, device: str, model: str, input_rate_hz: float,
                      output_rate_hz: float, counters: dict[str, int],
                      stages: dict[str, dict[str, float]],
                      input_qos: dict[str, str] | None = None) -> DiagnosticArray:
    """A DiagnosticArray holding one :func:`build_status`."""
    return DiagnosticArray(header=_header(stamp), status=[build_status(
        node_name, device, model, input_rate_hz, output_rate_hz, counters, stages, input_qos)])


def build_status(node_name: str, device: str, model: str, input_rate_hz: float,
                 output_rate_hz: float, counters: dict[str, int],
                 stages: dict[str, dict[str, float]],
                 input_qos: dict[str, str] | None = None) -> DiagnosticStatus:
    """One DiagnosticStatus named '<node>: inference' (multi-camera: '<node> <camera>: ...').

    Level: OK while frames flow, WARN when no input arrived recently, ERROR when more than half of
    the received frames were bad input. Values: rates [Hz], counters (``frames_<key>`` for each
    key of ``COUNTERS``: received = colour messages that arrived, processed, dropped (replaced by a
    newer frame before the model took them), bad_input, paired / unpaired (colour frames with /
    without a depth image within depth_slop), with_depth / without_depth (frames published with
    / without 3D), depth_rejected (depth refused: geometry or encoding), failed), the reliability
    of each input subscription (``qos_<input>``), and mean/p50/p99 ms of each stage in ``STAGES``
    ('overhead': the node's own work per frame, i.e. everything but the forward pass and depth).
    """
    status = DiagnosticStatus(name=f'{node_name.lstrip("/")}: inference', hardware_id=device)
    received = counters.get('received', 0)
    if received and counters.get('bad_input', 0) * 2 > received:
        status.level, status.message = DiagnosticStatus.ERROR, 'most input frames are unusable'
    elif input_rate_hz <= 0.0:
        status.level, status.message = DiagnosticStatus.WARN, 'no input images'
    else:
        status.level, status.message = DiagnosticStatus.OK, 'running'
    values = [('model', model), ('device', device),
              ('input_rate_hz', f'{input_rate_hz:.2f}'), ('output_rate_hz', f'{output_rate_hz:.2f}')]
    for key in COUNTERS:
        values.append((f'frames_{key}', str(int(counters.get(key, 0)))))
    for name, reliability in (input_qos or {}).items():
        values.append((f'qos_{name.replace(" ", "_").replace("(", "").replace(")", "")}',
                       reliability))
    for stage in STAGES:
        if stage in stages:
            for statistic in ('mean', 'p50', 'p99'):
                values.append((f'{stage}_ms_{statistic}', f'{stages[stage][statistic]:.2f}'))
    if 'instances' in stages:
        values.append(('instances_per_frame', f'{stages["instances"]["mean"]:.2f}'))
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    return status


def _header(stamp):
    from std_msgs.msg import Header
    return Header(stamp=stamp)
