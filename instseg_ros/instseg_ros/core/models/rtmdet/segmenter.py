"""RTMDet-Ins as a :class:`instseg_ros.core.segmenter.Segmenter`."""

from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import numpy as np
import torch

from instseg_ros.core.models.rtmdet.checkpoint import load_model, resolve_class_names
from instseg_ros.core.models.rtmdet.config import RtmdetInsConfig
from instseg_ros.core.models.rtmdet.model import RTMDetIns
from instseg_ros.core.models.rtmdet.postprocess import detect, mask_logits, mask_taps, preprocess
from instseg_ros.core.ops.dynamic_masks import mask_rois
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.roi_segmenter import RoiSegmenterMixin

#: mmdetection's test_cfg of the RTMDet-Ins configs as InferenceParams (parity runs use these).
MMDET_TEST_PARAMS = InferenceParams(score_threshold=0.05, nms_threshold=0.6, max_detections=100,
                                    conf_threshold=0.05)


class RtmdetInsSegmenter(RoiSegmenterMixin):
    """RTMDet-Ins (tiny / s / m) on one device.

    ``InferenceParams`` mapping: ``conf_threshold`` is mmdet's ``score_thr`` (candidates before
    NMS), ``nms_threshold`` its NMS IoU, ``max_detections`` its ``max_per_img``; ``score_threshold``
    filters after NMS; ``class_ids`` zero the other classes' scores before candidates are chosen;
    ``class_agnostic`` uses one NMS over all classes; ``top_k`` is unused (``cfg.nms_pre`` per
    level). ``last_timings_ms``: 'preprocess', 'forward', 'postprocess' of the last call.
    """

    backend = 'torch'

    def __init__(self, model: RTMDetIns, cfg: RtmdetInsConfig, device: torch.device | str = 'cpu',
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
        self._taps: dict[tuple, tuple] = {}  # (grid size, geometry) -> mask taps; a few camera sizes

    def _mask_taps(self, grid_hw: tuple[int, int], geometry):
        key = (grid_hw, geometry)
        if key not in self._taps:
            if len(self._taps) >= 16:
                self._taps.clear()
            self._taps[key] = mask_taps(grid_hw, self.cfg.strides[0], self.cfg.input_size, geometry)
        return self._taps[key]

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def precision(self) -> str:
        return 'fp16' if self.half else 'fp32'

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, preset: str = 'auto',
                        device: torch.device | str = 'cpu', half: bool = False,
                        class_names: Sequence[str] | None = None) -> 'RtmdetInsSegmenter':
        model, cfg, meta = load_model(path, preset)
        names = resolve_class_names(str(path), cfg.num_classes, meta, class_names)
        return cls(model, cfg, device=device, half=half, class_names=names)

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    @staticmethod
    def _as_bgr(image: np.ndarray, color_order: str) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}')
        if color_order not in ('bgr', 'rgb'):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        return image if color_order == 'bgr' else image[:, :, ::-1]

    @torch.inference_mode()
    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """Detections of each uint8 ``[H, W, 3]`` image (one forward pass), masks as tight ROIs."""
        if len(images) == 0:
            return []
        params = params or InferenceParams()
        start = time.perf_counter()
        batch, geometries = preprocess([self._as_bgr(i, color_order) for i in images], self.cfg, self.device)
        self._sync()
        preprocessed = time.perf_counter()
        with torch.autocast('cuda', dtype=torch.float16, enabled=self.half):
            output = self.model(batch)
        self._sync()
        forwarded = time.perf_counter()
        results = []
        for index, geometry in enumerate(geometries):
            det = detect(output, index, geometry, self.cfg, params)
            logits = mask_logits(output.prototypes[index], det, self.cfg)
            taps_y, taps_x = self._mask_taps(tuple(logits.shape[-2:]), geometry)
            results.append(RoiDetections(
                boxes_xyxy=det.boxes_xyxy.cpu().numpy().reshape(-1, 4), scores=det.scores.cpu().numpy(),
                labels=det.labels.cpu().numpy(),
                rois=mask_rois(logits, taps_y, taps_x, self.cfg.mask_threshold)))
        self._sync()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3,
                                'postprocess': (time.perf_counter() - forwarded) * 1e3}
        return results


def build_segmenter(weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
                    half: bool = False, class_names: Sequence[str] | None = None,
                    **options) -> RtmdetInsSegmenter:
    """The segmenter of an mmdetection 3.x RTMDet-Ins checkpoint. ``options``: ``backend`` must be
    None or 'torch' (ValueError otherwise); other options the node passes every family are
    ignored. Raises CheckpointError (one line) for a file that does not fit."""
    backend = options.get('backend') or 'torch'
    if backend != 'torch':
        raise ValueError(f"RTMDet-Ins runs on the torch backend only, not {backend!r}")
    return RtmdetInsSegmenter.from_checkpoint(weights, preset=preset, device=device, half=half,
                                              class_names=class_names)
