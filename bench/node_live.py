"""Node benchmark against the running node over the middleware: the client, end-to-end latency,
delivery and the 30 Hz overload case (sections 1 and 3 of bench/node.py)."""

from __future__ import annotations

from node_common import *  # noqa: F401,F403 - constants, helpers, environment of the bench
from node_common import Path, np, time  # noqa: F401


class Client:
    """This process's ROS side: image publisher, /instances, /diagnostics, camera_info counter."""

    def __init__(self, context):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        from instseg_msgs.msg import InstanceMaskArray

        self.node = rclpy.create_node('node_bench_client', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.results: list[tuple[int, int, int]] = []  # (stamp ns, receive ns, instances)
        self.diagnostics: list[tuple[int, dict]] = []  # (receive ns, key -> value)
        self.info_stamps: list[int] = []
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                              reliability=ReliabilityPolicy.RELIABLE)
        best_effort = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                                 reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(InstanceMaskArray, INSTANCES_TOPIC, self._on_result,
                                      reliable)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.node.create_subscription(CameraInfo, INFO_TOPIC, self._on_info, best_effort)
        # like a user with RViz open: the node renders the overlay and markers only for subscribers
        self.overlays = self.marker_arrays = 0
        self.node.create_subscription(Image, f'{NAMESPACE}/overlay', self._on_overlay, best_effort)
        self.node.create_subscription(MarkerArray, f'{NAMESPACE}/markers', self._on_markers, best_effort)
        self.pub = self.node.create_publisher(Image, IMAGE_TOPIC, QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def _on_result(self, msg) -> None:
        received = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.results.append((stamp, received, len(msg.instances)))

    def _on_diag(self, msg) -> None:
        received = time.time_ns()
        for status in msg.status:
            if status.name.startswith(NAMESPACE.lstrip('/') + '/yolact'):
                self.diagnostics.append((received, {kv.key: kv.value for kv in status.values}))

    def _on_overlay(self, _msg) -> None:
        self.overlays += 1

    def _on_markers(self, _msg) -> None:
        self.marker_arrays += 1

    def _on_info(self, msg) -> None:
        self.info_stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    def spin_until(self, predicate, timeout_s: float, procs=()) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f'child process {proc.args[:3]} exited with {proc.returncode}')
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.02, max(0.0, deadline - time.monotonic())))

    def fresh_diagnostics(self, after_ns: int, timeout_s: float = 5.0) -> dict | None:
        self.spin_until(lambda: self.diagnostics and self.diagnostics[-1][0] > after_ns, timeout_s)
        return self.diagnostics[-1][1] if self.diagnostics else None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


# ------------------------------------------------------------------------------- 1. e2e
def size_messages(width: int, height: int) -> list:
    """A few bgr8 Image messages of synthetic scenes at this size (stamped when published)."""
    from instseg_ros.ros.conversions import numpy_to_image
    msgs = [numpy_to_image(render_scene(SEED + 100 + i, Camera(width, height)).image_bgr, 'bgr8')
            for i in range(3)]
    for msg in msgs:
        msg.header.frame_id = FRAME_ID
    return msgs


def send_one(client: Client, node_proc, msg, timeout_s: float) -> tuple[float, int] | None:
    """Stamp ``msg`` with the wall clock, publish it, wait for its result.

    Returns (latency ms = receive wall clock - stamp, instances), or None on timeout.
    """
    stamp = time.time_ns()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    client.pub.publish(msg)
    if not client.spin_until(lambda: any(r[0] == stamp for r in client.results[-3:]),
                             timeout_s=timeout_s, procs=(node_proc,)):
        return None
    _, received, count = next(r for r in client.results if r[0] == stamp)
    return (received - stamp) / 1e6, count


def measure_e2e(client: Client, node_proc, settings: dict) -> dict:
    out = {}
    for width, height in SIZES:
        msgs = size_messages(width, height)
        frames = settings['e2e_frames'][width]
        latencies, counts, lost = [], [], 0
        for i in range(settings['e2e_warmup'] + frames):
            got = send_one(client, node_proc, msgs[i % len(msgs)], timeout_s=20.0)
            if got is None:
                lost += 1
                log(f'{width}x{height}: no result for frame {i} within 20 s')
                continue
            if i >= settings['e2e_warmup']:
                latencies.append(got[0])
                counts.append(got[1])
            client.spin_for(settings['gap_s'])  # low rate: the node is idle when the next one comes
        out[f'{width}x{height}'] = {'latency_ms': stats_ms(latencies),
                                    'instances_per_frame': sorted(set(counts)),
                                    'warmup_frames': settings['e2e_warmup'], 'lost_frames': lost}
        if width == 640:  # the node's own per-stage statistics (window: the frames sent so far)
            diag = client.fresh_diagnostics(time.time_ns()) or {}
            out['node_measured_640x480'] = {
                key: float(diag[key]) for key in sorted(diag)
                if key.endswith(('_ms_p50', '_ms_p99', '_ms_mean')) or key == 'instances_per_frame'}
            out['node_measured_640x480']['overlays_received'] = client.overlays
            out['node_measured_640x480']['marker_arrays_received'] = client.marker_arrays
        log(f'e2e {width}x{height}: {out[f"{width}x{height}"]["latency_ms"]}')
    out['node_diagnostics_after'] = client.fresh_diagnostics(time.time_ns())
    return out


def measure_delivery(client: Client, node_proc, settings: dict) -> dict:
    """Low-rate frames to a node with the default input QoS (input_reliability auto, which
    follows this reliable publisher): how many produce a result within probe_timeout_s."""
    out = {}
    for width, height in SIZES:
        msgs = size_messages(width, height)
        delivered = 0
        for i in range(settings['probe_frames']):
            if send_one(client, node_proc, msgs[i % len(msgs)], settings['probe_timeout_s']):
                delivered += 1
                client.spin_for(settings['gap_s'])
        out[f'{width}x{height}'] = {'sent': settings['probe_frames'], 'delivered': delivered}
        log(f'default-QoS delivery {width}x{height}: {delivered}/{settings["probe_frames"]}')
    return out


def endpoint_qos(client: Client, topic: str) -> list[str]:
    """Reliability of the yolact node's subscriptions on ``topic`` (as seen by discovery)."""
    from rclpy.qos import ReliabilityPolicy
    return [ReliabilityPolicy(int(info.qos_profile.reliability)).name.lower()
            for info in client.node.get_subscriptions_info_by_topic(topic)
            if info.node_name == 'yolact']


def start_node(client: Client, command: list[str], log_path: Path, procs: list):
    """Start the yolact node and wait until its image subscription and /instances are matched."""
    proc = start(command, log_path)
    procs.append(proc)
    began = time.monotonic()
    if not client.spin_until(lambda: client.pub.get_subscription_count() > 0
                             and client.node.count_publishers(INSTANCES_TOPIC) > 0,
                             180.0, procs=(proc,)):
        raise RuntimeError('yolact node not discovered:\n' + log_path.read_text()[-2000:])
    startup = round(time.monotonic() - began, 1)
    client.spin_for(1.0)  # let discovery settle in both directions
    return proc, startup


def stop_node(proc, log_path: Path, procs: list) -> int | None:
    code = stop(proc, timeout_s=20.0)
    procs.remove(proc)
    if code != 0:
        log(f'node exit code {code}:\n' + log_path.read_text()[-2000:])
    return code


# --------------------------------------------------------------------------- 3. overload
def overload_frames(settings: dict) -> int:
    """Frames the 30 Hz camera publishes in the overload section (then it stops by itself)."""
    return int(30 * (settings['settle_s'] + settings['overload_s'] + 8))


def measure_overload(client: Client, node_proc, camera_cmd, camera_log, settings: dict,
                     single_p50_ms: float | None, procs: list) -> dict:
    d_before = client.fresh_diagnostics(time.time_ns())
    camera_start = time.time_ns()
    camera = start(camera_cmd, camera_log)
    procs.append(camera)
    if not client.spin_until(lambda: client.info_stamps, 120.0, procs=(node_proc, camera)):
        raise RuntimeError('synthetic camera not publishing:\n' + camera_log.read_text()[-2000:])
    if not client.spin_until(lambda: any(r[0] > camera_start for r in client.results), 60.0,
                             procs=(node_proc, camera)):
        raise RuntimeError('no result for a camera frame')
    client.spin_for(settings['settle_s'])
    d0 = client.fresh_diagnostics(time.time_ns())
    t0 = time.time_ns()
    info0 = len(client.info_stamps)
    client.spin_until(lambda: False, settings['overload_s'], procs=(node_proc, camera))
    t1 = time.time_ns()
    info1 = len(client.info_stamps)
    d1 = client.fresh_diagnostics(t1)
    window = [(r[1], (r[1] - r[0]) / 1e6) for r in client.results
              if t0 <= r[1] <= t1 and r[0] > camera_start]
    latencies = [lat for _, lat in window]
    third = (t1 - t0) / 3
    first = [lat for rx, lat in window if rx < t0 + third]
    last = [lat for rx, lat in window if rx >= t1 - third]

    def counter(diag, key):
        return int(diag.get(f'frames_{key}', 0)) if diag else 0
    delta = {key: counter(d1, key) - counter(d0, key) for key in ('received', 'processed', 'dropped')}
    duration = (t1 - t0) / 1e9
    stats = stats_ms(latencies)
    report = {
        'camera': 'synthetic_camera process, 640x480, rate 30 Hz', 'window_s': round(duration, 2),
        'camera_frames_published': info1 - info0,
        'camera_rate_hz': round((info1 - info0) / duration, 2),
        'results_received': len(latencies),
        'output_rate_hz': round(len(latencies) / duration, 2),
        'latency_ms': stats,
        'latency_first_third_p50_ms': stats_ms(first)['p50'],
        'latency_last_third_p50_ms': stats_ms(last)['p50'],
        'node_counters_delta': delta,
        'dropped_fraction_of_received': (round(delta['dropped'] / delta['received'], 3)
                                         if delta['received'] else None),
        'node_diagnostics_end': d1,
        'single_frame_e2e_p50_ms': single_p50_ms,
        'p50_over_single': round(stats['p50'] / single_p50_ms, 2) if single_p50_ms and stats['p50'] else None,
        'p99_over_single': round(stats['p99'] / single_p50_ms, 2) if single_p50_ms and stats['p99'] else None,
        'notes': ('newest-frame-only: a frame waits at most for the inference in progress, so the '
                  'latency is bounded by ~2x one processing time (expected p50 ~1.5x) and does '
                  'not grow over time; a FIFO queue would grow by (1/output - 1/input rate) per '
                  'frame. Counter deltas are between two /diagnostics messages (1 s period) '
                  'bracketing the window. The camera process competes for the same 2 cores.'),
    }
    # the camera stops by itself after max_frames: frames received (node counter) / sent
    client.spin_until(lambda: 'max_frames reached' in camera_log.read_text(), 120.0,
                      procs=(node_proc,))
    client.spin_for(2.0)
    d_end = client.fresh_diagnostics(time.time_ns())
    sent = overload_frames(settings)
    got = counter(d_end, 'received') - counter(d_before, 'received')
    report['frames_sent'], report['frames_received'] = sent, got
    report['frames_received_of_sent'] = round(got / sent, 3)
    code = stop(camera, timeout_s=10.0)
    procs.remove(camera)
    report['camera_exit_code'] = code
    log(f'overload: {stats}, first/last third p50 {report["latency_first_third_p50_ms"]} / '
        f'{report["latency_last_third_p50_ms"]}, counters {delta}')
    return report


# ------------------------------------------------------------------------------- report
