"""CondInst as a :class:`instseg_ros.core.segmenter.Segmenter`."""

from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import numpy as np
import torch

from instseg_ros.core.models.condinst.checkpoint import load_model, resolve_class_names
from instseg_ros.core.models.condinst.config import CondInstConfig
from instseg_ros.core.models.condinst.network import CondInst
from instseg_ros.core.models.condinst.postprocess import detect, mask_probabilities, mask_taps
from instseg_ros.core.models.condinst.preprocess import preprocess_batch
from instseg_ros.core.ops.dynamic_masks import mask_rois
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.roi_segmenter import RoiSegmenterMixin

__all__ = ['MMDET_TEST_PARAMS', 'CondInstSegmenter', 'build_segmenter']

#: mmdetection's test_cfg of the CondInst config as InferenceParams (parity runs use these):
#: score_thr 0.05 on class scores before NMS, NMS IoU 0.6, max_per_img 100, no final filter.
MMDET_TEST_PARAMS = InferenceParams(score_threshold=0.0, nms_threshold=0.6, max_detections=100,
                                    conf_threshold=0.05)


class CondInstSegmenter(RoiSegmenterMixin):
    """CondInst R50 on one device.

    ``InferenceParams`` mapping: ``conf_threshold`` is mmdet's ``score_thr`` (class scores,
    before the centerness factor), ``nms_threshold`` its NMS IoU, ``max_detections`` its
    ``max_per_img``; ``score_threshold`` filters final scores (class x centerness) after NMS;
    ``class_ids`` zero the other classes' scores first; ``class_agnostic`` uses one NMS over all
    classes; ``top_k`` is unused (``cfg.nms_pre`` per level). ``last_timings_ms``: 'preprocess',
    'forward', 'postprocess' of the last call.
    """

    backend = 'torch'

    def __init__(self, model: CondInst, cfg: CondInstConfig, device: torch.device | str = 'cpu',
                 half: bool = False, class_names: Sequence[str] = ()) -> None:
        from instseg_ros.core.predictor import resolve_device

        self.device = resolve_device(device)
        if half and self.device.type != 'cuda':
            warnings.warn('half precision is only used on CUDA; running float32 on the CPU',
                          RuntimeWarning, stacklevel=2)
            half = False
        self.half = bool(half)
        self.cfg = cfg
        self.model = model.to(self.device).eval()
        self.class_names: tuple[str, ...] = tuple(class_names) or tuple(
            f'class_{i}' for i in range(cfg.num_classes))
        self.last_timings_ms: dict[str, float] = {}
        self._taps: dict[tuple, tuple] = {}  # (grid, resized, source sizes) -> taps; a few camera sizes

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def precision(self) -> str:
        return 'fp16' if self.half else 'fp32'

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, preset: str = 'auto',
                        device: torch.device | str = 'cpu', half: bool = False,
                        class_names: Sequence[str] | None = None) -> 'CondInstSegmenter':
        """Load an mmdetection 3.x checkpoint (CheckpointError, one line, when it does not fit)."""
        model, cfg, meta = load_model(path, preset)
        names = resolve_class_names(str(path), cfg.num_classes, meta, class_names)
        return cls(model, cfg, device=device, half=half, class_names=names)

    def _mask_taps(self, grid_hw: tuple[int, int], resized_hw: tuple[int, int], source_hw: tuple[int, int]):
        key = (grid_hw, resized_hw, source_hw)
        if key not in self._taps:
            if len(self._taps) >= 16:
                self._taps.clear()
            self._taps[key] = mask_taps(grid_hw, resized_hw, source_hw, self.cfg.mask_out_stride)
        return self._taps[key]

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _decode(self, output, index: int, resized_hw, source_hw, params: InferenceParams) -> RoiDetections:
        det = detect(output, index, resized_hw, source_hw, self.cfg, params)
        probs = mask_probabilities(output.prototypes[index], det, self.cfg)
        taps_y, taps_x = self._mask_taps(tuple(probs.shape[-2:]), resized_hw, source_hw)
        return RoiDetections(
            boxes_xyxy=det.boxes_xyxy.cpu().numpy().reshape(-1, 4).astype(np.float32),
            scores=det.scores.cpu().numpy().astype(np.float32), labels=det.labels.cpu().numpy(),
            rois=mask_rois(probs, taps_y, taps_x, self.cfg.mask_thr, probabilities=True))

    @torch.inference_mode()
    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """Detections of each uint8 ``[H, W, 3]`` image (one forward pass; sizes may differ),
        masks as tight ROIs on the host. ValueError for a bad image or ``color_order``."""
        if len(images) == 0:
            return []
        params = params or InferenceParams()
        cfg = self.cfg
        start = time.perf_counter()
        batch = preprocess_batch(images, color_order, cfg.test_scale, cfg.size_divisor, cfg.mean_rgb,
                                 cfg.std_rgb, self.device)
        self._sync()
        preprocessed = time.perf_counter()
        with torch.autocast('cuda', dtype=torch.float16, enabled=self.half):
            output = self.model(batch.images)
        self._sync()
        forwarded = time.perf_counter()
        results = [self._decode(output, i, resized, source, params)
                   for i, (resized, source) in enumerate(zip(batch.resized_hw, batch.source_hw))]
        self._sync()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3,
                                'postprocess': (time.perf_counter() - forwarded) * 1e3}
        return results

def build_segmenter(weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
                    half: bool = False, class_names: Sequence[str] | None = None,
                    **options) -> CondInstSegmenter:
    """The segmenter of an mmdetection 3.x CondInst checkpoint. ``options``: ``backend`` must be
    None or 'torch' (ValueError otherwise); other options the node passes every family are
    ignored. Raises CheckpointError (one line) for a file that does not fit."""
    backend = options.get('backend') or 'torch'
    if backend != 'torch':
        raise ValueError(f'CondInst runs on the torch backend only, not {backend!r}')
    return CondInstSegmenter.from_checkpoint(weights, preset=preset, device=device, half=half,
                                             class_names=class_names)
