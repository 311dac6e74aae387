"""RTMDet-Ins as a :class:`instseg_ros.core.segmenter.Segmenter`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from instseg_ros.core.models.rtmdet.checkpoint import load_model
from instseg_ros.core.models.rtmdet.postprocess import detect, mask_logits, mask_taps, preprocess
from instseg_ros.core.ops.dynamic_masks import mask_rois
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.roi_segmenter import MmdetRoiSegmenter

#: mmdetection's test_cfg of the RTMDet-Ins configs as InferenceParams (parity runs use these).
MMDET_TEST_PARAMS = InferenceParams(score_threshold=0.05, nms_threshold=0.6, max_detections=100,
                                    conf_threshold=0.05)


class RtmdetInsSegmenter(MmdetRoiSegmenter):
    """RTMDet-Ins (tiny / s / m) on one device.

    ``InferenceParams`` mapping: ``conf_threshold`` is mmdet's ``score_thr`` (candidates before
    NMS), ``nms_threshold`` its NMS IoU, ``max_detections`` its ``max_per_img``; ``score_threshold``
    filters after NMS; ``class_ids`` zero the other classes' scores before candidates are chosen;
    ``class_agnostic`` uses one NMS over all classes; ``top_k`` is unused (``cfg.nms_pre`` per
    level). ``last_timings_ms``: 'preprocess', 'forward', 'postprocess' of the last call.
    """

    family = 'RTMDet-Ins'
    _load_model = staticmethod(load_model)

    @classmethod
    def export_traits(cls):
        from instseg_ros.core.models.rtmdet.export import TRAITS
        return TRAITS

    def _mask_taps(self, grid_hw: tuple[int, int], geometry):
        return self._cached_taps((grid_hw, geometry), lambda: mask_taps(
            grid_hw, self.cfg.strides[0], self.cfg.input_size, geometry))

    @staticmethod
    def _as_bgr(image: np.ndarray, color_order: str) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}')
        if color_order not in ('bgr', 'rgb'):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        return image if color_order == 'bgr' else image[:, :, ::-1]

    def _preprocess(self, images: Sequence[np.ndarray], color_order: str):
        return preprocess([self._as_bgr(i, color_order) for i in images], self.cfg, self.device)

    def _postprocess(self, output, geometries, params: InferenceParams) -> list[RoiDetections]:
        results = []
        for index, geometry in enumerate(geometries):
            det = detect(output, index, geometry, self.cfg, params)
            logits = mask_logits(output.prototypes[index], det, self.cfg)
            taps_y, taps_x = self._mask_taps(tuple(logits.shape[-2:]), geometry)
            results.append(RoiDetections(
                boxes_xyxy=det.boxes_xyxy.cpu().numpy().reshape(-1, 4), scores=det.scores.cpu().numpy(),
                labels=det.labels.cpu().numpy(),
                rois=mask_rois(logits, taps_y, taps_x, self.cfg.mask_threshold)))
        return results


#: ``build_segmenter(weights, preset='auto', device='cpu', half=False, class_names=None, **options)``:
#: the segmenter of an mmdetection 3.x RTMDet-Ins checkpoint (see :meth:`MmdetRoiSegmenter.build`).
build_segmenter = RtmdetInsSegmenter.build
