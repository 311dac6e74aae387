"""What every ROI-native segmenter shares: a segmenter implements ``predict_rois_batch`` (one
forward pass, masks straight to tight ROIs) and gets the single-image call, full-frame
``Instances`` for the evaluator, the warm-up, device / half resolution, ``name``, ``precision``
and the CUDA sync from :class:`RoiSegmenterMixin`. :class:`MmdetRoiSegmenter` adds what the
mmdetection families RTMDet-Ins and CondInst share: the constructor, ``from_checkpoint``, the
``build_segmenter`` check and the timed ``predict_rois_batch``.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.structures import Instances

__all__ = ['HALF_ON_CPU_WARNING', 'MmdetRoiSegmenter', 'RoiSegmenterMixin', 'build_on_backend',
           'instances_from_rois']

#: the RuntimeWarning of ``half=True`` on a device other than CUDA
HALF_ON_CPU_WARNING = 'half precision is only used on CUDA; running float32 on the CPU'


def instances_from_rois(det: RoiDetections, image_hw: tuple[int, int], device: torch.device,
                        class_names: Sequence[str] = ()) -> Instances:
    """:class:`Instances` on ``device`` with full-frame bool ``[N, H, W]`` masks pasted from the
    ROIs of ``det`` (an empty ROI gives an empty mask)."""
    height, width = int(image_hw[0]), int(image_hw[1])
    masks = np.zeros((len(det.rois), height, width), dtype=bool)
    for i, roi in enumerate(det.rois):
        if roi is not None:
            x0, y0, crop = roi
            masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return Instances(image_size=(height, width),
                     boxes_xyxy=torch.from_numpy(np.asarray(det.boxes_xyxy, np.float32).reshape(-1, 4)).to(device),
                     scores=torch.from_numpy(np.asarray(det.scores, np.float32)).to(device),
                     labels=torch.from_numpy(np.asarray(det.labels, np.int64)).to(device),
                     masks=torch.from_numpy(masks).to(device), class_names=class_names)


def _float32(output):
    """``output`` (a tensor, or nested tuples / NamedTuples / lists of tensors) in float32."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, tuple) and hasattr(output, '_fields'):
        return type(output)(*(_float32(v) for v in output))
    return type(output)(_float32(v) for v in output)


class RoiSegmenterMixin:
    """``predict_rois``, ``predict_batch``, ``__call__`` and ``warmup`` on top of the class's own
    ``predict_rois_batch(images, color_order, params) -> list[RoiDetections]`` (and its
    ``device`` and ``class_names``); ``name`` is ``cfg.name``, ``precision`` follows ``half``
    (both set by :meth:`_set_device`)."""

    def _set_device(self, device: torch.device | str, half: bool, warning: str = HALF_ON_CPU_WARNING,
                    stacklevel: int = 3) -> None:
        """Set ``device`` (core.predictor.resolve_device: 'auto' | 'cpu' | 'cuda[:N]') and ``half``:
        float16 on CUDA only (elsewhere ``warning`` as a RuntimeWarning at the constructor's caller,
        and float32). Called from the segmenter's ``__init__``."""
        from instseg_ros.core.predictor import resolve_device

        self.device = resolve_device(device)
        if half and self.device.type != 'cuda':
            warnings.warn(warning, RuntimeWarning, stacklevel=stacklevel)  # _set_device < __init__ < caller
            half = False
        self.half = bool(half)

    def _set_network(self, model, device: torch.device | str, half: bool = False,
                     precision: str | None = None) -> None:
        """Set ``model``, ``device``, ``half``, ``backend`` and the precision. ``model``: a torch
        module (moved to ``device``; ``precision`` 'fp32' | 'bf16' | 'fp16' or ``half`` is resolved
        by core.precision, unsupported requests being one RuntimeWarning and fp32) or an exported
        network (core.family_export.ExportedFamilyNetwork: device, backend and precision are
        its own). The torch network runs under autocast in a reduced precision; its outputs are
        cast to float32 before decoding (:meth:`_forward`)."""
        if not isinstance(model, torch.nn.Module):
            self.device, self.half, self.backend = model.device, False, model.backend
            self._precision = model.precision
            self.model = model
            return
        from instseg_ros.core.precision import resolve_precision

        name = precision if precision not in (None, 'fp32') else None
        if name is None:
            self._set_device(device, half, stacklevel=4)
            name = 'fp16' if self.half else 'fp32'
        else:
            from instseg_ros.core.predictor import resolve_device
            self.device = resolve_device(device)
        self._precision = resolve_precision(name, self.device, channels_last=False, stacklevel=4)
        self.half = self._precision.name == 'fp16'
        self.backend = 'torch'
        self.model = model.to(self.device, torch.float32).eval()

    def _forward(self, inputs: torch.Tensor):
        """The network's output for ``inputs``; float32 whatever the precision."""
        precision = getattr(self, '_precision', None)
        reduced = precision is not None and precision.name != 'fp32' and self.backend == 'torch'
        if not reduced:
            return self.model(inputs)
        with torch.autocast(self.device.type, dtype=precision.dtype):
            return _float32(self.model(inputs))

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def precision(self) -> str:
        """'fp32', 'bf16' or 'fp16': the precision the network runs in."""
        precision = getattr(self, '_precision', None)
        if precision is not None:
            return precision.name
        return 'fp16' if self.half else 'fp32'

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def predict_rois(self, image: np.ndarray, color_order: str = 'bgr',
                     params: InferenceParams | None = None) -> RoiDetections:
        """Detections of one uint8 ``[H, W, 3]`` image on the host, masks as tight ROIs."""
        return self.predict_rois_batch([image], color_order, params)[0]

    def predict_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                      params: InferenceParams | None = None) -> list[Instances]:
        """Instances (full-frame bool masks on ``device``) of each image, built from the ROIs."""
        return [instances_from_rois(det, image.shape[:2], self.device, self.class_names)
                for image, det in zip(images, self.predict_rois_batch(images, color_order, params))]

    def __call__(self, image: np.ndarray, color_order: str = 'bgr',
                 params: InferenceParams | None = None) -> Instances:
        """Instances of one image (the evaluator's call)."""
        return self.predict_batch([image], color_order, params)[0]

    def warmup(self, image_size: tuple[int, int] = (480, 640), iterations: int = 1) -> None:
        """Run ``iterations`` predictions on a grey ``image_size`` (height, width) image."""
        image = np.full((int(image_size[0]), int(image_size[1]), 3), 114, dtype=np.uint8)
        for _ in range(int(iterations)):
            self.predict_rois(image)


def build_on_backend(traits, weights, preset: str, device, half: bool, class_names, options: dict,
                     build_torch: Callable[[], object], config_overrides: dict | None = None):
    """``build_torch()`` for backend 'torch' (a .onnx file is refused there), else the family's
    segmenter on the exported runtime (core.family_export.load_exported_segmenter)."""
    backend = options.get('backend') or 'torch'
    if backend == 'torch':
        if str(weights).endswith('.onnx'):
            raise ValueError(f'{os.path.basename(str(weights))} is an ONNX export: pass backend:=onnxruntime '
                             'or backend:=openvino, or the checkpoint for backend torch')
        return build_torch()
    if backend not in ('onnxruntime', 'openvino'):
        raise ValueError(f"unknown backend {backend!r}; use torch, onnxruntime or openvino")
    from instseg_ros.core.family_export import load_exported_segmenter
    return load_exported_segmenter(traits, weights, backend, preset=preset, device=device,
                                   precision=options.get('precision'), half=half, class_names=class_names,
                                   config_overrides=config_overrides)


class MmdetRoiSegmenter(RoiSegmenterMixin):
    """Constructor, ``from_checkpoint`` and ``build`` of an mmdetection family segmenter built from
    ``(model, cfg)`` with ``cfg.name`` and ``cfg.num_classes`` (RTMDet-Ins, CondInst). A subclass
    sets ``_load_model = staticmethod(<family>.checkpoint.load_model)`` (``(path, preset) ->
    (model, cfg, meta)``) and implements ``_preprocess`` and ``_postprocess`` around the timed
    forward pass of :meth:`predict_rois_batch`; :meth:`_cached_taps` keeps the mask taps of a few
    camera sizes. ``last_timings_ms``: 'preprocess', 'forward', 'postprocess' of the last call."""

    backend = 'torch'
    #: the family's name in messages ('RTMDet-Ins', 'CondInst')
    family = ''
    _load_model: Callable = None

    def __init__(self, model, cfg, device: torch.device | str = 'cpu',
                 half: bool = False, class_names: Sequence[str] = (), precision: str | None = None) -> None:
        """``model``: the torch network, or an exported one (see :meth:`_set_network`)."""
        self._set_network(model, device, half, precision)
        self.cfg = cfg
        self.class_names: tuple[str, ...] = tuple(class_names) or tuple(
            f'class_{i}' for i in range(cfg.num_classes))
        self.last_timings_ms: dict[str, float] = {}
        self._taps: dict[tuple, tuple] = {}  # cache key (grid size, geometry) -> mask taps

    @classmethod
    def load(cls, path: str | os.PathLike, preset: str = 'auto', class_names: Sequence[str] | None = None):
        """(model on the CPU, config, class names) of an mmdetection 3.x checkpoint
        (CheckpointError, one line, when it does not fit)."""
        from instseg_ros.core.models.mmdet_checkpoint import resolve_class_names

        model, cfg, meta = cls._load_model(path, preset)
        return model, cfg, resolve_class_names(str(path), cfg.num_classes, meta, class_names)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, preset: str = 'auto',
                        device: torch.device | str = 'cpu', half: bool = False,
                        class_names: Sequence[str] | None = None, precision: str | None = None):
        """Load an mmdetection 3.x checkpoint (CheckpointError, one line, when it does not fit)."""
        model, cfg, names = cls.load(path, preset, class_names)
        return cls(model, cfg, device=device, half=half, class_names=names, precision=precision)

    @classmethod
    def build(cls, weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
              half: bool = False, class_names: Sequence[str] | None = None, **options):
        """The segmenter of an mmdetection 3.x checkpoint of the family (the family's
        ``build_segmenter``). ``options``: ``precision`` ('fp32' | 'bf16' | 'fp16'), ``backend``
        ('torch', or 'onnxruntime' / 'openvino' on the ONNX export: ``weights`` may then be an
        instseg-export .onnx; see core.family_export); other options the node passes every family
        are ignored. Raises CheckpointError (one line) for a file that does not fit, ValueError for
        an export that does not, ImportError for a runtime that is not installed."""
        return build_on_backend(cls.export_traits(), weights, preset, device, half, class_names, options,
                                lambda: cls.from_checkpoint(weights, preset=preset, device=device, half=half,
                                                            class_names=class_names,
                                                            precision=options.get('precision')))

    @classmethod
    def export_traits(cls):
        """The family's core.family_export.ExportTraits."""
        raise NotImplementedError

    def _cached_taps(self, key: tuple, make: Callable[[], tuple]) -> tuple:
        """``make()`` for ``key``, remembered (the cache is emptied when it holds 16)."""
        if key not in self._taps:
            if len(self._taps) >= 16:
                self._taps.clear()
            self._taps[key] = make()
        return self._taps[key]

    def _preprocess(self, images: Sequence[np.ndarray], color_order: str) -> tuple[torch.Tensor, object]:
        """(network input on ``device``, what ``_postprocess`` needs of the batch); ValueError for a
        bad image or ``color_order``."""
        raise NotImplementedError

    def _postprocess(self, output, batch: object, params: InferenceParams) -> list[RoiDetections]:
        """Detections of each image from the network ``output``, masks as tight ROIs on the host."""
        raise NotImplementedError

    @torch.inference_mode()
    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """Detections of each uint8 ``[H, W, 3]`` image (one forward pass), masks as tight ROIs on
        the host. ValueError for a bad image or ``color_order``."""
        if len(images) == 0:
            return []
        params = params or InferenceParams()
        start = time.perf_counter()
        inputs, batch = self._preprocess(images, color_order)
        self._sync()
        preprocessed = time.perf_counter()
        output = self._forward(inputs)
        self._sync()
        forwarded = time.perf_counter()
        results = self._postprocess(output, batch, params)
        self._sync()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3,
                                'postprocess': (time.perf_counter() - forwarded) * 1e3}
        return results
