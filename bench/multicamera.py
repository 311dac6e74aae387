"""Several cameras: one node with one batched model (``cameras``) vs one node per camera.

For 1, 2 and 4 synthetic cameras (640x480, ``--rate`` Hz each, separate processes, different
scenes), in one interleaved run: the node process(es) with the shipped model and default
parameters, a client subscribing every camera's /instances. Per configuration, over
``--seconds``: frames/s per camera (results received), p50 / p99 latency (receive time - image
stamp, same machine), and the memory of the node processes (sum of VmRSS). Ratios one-model /
per-camera nodes at equal camera count. JSON with machine, load average and command.

    python bench/multicamera.py --out bench/results/multicamera.json [--seconds 20] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parents[1] / 'instseg_ros'
sys.path.insert(0, str(PACKAGE_DIR))
sys.path.insert(0, str(PACKAGE_DIR / 'test' / 'ros'))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(10 + os.getpid() % 90))

from launch_args import PARAMS_FILE, node_command, start, stop  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def cameras_cmds(count: int, rate: float, logs: Path):
    return [(f'cam{i}', node_command(module='instseg_ros.ros.synthetic_camera',
                                     node_name='synthetic_camera', namespace=f'/cam{i}',
                                     parameters={'rate': rate, 'width': 640, 'height': 480,
                                                 'pool_size': 5, 'seed': 3000 + 100 * i}),
             logs / f'cam{i}.log') for i in range(count)]


def node_cmds(count: int, shared: bool, logs: Path):
    if shared:
        names = ', '.join(f'cam{i}' for i in range(count))
        return [node_command(params_file=PARAMS_FILE, parameters={'cameras': f'[{names}]'}),
                ]
    return [node_command(node_name=f'yolact_cam{i}', params_file=PARAMS_FILE,
                         remaps={'image': f'/cam{i}/color/image_raw',
                                 'instances': f'/cam{i}/instances'})
            for i in range(count)]


def run_config(count: int, shared: bool, args, logs: Path) -> dict:
    import rclpy
    from instseg_msgs.msg import InstanceMaskArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    tag = f'{"one_model" if shared else "node_per_camera"}_{count}'
    procs = [start(cmd, logs / f'{tag}_node{i}.log') for i, cmd in
             enumerate(node_cmds(count, shared, logs))]
    cams = []
    context = Context()
    rclpy.init(context=context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    node = rclpy.create_node(f'bench_{tag}', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received = {i: [] for i in range(count)}

    def on_result(i):
        def _cb(msg):
            now = time.time()
            received[i].append((now, now - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9))
        return _cb
    for i in range(count):
        node.create_subscription(InstanceMaskArray, f'/cam{i}/instances', on_result(i), 50)
    try:
        ready = lambda: all('Ready' in (logs / f'{tag}_node{i}.log').read_text()
                            for i in range(len(procs)))
        deadline = time.monotonic() + 180
        while not ready() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.2)
        cams = [start(cmd, log) for _, cmd, log in cameras_cmds(count, args.rate, logs)]
        deadline = time.monotonic() + 120
        while not all(received.values()) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        time.sleep(0.5)
        began = time.time()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
        finished = time.time()
        memory = sum(rss_mib(p.pid) for p in procs)
    finally:
        for proc in cams + procs:
            stop(proc)
        node.destroy_node()
        context.try_shutdown()
    per_camera = []
    for i in range(count):
        window = [lat for t, lat in received[i] if began <= t <= finished]
        lat_ms = np.asarray(window) * 1e3
        per_camera.append({
            'frames_per_s': round(len(window) / (finished - began), 2),
            'latency_p50_ms': round(float(np.percentile(lat_ms, 50)), 1) if len(window) else None,
            'latency_p99_ms': round(float(np.percentile(lat_ms, 99)), 1) if len(window) else None})
    result = {'cameras': count, 'one_model': shared, 'node_processes': len(procs),
              'memory_mib': round(memory, 1), 'per_camera': per_camera,
              'mean_frames_per_s_per_camera': round(float(np.mean(
                  [c['frames_per_s'] for c in per_camera])), 2),
              'total_frames_per_s': round(float(sum(c['frames_per_s'] for c in per_camera)), 2)}
    print(f'{tag}: {result["memory_mib"]} MiB, {result["mean_frames_per_s_per_camera"]} frames/s '
          f'per camera, {per_camera}', flush=True)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('bench/results/multicamera.json'))
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=10.0, help='each camera [Hz]')
    parser.add_argument('--counts', type=int, nargs='+', default=[1, 2, 4])
    args = parser.parse_args(argv)
    report = {'command': ' '.join(['python'] + sys.argv), 'date_utc': time.strftime(
        '%Y-%m-%d %H:%M', time.gmtime()),
        'machine': {'cpu_count': os.cpu_count(), 'cpu': platform.processor() or platform.machine(),
                    'platform': platform.platform(), 'device': 'cpu (no GPU on this machine)',
                    'load_average_start': [round(v, 2) for v in os.getloadavg()]},
        'setup': (f'synthetic cameras 640x480 at {args.rate} Hz, reliable; shipped model, default '
                  'parameters (torch default threads in each node process); one node with '
                  '`cameras` vs one node per camera; each configuration measured for '
                  f'{args.seconds} s after every camera got a first result'),
        'runs': []}
    with tempfile.TemporaryDirectory(prefix='bench_multicam_') as tmp:
        for count in args.counts:
            for shared in (True, False):
                if count == 1 and not shared:
                    continue  # the same thing
                report['runs'].append(run_config(count, shared, args, Path(tmp)))
    runs = {(r['cameras'], r['one_model']): r for r in report['runs']}
    report['ratios_one_model_over_per_camera'] = {
        str(count): {'memory': round(runs[(count, True)]['memory_mib']
                                     / runs[(count, False)]['memory_mib'], 3),
                     'frames_per_s_per_camera': round(
                         runs[(count, True)]['mean_frames_per_s_per_camera']
                         / max(runs[(count, False)]['mean_frames_per_s_per_camera'], 1e-9), 3)}
        for count in args.counts if (count, False) in runs}
    report['machine']['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    print(json.dumps(report['ratios_one_model_over_per_camera']), flush=True)
    return report


if __name__ == '__main__':
    main()
