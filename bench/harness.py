"""Shared benchmark harness: machine description, load average before/after, interleaved timing, JSON.

Every comparison runs in one process and one session, interleaved (round r runs configuration A, B,
C, ... once each), so a change of machine load hits all configurations alike; results are medians
per configuration and ratios to a named reference. The JSON records the command, the date, the
machine (CPU model, flags that matter, cores, memory), library versions and the load averages.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

CPU_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile', 'avx512_vnni', 'avx512_fp16')


def _cpuinfo() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name') and ':' in line:
                model = line.split(':', 1)[1].strip()
            elif line.startswith('flags') and ':' in line:
                flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return {'cpu': model, 'cpu_flags': sorted(f for f in CPU_FLAGS if f in flags)}


def machine() -> dict:
    """CPU, cores, memory, Python and the versions of the libraries that set the figures."""
    info = {**_cpuinfo(), 'cores': os.cpu_count(), 'python': platform.python_version(),
            'platform': platform.platform()}
    try:
        pages, size = os.sysconf('SC_PHYS_PAGES'), os.sysconf('SC_PAGE_SIZE')
        info['memory_gib'] = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    for name in ('torch', 'torchvision', 'onnxruntime', 'openvino', 'onnx'):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, '__version__', '?')
    try:
        import torch
        info['cuda'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info['torch_threads'] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def configs_for(device: str, configs: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The 'backend/precision' configurations of ``configs`` for ``device``'s type; on CUDA without
    onnxruntime's CUDA provider (onnxruntime-gpu) the onnxruntime ones are left out, since they would
    run on the CPU under a GPU label."""
    kind = device.split(':')[0]
    chosen = configs[kind]
    if kind == 'cuda':
        try:
            import onnxruntime
            has_gpu_provider = 'CUDAExecutionProvider' in onnxruntime.get_available_providers()
        except ImportError:
            has_gpu_provider = False
        if not has_gpu_provider:
            chosen = tuple(c for c in chosen if not c.startswith('onnxruntime'))
    return chosen


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def interleaved(runners: Mapping[str, Callable[[], dict]], rounds: int, warmup: int = 1,
                progress: bool = True, pause_s: float = 0.2) -> dict[str, list[dict]]:
    """Call every runner once per round, in order, ``warmup + rounds`` times; keep the timed rounds.

    A runner returns a dict of stage -> milliseconds (and optionally other numbers). ``pause_s``
    between runners lets the previous runtime's worker threads (OpenMP, TBB, ONNX Runtime) go idle
    before the next one is timed.
    """
    samples: dict[str, list[dict]] = {name: [] for name in runners}
    for r in range(warmup + rounds):
        for name, run in runners.items():
            time.sleep(pause_s)
            result = run()
            if r >= warmup:
                samples[name].append(result)
        if progress:
            print(f'  round {r + 1}/{warmup + rounds} done', file=sys.stderr, flush=True)
    return samples


def medians(samples: list[dict]) -> dict:
    """Median of every numeric key over the samples."""
    keys = [k for k, v in samples[0].items() if isinstance(v, (int, float))]
    return {k: statistics.median(s[k] for s in samples) for k in keys}


class Session:
    """Collects the context of one benchmark run and writes the JSON."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_before = load_average()
        self.command = ' '.join(['python'] + ([sys.argv[0]] + list(argv) if argv is not None else sys.argv))
        self._t0 = time.perf_counter()

    def report(self, **results) -> dict:
        return {'command': self.command, 'date_utc': self.started.isoformat(timespec='seconds'),
                'wall_s': round(time.perf_counter() - self._t0, 1), 'machine': machine(),
                'load_average_before': self.load_before, 'load_average_after': load_average(),
                'load_note': 'load average (1, 5, 15 min) of the whole machine; with other jobs running, '
                             'compare the ratios of one run, not absolute times across runs',
                **results}

    @staticmethod
    def write(report: dict, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
