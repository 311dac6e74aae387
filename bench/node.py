"""Benchmark of the yolact node: end-to-end latency, host-side overhead, overload, message size, 3D.

Usage:  python bench/node.py [--out bench/results/node.json] [--quick]

Sections (all on this machine, CPU only, this checkout's sources):
1. ``e2e``: stamp -> InstanceMaskArray latency. The yolact node runs as its own process, started
   with the launch file's arguments (``--ros-args -r __node:=yolact --params-file config/yolact.yaml
   -p ... -r image:=...``); this process publishes one image at a time (stamped with the wall clock
   just before ``publish``), waits for its result and takes ``receive wall clock - stamp``.
   640x480 and 1280x720, same node, fixed model (yolact_small, random weights with seed 0 and the
   positive mask biases of test_node.py, so every frame has ``max_detections`` = 20 instances).
2. ``overhead``: everything the node does per frame except the forward pass, in this process
   (no middleware), 640x480, exactly 20 instances: Image -> bgr8, predictor preprocess and
   postprocess (masks straight to ROIs), instances_to_msg, overlay (draw + numpy_to_image),
   markers. Twice: the random-weight model above (every prior is an NMS candidate, small masks)
   and, as ``overhead_shipped_model``, the shipped model on a 20-object scene (object-sized masks).
3. ``overload``: the synthetic_camera process publishes 640x480 at 30 Hz (the model is much slower);
   stamp -> result latency over a window, dropped frames from the node's /diagnostics counters,
   latency in the first vs last third of the window, against the single-frame latency of (1).
4. ``message_size``: serialized /instances (ROI crops) vs the same with a full-frame mono8 mask
   per instance.
5. ``geometry``: depth projection of 20 instances (bench/geometry.py ``bench_projection``).

Every child process runs in its own session and is stopped with SIGINT to its group (SIGKILL
after a timeout), also when the benchmark fails or is interrupted. DDS stays on this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST; ROS_DOMAIN_ID from the environment, else from the pid).
"""

from __future__ import annotations

from node_common import *  # noqa: F401,F403 - constants, helpers, environment of the bench
from node_common import (Path, argparse, json, machine_info, os, signal, sys, tempfile,  # noqa: F401
                         time, torch, cv2)
from node_host import load_geometry_bench, measure_overhead, message_sizes  # noqa: E402
from node_live import (Client, endpoint_qos, measure_delivery, measure_e2e,  # noqa: E402
                       measure_overload, overload_frames, start_node, stop_node)


def markdown(report: dict) -> str:
    lines = ['| measurement | value |', '|---|---|']
    e2e = report.get('e2e', {})
    for size in ('640x480', '1280x720'):
        if size in e2e:
            lat = e2e[size]['latency_ms']
            lines.append(f'| e2e latency {size} (n={lat["n"]}), p50 / p99 / mean ms | '
                         f'{fmt(lat["p50"])} / {fmt(lat["p99"])} / {fmt(lat["mean"])} |')
    for key, label in (('overhead', 'random weights'), ('overhead_shipped_model', 'shipped model')):
        ov = report.get(key)
        if not ov:
            continue
        for stage, ms in ov['stages_median_ms'].items():
            lines.append(f'| overhead 640x480, {ov["instances"]} inst, {label}: {stage} ms | {fmt(ms, 2)} |')
        lines.append(f'| **overhead sum, {label}, median ROI {ov["mask_roi_pixels_median"]} px '
                     f'(target < {ov["target_ms"]:.0f} ms)** | '
                     f'**{fmt(ov["sum_ms"], 2)}** ({"met" if ov["meets_target"] else "NOT met"}) |')
    measured = e2e.get('node_measured_640x480')
    if measured and 'overhead_ms_p50' in measured:
        lines.append(f'| node-measured overhead 640x480 (its /diagnostics: all but forward), '
                     f'p50 / p99 ms | {fmt(measured["overhead_ms_p50"], 2)} / '
                     f'{fmt(measured["overhead_ms_p99"], 2)} |')
    ov = report.get('overhead')
    if ov:
        extra = ov['not_in_sum_median_ms']
        lines.append(f'| (not in sum) forward / deserialize image / serialize instances / '
                     f'serialize overlay ms | {fmt(extra["forward_ms"])} / '
                     f'{fmt(extra["deserialize_input_image_ms"], 2)} / '
                     f'{fmt(extra["serialize_instances_ms"], 2)} / '
                     f'{fmt(extra["serialize_overlay_ms"], 2)} |')
    ol = report.get('overload')
    if ol:
        lat = ol['latency_ms']
        lines.append(f'| overload 30 Hz, {ol["window_s"]:.0f} s: p50 / p99 ms (n={lat["n"]}) | '
                     f'{fmt(lat["p50"])} / {fmt(lat["p99"])} |')
        lines.append(f'| overload p50 / p99 vs single-frame p50 ({fmt(ol["single_frame_e2e_p50_ms"])} ms) '
                     f'| {fmt(ol["p50_over_single"], 2)}x / {fmt(ol["p99_over_single"], 2)}x |')
        lines.append(f'| overload p50 first third / last third ms | '
                     f'{fmt(ol["latency_first_third_p50_ms"])} / {fmt(ol["latency_last_third_p50_ms"])} |')
        d = ol['node_counters_delta']
        diag = ol.get('node_diagnostics_end') or {}
        lines.append(f'| overload: camera rate Hz / node forward mean ms (diag, last <=100 frames) | '
                     f'{ol["camera_rate_hz"]} / {diag.get("forward_ms_mean", "-")} |')
        lines.append(f'| overload: frames received by the node / sent by the camera | '
                     f'{ol.get("frames_received")} / {ol.get("frames_sent")} '
                     f'({ol.get("frames_received_of_sent")}) |')
        lines.append(f'| overload frames published / received / processed / dropped | '
                     f'{ol["camera_frames_published"]} / {d["received"]} / {d["processed"]} / '
                     f'{d["dropped"]} |')
    dq = report.get('default_qos', {}).get('delivery_low_rate')
    if dq:
        lines.append('| default input QoS (auto), low rate: delivered / sent | '
                     + ', '.join(f'{k} {v["delivered"]}/{v["sent"]}' for k, v in dq.items()) + ' |')
    sizes = report.get('message_size')
    if sizes:
        for key, s in sizes.items():
            lines.append(f'| /instances size, {key} ({s["instances"]} inst): ROI / full-frame bytes '
                         f'| {s["roi_bytes"]} / {s["full_frame_bytes"]} '
                         f'({s["ratio_full_over_roi"]:.1f}x) |')
    geo = report.get('geometry')
    if geo:
        for key, g in geo.items():
            if key.startswith('geometry_'):
                lines.append(f'| depth projection {key[9:]}, {g["num_instances"]} inst, median ms '
                             f'(target < {PROJECTION_TARGET_MS:.0f} at 640x480) | '
                             f'{fmt(g["project_instances_ms"], 2)}'
                             + (f' (min {fmt(g["project_instances_min_ms"], 2)})'
                                if 'project_instances_min_ms' in g else '') + ' |')
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path,
                        default=Path(__file__).resolve().parent / 'results' / 'node.json')
    parser.add_argument('--quick', action='store_true', help='smoke test (< 2 minutes)')
    parser.add_argument('--torch-threads', type=int, default=1,
                        help='torch intra-op threads of this process and (OMP_NUM_THREADS) of the '
                             'node; 0 = torch default (one per core)')
    parser.add_argument('--shipped-model', action='store_true',
                        help=f'use {SHIPPED_WEIGHTS.name} if it exists (default: random weights)')
    return parser.parse_args(argv)


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = SETTINGS['quick' if args.quick else 'full']
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
        cv2.setNumThreads(args.torch_threads)
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(args.torch_threads)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    began = time.monotonic()
    report = {'command': ' '.join(['python'] + [sys.argv[0]] + (sys.argv[1:] if argv is None
                                                                 else list(argv))),
              'mode': 'quick' if args.quick else 'full', 'settings': settings,
              'machine': machine_info(args)}
    procs: list = []
    context = client = None
    with tempfile.TemporaryDirectory(prefix='bench_node_') as tmp:
        tmp = Path(tmp)
        try:
            weights, description = make_weights(tmp, args.shipped_model)
            report['model'] = {'weights': description, 'preset': 'yolact_small',
                               'classes': list(CLASS_NAMES), 'max_detections': NUM_INSTANCES}

            log('section 2: node overhead (in-process)')
            report['overhead'], result, header = measure_overhead(weights, settings)
            report['overhead']['model'] = description
            log(f'overhead: {report["overhead"]["stages_median_ms"]} sum '
                f'{report["overhead"]["sum_ms"]} ms')
            if SHIPPED_WEIGHTS.is_file():  # object-sized masks: a trained model on a busy scene
                report['overhead_shipped_model'], _, _ = measure_overhead(
                    SHIPPED_WEIGHTS, settings, scene_seed=SEED + 1000, num_objects=(20, 20))
                report['overhead_shipped_model']['model'] = (
                    f'shipped model {SHIPPED_WEIGHTS.name}, synthetic scene with 20 objects')
                log(f'overhead (shipped model, 20 objects): '
                    f'{report["overhead_shipped_model"]["stages_median_ms"]} sum '
                    f'{report["overhead_shipped_model"]["sum_ms"]} ms')
            geometry_bench = load_geometry_bench()
            log('section 4: message size')
            report['message_size'] = message_sizes(result, header, geometry_bench)
            log('section 5: depth projection')
            report['geometry'] = geometry_bench.bench_projection(settings['projection_repeats'])
            report['geometry']['target_ms_640x480'] = PROJECTION_TARGET_MS
            report['geometry']['meets_target'] = (
                report['geometry']['geometry_640x480']['project_instances_ms'] < PROJECTION_TARGET_MS)

            import rclpy
            from rclpy.context import Context
            from rclpy.signals import SignalHandlerOptions
            context = Context()
            rclpy.init(context=context, domain_id=int(os.environ['ROS_DOMAIN_ID']),
                       signal_handler_options=SignalHandlerOptions.NO)
            client = Client(context)
            node_params = {'weights': str(weights), 'device': 'cpu', 'score_threshold': 0.0,
                           'max_detections': NUM_INSTANCES}
            default_cmd = node_command(namespace=NAMESPACE, params_file=PARAMS_FILE,
                                       parameters=node_params, remaps={'image': IMAGE_TOPIC})
            qos_file = tmp / 'reliable_input.yaml'
            qos_file.write_text(RELIABLE_INPUT_YAML.format(topic=IMAGE_TOPIC))
            reliable_cmd = default_cmd + ['--params-file', str(qos_file)]

            log('section 1: end-to-end latency (node with a reliable image subscription)')
            node_log = tmp / 'yolact_reliable.log'
            node_proc, startup = start_node(client, reliable_cmd, node_log, procs)
            report['e2e'] = {
                'node_command': ' '.join(reliable_cmd),
                'node_params_file_extra': qos_file.read_text(),
                'node_image_subscription_reliability': endpoint_qos(client, IMAGE_TOPIC),
                'node_startup_s': startup,
                'published_by': ('this process, one image at a time (stamp = wall clock just '
                                 'before publish), waiting for its result, then '
                                 f'{settings["gap_s"]} s idle'),
                'subscribed_outputs': ('/instances (reliable), overlay and markers (best effort), '
                                       'so the node renders every output'),
                'why_reliable': ('pinned reliable for this section; input_reliability auto '
                                 'picks the same for a reliable publisher (see default_qos)'),
            }
            report['e2e'].update(measure_e2e(client, node_proc, settings))
            report['e2e']['node_exit_code'] = stop_node(node_proc, node_log, procs)

            log('starting the yolact node with the launch-default QoS')
            node_log = tmp / 'yolact_default.log'
            node_proc, startup = start_node(client, default_cmd, node_log, procs)
            report['default_qos'] = {
                'node_command': ' '.join(default_cmd), 'node_startup_s': startup,
                'node_image_subscription_reliability': endpoint_qos(client, IMAGE_TOPIC)}
            log('default-QoS delivery probe')
            report['default_qos']['delivery_low_rate'] = measure_delivery(client, node_proc,
                                                                          settings)
            log('section 3: overload (camera at 30 Hz)')
            camera_cmd = node_command(module='instseg_ros.ros.synthetic_camera',
                                      node_name='synthetic_camera', namespace=CAMERA_NS,
                                      parameters={'rate': 30.0, 'width': 640, 'height': 480,
                                                  'pool_size': settings['camera_pool'],
                                                  'seed': 1000,
                                                  'max_frames': overload_frames(settings)})
            single = report['e2e']['640x480']['latency_ms']['p50']
            report['overload'] = measure_overload(client, node_proc, camera_cmd,
                                                  tmp / 'camera.log', settings, single, procs)
            report['overload']['node'] = 'node with the default input QoS (input_reliability auto)'
            report['overload']['camera_command'] = ' '.join(camera_cmd)
            report['default_qos']['node_exit_code'] = stop_node(node_proc, node_log, procs)
        finally:
            for proc in reversed(procs):
                stop(proc, timeout_s=20.0)
            if client is not None:
                client.close()
            if context is not None:
                context.try_shutdown()
    report['machine']['load_average_end'] = [round(v, 2) for v in os.getloadavg()]
    report['wall_time_s'] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    print(markdown(report))
    print(f'\n{report["mode"]} run, {report["wall_time_s"]} s; load average start '
          f'{report["machine"]["load_average_start"]} end {report["machine"]["load_average_end"]};'
          f' JSON: {args.out}')
    return report


if __name__ == '__main__':
    main()
