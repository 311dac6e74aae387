"""``instseg-bag``: segment a recorded rosbag2 (mcap or sqlite3) into a new bag, without ROS.

Every selected colour frame goes through the node's pipeline (``core.pipeline.FramePipeline``, in
batches) and gets one ``instseg_msgs/msg/InstanceMaskArray`` on ``<output-ns>/instances`` at the
source image's bag timestamp, with the source image's header; optionally ``overlay`` (bgr8) and
``labels`` (16UC1), and a copy of the input topics so the output replays as a whole.

Three threads overlap the work through bounded queues: the reader (bag I/O, depth pairing,
decoding), the model (this, the main thread) and the writer (message packing, CDR, bag I/O).
The output is written into a hidden sibling folder and moved into place once closed, so the output
path never holds a bag without metadata; Ctrl-C (SIGINT) or SIGTERM (``kill``, ``timeout``, a
container stop) closes what was done and says so.

Exit codes: 0 done, 2 bad input or options (one line on stderr), 130 interrupted by SIGINT or
SIGTERM (bag kept).
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

class UsageError(Exception):
    """A user-facing startup error: printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it ends the run exactly as Ctrl-C does."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _interrupt_name(exc: KeyboardInterrupt) -> str:
    return 'SIGTERM' if isinstance(exc, Terminated) else 'SIGINT'


def build_parser() -> argparse.ArgumentParser:
    from instseg_ros.cli_help import DefaultsHelpFormatter
    from instseg_ros.tools.bag_options import add_parameter_options

    parser = argparse.ArgumentParser(
        prog='instseg-bag', formatter_class=DefaultsHelpFormatter,
        description='Segment every colour frame of a rosbag2 (mcap or sqlite3) with the yolact '
                    "node's model and parameters and write the results to a new bag. No ROS "
                    'install needed.')
    parser.add_argument('input', help='input bag: a rosbag2 folder (with metadata.yaml), or one '
                        '.mcap / .db3 file')
    parser.add_argument('output', help='output bag folder (must not exist unless --overwrite)')
    io = parser.add_argument_group('topics and output')
    io.add_argument('--image-topic', default=None, help='colour topic, sensor_msgs/Image or '
                    'CompressedImage (detected) (default: the only colour image topic of the bag; '
                    'depth-encoded images are not colour)')
    io.add_argument('--depth-topic', default=None, help='aligned depth (16UC1 mm / 32FC1 m) for '
                    '3D instances (default: the only 16UC1 / 32FC1 Image topic of the bag, if any)')
    io.add_argument('--no-depth', action='store_true',
                    help='no 3D even when the bag has a depth topic (default: off)')
    io.add_argument('--camera-info-topic', default=None,
                    help='CameraInfo for the depth (default: the only CameraInfo topic, else the '
                         'one next to the depth topic, else next to the image topic)')
    io.add_argument('--output-ns', default='/yolact', help='namespace of the written topics (default: %(default)s)')
    io.add_argument('--overlay', action='store_true',
                    help='also write <ns>/overlay (bgr8) (default: off)')
    io.add_argument('--labels', action='store_true',
                    help='also write <ns>/labels (16UC1 label image, 0 = background) '
                         '(default: off)')
    io.add_argument('--copy-inputs', action='store_true',
                    help='copy every input topic (within --start/--end) into the output bag '
                         '(default: off)')
    io.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                    help='storage format of the output bag (default: %(default)s)')
    io.add_argument('--overwrite', action='store_true',
                    help='replace an existing output (default: off)')
    run = parser.add_argument_group('selection and throughput')
    run.add_argument('--start', type=float, default=None,
                     help='skip frames before this many seconds after the bag start '
                          '(default: from the start)')
    run.add_argument('--end', type=float, default=None,
                     help='stop at this many seconds after the bag start (default: to the end)')
    run.add_argument('--every', type=int, default=1, help='process every N-th colour frame (default: %(default)s)')
    run.add_argument('--batch-size', type=int, default=4, help='frames per forward pass (default: %(default)s)')
    run.add_argument('--queue-size', type=int, default=16,
                     help='frames buffered between reader, model and writer (default: %(default)s)')
    run.add_argument('--max-pixels', type=int, default=64_000_000,
                     help='skip larger images (corrupt headers) (default: %(default)s)')
    run.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None,
                     help='tqdm progress bar (default: when stderr is a terminal)')
    run.add_argument('--summary-json', default=None,
                     help='also write the summary to this file (default: none)')
    params = parser.add_argument_group('parameters')
    params.add_argument('--params-file', default=None,
                        help="the node's params YAML (/**: ros__parameters: ... or node-name "
                             "sections); options given here override it (default: none, the "
                             "node's defaults)")
    params.add_argument('--node-name', default='yolact',
                        help='node-name section of --params-file to apply after /** '
                             '(default: %(default)s)')
    add_parameter_options(parser)
    return parser


def _check_args(args: argparse.Namespace) -> None:
    for name in ('every', 'batch_size', 'queue_size', 'max_pixels'):
        if getattr(args, name) < 1:
            raise UsageError(f'--{name.replace("_", "-")} must be >= 1')
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f'--end ({args.end}) must be after --start ({args.start})')
    if not Path(args.input).exists():
        raise UsageError(f'input bag {args.input!r} does not exist')
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise UsageError(f'output {str(out)!r} exists: pass --overwrite to replace it')
    if out.resolve() == Path(args.input).resolve():
        raise UsageError('output and input are the same path')


class _Logger:
    """What model_loading expects (info); messages go to stderr."""

    def info(self, text: str) -> None:
        print(f'[instseg-bag] {text}', file=sys.stderr, flush=True)

    warning = error = info


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the exit code (0 done, 2 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return _run(args)
    except UsageError as exc:
        print(f'instseg-bag: error: {exc}', file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as exc:
        print(f'instseg-bag: interrupted ({_interrupt_name(exc)}) before any frame was written; '
              'no output created', file=sys.stderr, flush=True)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    # heavy imports after the argument checks: --help and usage errors stay fast
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    from instseg_ros.ros.model_loading import StartupError, load_pipeline
    from instseg_ros.tools.bag_input import InputError, select_topics
    from instseg_ros.tools.bag_options import OptionError, resolve_params
    from instseg_ros.tools.bag_types import make_typestore

    try:
        params = resolve_params(args)
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    try:
        store = make_typestore()
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    reader = _open_reader(Reader, args.input)
    try:
        topics = select_topics(reader, args.image_topic, args.depth_topic, args.camera_info_topic,
                               store=store, auto_depth=not args.no_depth)
        for note in topics.notes:
            _Logger().info(note)
        try:
            pipeline = load_pipeline(params, _Logger())
        except StartupError as exc:
            raise UsageError(_one_line(exc)) from None
        _Logger().info(f'model {model_text(pipeline)}')
        job = BagJob(args, params, reader, store, topics, pipeline)
        return job.run()
    except (InputError, ReaderError) as exc:
        raise UsageError(_one_line(exc)) from None
    finally:
        reader.close()


def model_text(pipeline) -> str:
    """'rtmdet_ins_tiny on cpu (torch fp32), RTMDet-Ins (mmdetection), 80 classes': the model part
    of the node's Ready line."""
    from instseg_ros.core.segmenter import FAMILY_TITLES

    segmenter = pipeline.segmenter
    return (f'{segmenter.name} on {segmenter.device} ({getattr(segmenter, "backend", "torch")} '
            f'{getattr(segmenter, "precision", "fp32")}), '
            f'{FAMILY_TITLES.get(pipeline.family, "unknown family")}, '
            f'{len(pipeline.class_names)} classes')


def _open_reader(reader_type, path: str):
    """An open rosbags Reader of ``path`` (which exists).

    Raises:
        UsageError: not a bag: a folder without metadata.yaml (named, with the bag files it
            holds), a corrupt metadata.yaml or bag file, an unreadable path.
    """
    folder = Path(path)
    if folder.is_dir() and not (folder / 'metadata.yaml').is_file():
        files = sorted(p.name for p in folder.iterdir() if p.suffix in ('.mcap', '.db3'))[:3]
        hint = (f'; it holds {", ".join(files)}: pass one of those files' if files
                else '; it holds no .mcap / .db3 file')
        raise UsageError(f'input {path!r} is not a rosbag2 folder: no metadata.yaml{hint}')
    try:
        reader = reader_type(path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several kinds for a bad bag
        raise UsageError(f'cannot open input bag {path!r}: {_one_line(exc)}') from None
    return reader


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split()) or type(exc).__name__


_DONE = object()
#: per-frame problems (undecodable image, no depth) print one line per kind per this period
PROBLEM_LOG_PERIOD_S = 5.0


class BagJob:
    """One run: reader thread -> model (calling thread) -> writer thread, then the summary."""

    def __init__(self, args, params, reader, store, topics, pipeline):
        from instseg_ros.core.classes import unknown_classes, unknown_classes_text
        from instseg_ros.core.geometry import DepthParams
        from instseg_ros.core.predictor import InferenceParams
        from instseg_ros.core.throttle import KindThrottle
        from instseg_ros.tools.bag_input import DepthOptions, FrameStream, Selection

        self.args, self.params, self.reader, self.store = args, params, reader, store
        self.topics, self.pipeline = topics, pipeline
        names = list(pipeline.class_names)
        unknown = unknown_classes(params.classes, names)
        if unknown:
            raise UsageError(unknown_classes_text(unknown, names))
        class_ids = tuple(names.index(c) for c in params.classes)
        self.inference = InferenceParams(
            score_threshold=params.score_threshold, nms_threshold=params.nms_threshold,
            top_k=params.top_k, max_detections=params.max_detections,
            class_ids=class_ids or None)
        self.depth_params = DepthParams(
            min_depth_m=params.min_depth, max_depth_m=params.max_depth,
            mask_erosion_px=params.mask_erosion, min_points=params.min_depth_points)
        start = reader.start_time
        self.selection = Selection(
            start_ns=None if args.start is None else start + int(args.start * 1e9),
            end_ns=None if args.end is None else start + int(args.end * 1e9), every=args.every)
        self.extra = ([c for c in reader.connections
                       if c not in topics.image + topics.depth + topics.camera_info]
                      if args.copy_inputs else [])
        self.stream = FrameStream(
            reader, store, topics, self.selection,
            DepthOptions(slop_s=params.depth_slop, scale=params.depth_scale or None),
            extra_connections=self.extra,
            on_message=self._on_input if args.copy_inputs else None,
            on_problem=self._problem, max_pixels=args.max_pixels)
        self.frames_q: queue.Queue = queue.Queue(maxsize=args.queue_size)
        self.write_q: queue.Queue = queue.Queue(maxsize=args.queue_size)
        self.stop = threading.Event()
        self.errors: list[tuple[str, BaseException]] = []
        self.frame_ms: list[float] = []
        self.class_counts: dict[str, int] = {}
        self.written = 0
        self.bar = None
        self.throttle = KindThrottle(PROBLEM_LOG_PERIOD_S)
        self.problem_counts: dict[str, int] = {}
        self._problem_lock = threading.Lock()

    # ----------------------------------------------------------------------------- run
    def run(self) -> int:
        from instseg_ros.tools.bag_output import OutputBag

        self.out = OutputBag(Path(self.args.output), self.args.storage, self.store,
                             overwrite=self.args.overwrite)
        self.out_topics = self._output_topics()
        self.opened = threading.Event()
        interrupted: str | None = None  # the signal's name
        began = time.perf_counter()
        reader_thread = threading.Thread(target=self._reader_loop, name='bag_reader', daemon=True)
        writer_thread = threading.Thread(target=self._writer_loop, name='bag_writer', daemon=True)
        self.bar = self._progress()
        previous: dict = {}
        try:
            try:
                writer_thread.start()  # opens the output (sqlite3: one thread per connection)
                self.opened.wait()
                if not self.errors:
                    reader_thread.start()
                    self._model_loop()
            except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (Terminated)
                interrupted = _interrupt_name(exc)
            finally:
                previous = _ignore_interrupts()  # let the bag close and the summary print
                self._close(reader_thread, writer_thread, stop=bool(interrupted or self.errors))
            return self._finish(interrupted, time.perf_counter() - began)
        finally:
            _restore_handlers(previous)

    def _close(self, reader_thread, writer_thread, stop: bool) -> None:
        """Stop the reader (when ``stop``), let the writer write what is queued and close."""
        if stop:
            self.stop.set()
        self._drain(self.frames_q)
        if reader_thread.is_alive():
            reader_thread.join(timeout=30)
        self._put(self.write_q, _DONE, force=True)
        writer_thread.join()  # closes the output
        if self.bar is not None:
            self.bar.close()

    def _output_topics(self) -> dict[str, str]:
        from instseg_ros.tools.bag_types import IMAGE, INSTANCE_MASK_ARRAY

        ns = '/' + self.args.output_ns.strip('/')
        ns = '' if ns == '/' else ns
        topics = {f'{ns}/instances': INSTANCE_MASK_ARRAY}
        if self.args.overlay:
            topics[f'{ns}/overlay'] = IMAGE
        if self.args.labels:
            topics[f'{ns}/labels'] = IMAGE
        clash = [t for t in topics if self.args.copy_inputs and t in self.reader.topics]
        if clash:
            raise UsageError(f'output topic(s) {clash} already in the input bag: change --output-ns')
        return topics

    def _progress(self):
        from tqdm import tqdm

        total = sum(c.msgcount for c in self.topics.image)
        if self.selection.start_ns is not None or self.selection.end_ns is not None:
            total = None
        elif total:
            total = (total + self.args.every - 1) // self.args.every
        return tqdm(total=total, unit='frame', desc='instseg-bag', disable=(
            None if self.args.progress is None else not self.args.progress), file=sys.stderr,
            dynamic_ncols=True, smoothing=0.1)

    def _problem(self, kind: str, text: str) -> None:
        """Report a per-frame problem: counted always, printed at most once per kind every
        PROBLEM_LOG_PERIOD_S seconds (``kind`` is chosen by the code, never input text); the next
        line that gets through says how many were suppressed, and the summary gives the totals."""
        from tqdm import tqdm

        with self._problem_lock:
            self.problem_counts[kind] = self.problem_counts.get(kind, 0) + 1
        suppressed = self.throttle.admit(kind)
        if suppressed is None:
            return
        more = (f' ({suppressed} more like this in the last {PROBLEM_LOG_PERIOD_S:.0f} s)'
                if suppressed else '')
        tqdm.write(f'[instseg-bag] {text}{more}', file=sys.stderr)

    # ----------------------------------------------------------------------------- threads
    def _put(self, q: queue.Queue, item: Any, force: bool = False) -> bool:
        """Put with a stop check every 0.1 s (False when stopped first), or always when force."""
        while True:
            if self.stop.is_set() and not force:
                return False
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if force and self.stop.is_set():
                    self._drain(q) if q is self.frames_q else None

    @staticmethod
    def _drain(q: queue.Queue) -> None:
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass

    def _on_input(self, conn, timestamp: int, raw) -> None:
        self._put(self.write_q, ('raw', conn.id, timestamp, raw))

    def _reader_loop(self) -> None:
        try:
            for frame in self.stream:
                if not self._put(self.frames_q, frame):
                    return
        except Exception as exc:  # noqa: BLE001 - a corrupt bag part: reported, output kept
            self.errors.append(('reader', exc))
        finally:
            self._put(self.frames_q, _DONE, force=not self.stop.is_set())

    def _next_batch(self) -> tuple[list, bool]:
        """Up to batch_size frames (waits for the first); True when the input has ended."""
        batch: list = []
        while len(batch) < self.args.batch_size:
            try:
                item = self.frames_q.get(timeout=0.1 if not batch else 0.0)
            except queue.Empty:
                if batch or self.stop.is_set():
                    return batch, self.stop.is_set()
                continue
            if item is _DONE:
                return batch, True
            batch.append(item)
        return batch, False

    def _model_loop(self) -> None:
        ended = False
        while not ended and not self.stop.is_set():
            batch, ended = self._next_batch()
            if not batch:
                continue
            began = time.perf_counter()
            results = self.pipeline.process_batch([f.image_bgr for f in batch], self.inference,
                                                  min_mask_area=self.params.min_mask_area)
            share_ms = (time.perf_counter() - began) * 1e3 / len(batch)
            for frame, result in zip(batch, results):
                depth_began = time.perf_counter()
                if frame.depth is not None:
                    self._add_depth(frame, result)
                self.frame_ms.append(share_ms + (time.perf_counter() - depth_began) * 1e3)
                if not self._put(self.write_q, ('result', frame, result)):
                    return

    def _add_depth(self, frame, result) -> None:
        try:
            self.pipeline.add_depth(result, frame.depth, self.depth_params)
        except ValueError as exc:
            self.stream.without_depth += 1
            self._problem('depth', f'frame at {frame.timestamp_ns} ns: depth not used: {exc}')

    def _writer_loop(self) -> None:
        """Open the output, write until _DONE, close it (discarded if writing failed)."""
        try:
            self.out.open(self.out_topics,
                          self.reader.connections if self.args.copy_inputs else [])
        except Exception as exc:  # noqa: BLE001 - e.g. no permission: reported, exit 2
            self.errors.append(('writer', exc))
            self.stop.set()
        finally:
            self.opened.set()
        try:
            self._write_items()
        finally:
            self.out.close(keep=not any(kind == 'writer' for kind, _ in self.errors))

    def _write_items(self) -> None:
        from instseg_ros.core.tracking import Tracker
        from instseg_ros.tools.bag_output import pack_outputs

        names = list(self.pipeline.class_names)
        tracker = Tracker(self.params.tracker_params()) if self.params.track_enabled else None
        while True:
            item = self.write_q.get()
            if item is _DONE:
                return
            if any(k == 'writer' for k, _ in self.errors):
                continue  # keep draining so that producers never block
            try:
                if item[0] == 'raw':
                    self.out.write_raw(*item[1:])
                    continue
                _, frame, result = item
                for topic, typename, msg in pack_outputs(self.store, self.out.ns_topics, frame,
                                                         result, names, self.params, tracker):
                    self.out.write(topic, typename, frame.timestamp_ns, msg)
                self.written += 1
                for label in result.labels:
                    name = names[int(label)] if 0 <= int(label) < len(names) else str(int(label))
                    self.class_counts[name] = self.class_counts.get(name, 0) + 1
                if self.bar is not None:
                    self.bar.update(1)
            except Exception as exc:  # noqa: BLE001 - disk full etc.: stop, report
                self.errors.append(('writer', exc))
                self.stop.set()

    # ----------------------------------------------------------------------------- summary
    def _finish(self, interrupted: str | None, wall_s: float) -> int:
        import numpy as np

        times = np.asarray(self.frame_ms, dtype=np.float64)
        summary = {
            'input': str(self.args.input), 'output': str(self.args.output),
            'storage': self.args.storage, 'model': self.pipeline.segmenter.name,
            'family': self.pipeline.family, 'frames': self.written,
            'frames_selected': self.stream.selected, 'skipped_undecodable': self.stream.skipped,
            'frames_without_depth': self.stream.without_depth if self.topics.depth else None,
            'instances': int(sum(self.class_counts.values())),
            'instances_per_class': dict(sorted(self.class_counts.items())),
            'time_per_frame_ms': {'mean': float(times.mean()) if times.size else None,
                                  'p99': float(np.percentile(times, 99)) if times.size else None},
            'batch_size': self.args.batch_size, 'wall_s': wall_s,
            'frames_per_s': self.written / wall_s if wall_s > 0 else None,
            'interrupted': bool(interrupted),
            'problems': dict(sorted(self.problem_counts.items())),
            'errors': [f'{kind}: {_one_line(exc)}' for kind, exc in self.errors]}
        print(_summary_text(summary), flush=True)
        if self.args.summary_json:
            Path(self.args.summary_json).write_text(json.dumps(summary, indent=2) + '\n')
        if self.problem_counts:
            print(f'instseg-bag: {_problems_text(self.problem_counts)}', file=sys.stderr,
                  flush=True)
        for kind, exc in self.errors:
            print(f'instseg-bag: error ({kind}): {_one_line(exc)}', file=sys.stderr, flush=True)
        if interrupted:
            print(f'instseg-bag: interrupted ({interrupted}): {self.written} frames written; '
                  f'{self.args.output} is a complete, closed bag', file=sys.stderr, flush=True)
            return 130
        return 2 if self.errors else 0


def _ignore_interrupts() -> dict:
    """Ignore SIGINT and SIGTERM (main thread only); the previous handlers, to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _problems_text(counts: dict[str, int]) -> str:
    """'205 frame problems: image 200, depth 5 (lines per kind throttled to one every 5 s)'."""
    per_kind = ', '.join(f'{kind} {count}' for kind, count in sorted(counts.items()))
    return (f'{sum(counts.values())} frame problems: {per_kind} (lines per kind throttled to '
            f'one every {PROBLEM_LOG_PERIOD_S:.0f} s)')


def _summary_text(s: dict) -> str:
    per_class = ', '.join(f'{k} {v}' for k, v in s['instances_per_class'].items()) or 'none'
    t = s['time_per_frame_ms']
    timing = (f"mean {t['mean']:.1f} ms, p99 {t['p99']:.1f} ms" if t['mean'] is not None else 'n/a')
    depth = ('' if s['frames_without_depth'] is None
             else f", {s['frames_without_depth']} without depth")
    rate = f"{s['frames_per_s']:.2f}" if s['frames_per_s'] else '0'
    return (f"instseg-bag: {s['frames']} frames -> {s['output']} ({s['storage']}); "
            f"{s['skipped_undecodable']} skipped (undecodable){depth}\n"
            f"  instances: {s['instances']} ({per_class})\n"
            f"  model time per frame: {timing} (batch {s['batch_size']}); "
            f"{rate} frames/s over {s['wall_s']:.1f} s")


if __name__ == '__main__':
    sys.exit(main())
