"""CondInst as a :class:`instseg_ros.core.segmenter.Segmenter`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from instseg_ros.core.models.condinst.checkpoint import load_model
from instseg_ros.core.models.condinst.postprocess import detect, mask_probabilities, mask_taps
from instseg_ros.core.models.condinst.preprocess import preprocess_batch
from instseg_ros.core.ops.dynamic_masks import mask_rois
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.roi_segmenter import MmdetRoiSegmenter

__all__ = ['MMDET_TEST_PARAMS', 'CondInstSegmenter', 'build_segmenter']

#: mmdetection's test_cfg of the CondInst config as InferenceParams (parity runs use these):
#: score_thr 0.05 on class scores before NMS, NMS IoU 0.6, max_per_img 100, no final filter.
MMDET_TEST_PARAMS = InferenceParams(score_threshold=0.0, nms_threshold=0.6, max_detections=100,
                                    conf_threshold=0.05)


class CondInstSegmenter(MmdetRoiSegmenter):
    """CondInst R50 on one device.

    ``InferenceParams`` mapping: ``conf_threshold`` is mmdet's ``score_thr`` (class scores,
    before the centerness factor), ``nms_threshold`` its NMS IoU, ``max_detections`` its
    ``max_per_img``; ``score_threshold`` filters final scores (class x centerness) after NMS;
    ``class_ids`` zero the other classes' scores first; ``class_agnostic`` uses one NMS over all
    classes; ``top_k`` is unused (``cfg.nms_pre`` per level). ``last_timings_ms``: 'preprocess',
    'forward', 'postprocess' of the last call.
    """

    family = 'CondInst'
    _load_model = staticmethod(load_model)

    @classmethod
    def export_traits(cls):
        from instseg_ros.core.models.condinst.export import TRAITS
        return TRAITS

    def _mask_taps(self, grid_hw: tuple[int, int], resized_hw: tuple[int, int], source_hw: tuple[int, int]):
        return self._cached_taps((grid_hw, resized_hw, source_hw), lambda: mask_taps(
            grid_hw, resized_hw, source_hw, self.cfg.mask_out_stride))

    def _decode(self, output, index: int, resized_hw, source_hw, params: InferenceParams) -> RoiDetections:
        det = detect(output, index, resized_hw, source_hw, self.cfg, params)
        probs = mask_probabilities(output.prototypes[index], det, self.cfg)
        taps_y, taps_x = self._mask_taps(tuple(probs.shape[-2:]), resized_hw, source_hw)
        return RoiDetections(
            boxes_xyxy=det.boxes_xyxy.cpu().numpy().reshape(-1, 4).astype(np.float32),
            scores=det.scores.cpu().numpy().astype(np.float32), labels=det.labels.cpu().numpy(),
            rois=mask_rois(probs, taps_y, taps_x, self.cfg.mask_thr, probabilities=True))

    def _preprocess(self, images: Sequence[np.ndarray], color_order: str):
        """Sizes may differ (padded together as mmdet batches)."""
        cfg = self.cfg
        batch = preprocess_batch(images, color_order, cfg.test_scale, cfg.size_divisor, cfg.mean_rgb,
                                 cfg.std_rgb, self.device)
        return batch.images, batch

    def _postprocess(self, output, batch, params: InferenceParams) -> list[RoiDetections]:
        return [self._decode(output, i, resized, source, params)
                for i, (resized, source) in enumerate(zip(batch.resized_hw, batch.source_hw))]


#: ``build_segmenter(weights, preset='auto', device='cpu', half=False, class_names=None, **options)``:
#: the segmenter of an mmdetection 3.x CondInst checkpoint (see :meth:`MmdetRoiSegmenter.build`).
build_segmenter = CondInstSegmenter.build
