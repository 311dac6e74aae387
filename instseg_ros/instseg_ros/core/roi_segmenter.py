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

__all__ = ['HALF_ON_CPU_WARNING', 'MmdetRoiSegmenter', 'RoiSegmenterMixin', 'instances_from_rois']

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


class RoiSegmenterMixin:
    """``predict_rois``, ``predict_batch``, ``__call__`` and ``warmup`` on top of the class's own
    ``predict_rois_batch(images, color_order, params) -> list[RoiDetections]`` (and its
    ``device`` and ``class_names``); ``name`` is ``cfg.name``, ``precision`` follows ``half``
    (both set by :meth:`_set_device`)."""

    def _set_device(self, device: torch.device | str, half: bool, warning: str = HALF_ON_CPU_WARNING) -> None:
        """Set ``device`` (core.predictor.resolve_device: 'auto' | 'cpu' | 'cuda[:N]') and ``half``:
        float16 on CUDA only (elsewhere ``warning`` as a RuntimeWarning at the constructor's caller,
        and float32). Called from the segmenter's ``__init__``."""
        from instseg_ros.core.predictor import resolve_device

        self.device = resolve_device(device)
        if half and self.device.type != 'cuda':
            warnings.warn(warning, RuntimeWarning, stacklevel=3)  # _set_device < __init__ < caller
            half = False
        self.half = bool(half)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def precision(self) -> str:
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

    def __init__(self, model: torch.nn.Module, cfg, device: torch.device | str = 'cpu',
                 half: bool = False, class_names: Sequence[str] = ()) -> None:
        self._set_device(device, half)
        self.cfg = cfg
        self.model = model.to(self.device).eval()
        self.class_names: tuple[str, ...] = tuple(class_names) or tuple(
            f'class_{i}' for i in range(cfg.num_classes))
        self.last_timings_ms: dict[str, float] = {}
        self._taps: dict[tuple, tuple] = {}  # cache key (grid size, geometry) -> mask taps

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, preset: str = 'auto',
                        device: torch.device | str = 'cpu', half: bool = False,
                        class_names: Sequence[str] | None = None):
        """Load an mmdetection 3.x checkpoint (CheckpointError, one line, when it does not fit)."""
        from instseg_ros.core.models.mmdet_checkpoint import resolve_class_names

        model, cfg, meta = cls._load_model(path, preset)
        names = resolve_class_names(str(path), cfg.num_classes, meta, class_names)
        return cls(model, cfg, device=device, half=half, class_names=names)

    @classmethod
    def build(cls, weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
              half: bool = False, class_names: Sequence[str] | None = None, **options):
        """The segmenter of an mmdetection 3.x checkpoint of the family (the family's
        ``build_segmenter``). ``options``: ``backend`` must be None or 'torch' (ValueError
        otherwise); other options the node passes every family are ignored. Raises
        CheckpointError (one line) for a file that does not fit."""
        backend = options.get('backend') or 'torch'
        if backend != 'torch':
            raise ValueError(f'{cls.family} runs on the torch backend only, not {backend!r}')
        return cls.from_checkpoint(weights, preset=preset, device=device, half=half, class_names=class_names)

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
        with torch.autocast('cuda', dtype=torch.float16, enabled=self.half):
            output = self.model(inputs)
        self._sync()
        forwarded = time.perf_counter()
        results = self._postprocess(output, batch, params)
        self._sync()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3,
                                'postprocess': (time.perf_counter() - forwarded) * 1e3}
        return results
