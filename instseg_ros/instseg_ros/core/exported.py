"""Exported-runtime backends of the network part: ONNX Runtime and OpenVINO on an ONNX export.

Both take the normalised float32 batch of :func:`instseg_ros.core.preprocess.preprocess` and return
a ``YolactOutput`` of float32 CPU tensors, so :mod:`instseg_ros.core.postprocess` (one implementation)
does decoding, NMS and masks for every backend. :func:`load_network` accepts the ``.onnx`` file of
``instseg-export`` (with its ``.json`` side-car) or a checkpoint, exported once into a cache.
The mmdetection families use the same runtimes, cache and checks through
:mod:`instseg_ros.core.family_export` (:func:`open_runtime`, :func:`cached_onnx`).

Precision: ONNX Runtime runs fp32. OpenVINO runs fp32 (its CPU plugin would pick bf16 by itself on
bf16 CPUs; the hint is forced to f32) or, with ``precision='bf16'``, its own bf16 inference.
YOLACT++ exports use ONNX ``DeformConv`` (opset 19): ONNX Runtime executes it, OpenVINO 2026.4 has
no conversion rule for it, so ++ models are refused on OpenVINO with that reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import textwrap
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from instseg_ros.core.export import EXPORT_FORMAT, config_from_dict, export_onnx, has_dcn
from instseg_ros.core.models.yolact.yolact import YolactOutput
from instseg_ros.core.precision import Precision

__all__ = ['OnnxRuntimeNetwork', 'OpenVinoNetwork', 'cached_export', 'cached_onnx', 'load_network',
           'open_runtime', 'read_sidecar']

_FP32 = Precision('fp32', torch.float32, False)
_BF16 = Precision('bf16', torch.float32, False)  # runtime-internal bf16; tensors exchanged are fp32
_PACKAGES = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}


def _import(backend: str):
    try:
        return __import__(_PACKAGES[backend])
    except ImportError:
        raise ImportError(f'backend {backend} needs the Python package {_PACKAGES[backend]!r}, which is '
                          f'not installed: pip install {_PACKAGES[backend]} (scripts/requirements.txt '
                          'pins it), or use backend torch') from None


def _to_output(arrays) -> YolactOutput:
    loc, conf, coeffs, proto, priors = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in arrays)
    return YolactOutput(loc=loc, conf=conf, coeffs=coeffs, proto=proto, priors=priors, segm=None)


def _numpy(batch: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(batch.detach().to('cpu', torch.float32).numpy())


class OnnxRuntimeNetwork:
    """ONNX Runtime session(s) on an export; CPU, or CUDA / TensorRT execution providers if asked
    for and installed (``providers``)."""

    backend = 'onnxruntime'

    def __init__(self, onnx_path: str | Path, maskiou_path: str | Path | None = None,
                 providers: list[str] | None = None, num_threads: int | None = None) -> None:
        ort = _import('onnxruntime')
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting threads between frames: on small CPUs shared with other processes (and
        # with torch's own pool in the same process) spinning steals the cores the rest needs
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self.providers = providers or ['CPUExecutionProvider']
        self.session = ort.InferenceSession(str(onnx_path), options, providers=self.providers)
        self.maskiou = (ort.InferenceSession(str(maskiou_path), options, providers=self.providers)
                        if maskiou_path else None)
        self.precision = _FP32
        self.device = torch.device('cpu')

    def run(self, batch: torch.Tensor) -> list[np.ndarray]:
        """float ``[B, 3, H, W]`` -> every graph output (graph order) as a host array."""
        return self.session.run(None, {'image': _numpy(batch)})

    def __call__(self, batch: torch.Tensor) -> YolactOutput:
        """float ``[B, 3, S, S]`` -> ``YolactOutput`` of float32 CPU tensors."""
        return _to_output(self.run(batch))

    def rescore(self, masks_soft: torch.Tensor) -> torch.Tensor:
        """float32 ``[N, 1, Hp, Wp]`` -> float32 ``[N, C-1]`` (YOLACT++ mask-IoU graph)."""
        (iou,) = self.maskiou.run(None, {'masks': _numpy(masks_soft)})
        return torch.from_numpy(iou).to(masks_soft.device)


class OpenVinoNetwork:
    """An OpenVINO compiled model on an export (``device_name`` 'CPU' or 'GPU' for Intel iGPUs)."""

    backend = 'openvino'

    def __init__(self, onnx_path: str | Path, maskiou_path: str | Path | None = None,
                 device_name: str = 'CPU', precision: str = 'fp32', num_threads: int | None = None) -> None:
        ov = _import('openvino')
        core = ov.Core()
        config = {'INFERENCE_PRECISION_HINT': 'bf16' if precision == 'bf16' else 'f32'}
        if device_name == 'CPU':
            config['INFERENCE_NUM_THREADS'] = int(num_threads or torch.get_num_threads())
        self.compiled = core.compile_model(str(onnx_path), device_name, config)
        self.request = self.compiled.create_infer_request()
        self.maskiou = core.compile_model(str(maskiou_path), device_name, config) if maskiou_path else None
        self.precision = _BF16 if precision == 'bf16' else _FP32
        self.device = torch.device('cpu')

    def run(self, batch: torch.Tensor) -> list[np.ndarray]:
        """float ``[B, 3, H, W]`` -> every graph output (graph order) as a host array."""
        results = self.request.infer({'image': _numpy(batch)})
        return [np.asarray(results[port]) for port in self.compiled.outputs]

    def __call__(self, batch: torch.Tensor) -> YolactOutput:
        return _to_output(self.run(batch)[:5])

    def rescore(self, masks_soft: torch.Tensor) -> torch.Tensor:
        result = self.maskiou({'masks': _numpy(masks_soft)})
        return torch.from_numpy(np.asarray(result[self.maskiou.output(0)])).to(masks_soft.device)


def read_sidecar(onnx_path: str | Path) -> dict:
    """The ``.json`` side-car of an export (ValueError when missing or not an instseg_ros export)."""
    sidecar = Path(onnx_path).with_suffix('.json')
    try:
        data = json.loads(sidecar.read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:
        raise ValueError(f'{onnx_path}: cannot read its side-car {sidecar.name} ({exc}); export with '
                         'instseg-export, which writes both') from None
    if not isinstance(data, dict) or data.get('format') != EXPORT_FORMAT:
        found = data.get('format') if isinstance(data, dict) else type(data).__name__
        raise ValueError(f'{sidecar}: not an instseg-export side-car (format {found!r})')
    missing = [key for key in ('config', 'names', 'input', 'outputs') if key not in data]
    if missing:
        raise ValueError(f'{sidecar}: incomplete instseg-export side-car (no {", ".join(missing)}); '
                         'export again with instseg-export')
    return data


def _cache_dir() -> Path:
    root = os.environ.get('INSTSEG_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'instseg_ros')
    return Path(root) / 'onnx'


def cached_onnx(checkpoint: str | Path, key: str, make: Callable[[Path], None], backend: str = '') -> Path:
    """The ONNX export of ``checkpoint`` in ``$INSTSEG_CACHE_DIR`` (default
    ``~/.cache/instseg_ros``)/onnx, keyed by the file's path, size, mtime and ``key``; made on first
    use by ``make(tmp_path)`` (writes ``tmp_path`` and its side-cars), published complete only.
    ValueError (one line) when the cache cannot be written."""
    checkpoint = Path(checkpoint).resolve()
    stat = checkpoint.stat()
    digest = hashlib.sha1(f'{checkpoint}|{stat.st_size}|{stat.st_mtime_ns}|{key}'.encode()).hexdigest()
    out = _cache_dir() / f'{checkpoint.stem}-{digest[:12]}.onnx'
    if out.is_file() and out.with_suffix('.json').is_file():
        return out
    tmp = out.with_name(out.stem + f'.tmp{os.getpid()}.onnx')
    suffixes = ('.onnx', '.json', '.maskiou.onnx')
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        make(tmp)
        for suffix in suffixes:  # publish complete files only
            part = tmp.with_suffix(suffix)
            if part.is_file():
                part.replace(out.with_suffix(suffix))
    except OSError as exc:
        raise ValueError(f'cannot write the ONNX export cache {out.parent} ({exc.strerror or exc}): set '
                         'INSTSEG_CACHE_DIR to a writable folder, or export once with instseg-export '
                         'and pass the .onnx file as weights') from None
    finally:
        for suffix in suffixes:
            with contextlib.suppress(OSError):
                tmp.with_suffix(suffix).unlink(missing_ok=True)
    return out


def cached_export(checkpoint: str | Path, preset: str = 'auto', num_classes: int | None = None) -> Path:
    """The ONNX export of a YOLACT ``checkpoint`` (:func:`cached_onnx`, keyed also by preset and
    classes)."""
    from instseg_ros.core.checkpoint import load_model
    from instseg_ros.core.classes import sidecar_class_names
    from instseg_ros.core.predictor import default_class_names

    def make(tmp: Path) -> None:
        model, cfg = load_model(checkpoint, preset=preset, device='cpu', num_classes=num_classes)
        names = sidecar_class_names(checkpoint) or default_class_names(cfg.num_classes)
        export_onnx(model, cfg, tmp, names, source=str(Path(checkpoint).resolve()))

    return cached_onnx(checkpoint, f'{preset}|{num_classes}', make)


def _graph_shapes(network) -> dict[str, list]:
    """Input and output name -> dims of the loaded graph (int, or None where dynamic)."""
    def dims(shape) -> list:
        return [d if isinstance(d, int) else None for d in shape]

    if isinstance(network, OnnxRuntimeNetwork):
        ports = [*network.session.get_inputs(), *network.session.get_outputs()]
        return {p.name: dims(p.shape) for p in ports}
    ports = [*network.compiled.inputs, *network.compiled.outputs]
    return {p.get_any_name(): [d.get_length() if d.is_static else None for d in p.get_partial_shape()]
            for p in ports}


def check_graph(network, sidecar: dict, onnx_path: Path) -> None:
    """ValueError when the graph's input or outputs contradict the side-car's shapes (the .onnx and
    the .json of two different exports)."""
    expected = {sidecar['input']['name']: sidecar['input']['shape'],
                **{name: shape if name == 'priors' else ['batch', *shape]
                   for name, shape in sidecar['outputs'].items()}}
    got = _graph_shapes(network)
    for name, want in expected.items():
        have = got.get(name)
        fits = have is not None and len(have) == len(want) and all(
            not isinstance(w, int) or h is None or h == w for h, w in zip(have, want))
        if not fits:
            raise ValueError(f"the graph's {name!r} is {have} but its side-car "
                             f'{onnx_path.with_suffix(".json").name} says {want}: the two files come from '
                             'different exports; export again with instseg-export')


def check_onnx_file(onnx_path: Path) -> None:
    """ValueError (one line) when ``onnx_path`` is not a valid ONNX model (truncated, empty, not
    ONNX), checked with the onnx package before a runtime parses it (the runtimes' own errors are
    multi-line C++ texts, and OpenVINO tries every other frontend first, logging their failures)."""
    try:
        import onnx
        onnx.checker.check_model(str(onnx_path))
    except ImportError:
        return  # the runtime's own parse still refuses a bad file
    except Exception as exc:  # noqa: BLE001 - ValidationError, DecodeError, OSError ...
        detail = textwrap.shorten(' '.join(str(exc).split()), width=160, placeholder=' ...')
        raise ValueError(f'not a loadable ONNX model (truncated, empty or another format?): {detail}; '
                         'export it again with instseg-export') from None


def open_runtime(onnx_path: Path, sidecar: dict, backend: str, device: torch.device | str | None = None,
                 precision: str | None = None, half: bool = False, stacklevel: int = 3):
    """An :class:`OnnxRuntimeNetwork` or :class:`OpenVinoNetwork` on a checked export (its side-car
    read). Unsupported requests (a CUDA device without a GPU provider, fp16, bf16 on ONNX Runtime)
    give one ``RuntimeWarning`` and fp32 on the CPU. Raises ImportError when the backend's package is
    missing and ValueError for an export the backend cannot run or whose files disagree."""
    _import(backend)
    device = torch.device(device) if device is not None else None
    maskiou = onnx_path.with_suffix('.maskiou.onnx') if sidecar.get('maskiou_graph') else None
    for graph in (onnx_path, maskiou):
        if graph is not None:
            check_onnx_file(graph)
    name = 'fp16' if half and precision in (None, 'fp32') else (precision or 'fp32')
    offered = ('fp32', 'bf16') if backend == 'openvino' else ('fp32',)
    if name not in offered:
        warnings.warn(f'precision {name} is not offered by backend {backend} (offered: '
                      f'{", ".join(offered)}); running fp32', RuntimeWarning, stacklevel=stacklevel)
        name = 'fp32'
    if backend == 'openvino':  # (YOLACT++'s DeformConv is refused by load_network first)
        network = OpenVinoNetwork(onnx_path, maskiou, precision=name)
    else:
        providers = ['CPUExecutionProvider']
        if device is not None and device.type == 'cuda':
            import onnxruntime as ort
            gpu = [p for p in ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
                   if p in ort.get_available_providers()]
            if not gpu:
                warnings.warn('backend onnxruntime has no CUDA/TensorRT execution provider here; running on '
                              'the CPU', RuntimeWarning, stacklevel=stacklevel)
            providers = gpu + providers
        network = OnnxRuntimeNetwork(onnx_path, maskiou, providers=providers)
    check_graph(network, sidecar, onnx_path)
    return network


def load_network(path: str | Path, backend: str, preset: str = 'auto', device: torch.device | None = None,
                 precision: str | None = None, half: bool = False, num_classes: int | None = None):
    """(network, ModelConfig, class names) of a YOLACT export for ``backend`` on ``path`` (.onnx
    export or checkpoint); see :func:`open_runtime` for warnings and errors."""
    _import(backend)
    path = Path(path)
    onnx_path = path if path.suffix == '.onnx' else cached_export(path, preset, num_classes)
    sidecar = read_sidecar(onnx_path)
    family = sidecar.get('family', 'yolact')
    if family != 'yolact':
        raise ValueError(f'{onnx_path.name} is a {family} export, not a YOLACT one; pass model:=auto '
                         '(the side-car names the family)')
    try:
        cfg = config_from_dict(sidecar['config'])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f'{onnx_path.with_suffix(".json").name}: the side-car\'s config is not an '
                         f'instseg-export config ({type(exc).__name__}: {exc}); export again with '
                         'instseg-export') from None
    if backend == 'openvino' and has_dcn(cfg):
        raise ValueError(f'{onnx_path.name}: {cfg.name} uses deformable convolutions (ONNX DeformConv), '
                         'which OpenVINO cannot convert; use backend onnxruntime or torch')
    network = open_runtime(onnx_path, sidecar, backend, device, precision, half, stacklevel=4)
    return network, cfg, tuple(sidecar['names'])
