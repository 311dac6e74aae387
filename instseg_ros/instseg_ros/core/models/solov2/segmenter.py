"""SOLOv2 as a :class:`~instseg_ros.core.segmenter.Segmenter`: uint8 images in, detections with
tight mask ROIs (or full-frame ``Instances``) out.

With ``params=None`` the results are mmdetection's (its ``test_cfg``). With
:class:`~instseg_ros.core.postprocess.InferenceParams`: ``score_threshold`` drops final
(decayed) scores ``<=`` it, ``max_detections`` caps mmdet's ``max_per_img``, ``class_ids``
restricts the candidates before Matrix NMS; ``nms_threshold``, ``top_k``, ``conf_threshold`` and
``class_agnostic`` have no SOLOv2 counterpart (Matrix NMS is per class and soft).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from instseg_ros.core.models.solov2.config import SoloV2Config
from instseg_ros.core.models.solov2.network import SoloV2
from instseg_ros.core.models.solov2.postprocess import DecodeParams, decode_single, mask_rois
from instseg_ros.core.models.solov2.preprocess import preprocess_batch
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.roi_segmenter import RoiSegmenterMixin

__all__ = ['SoloV2Segmenter']


class SoloV2Segmenter(RoiSegmenterMixin):
    """Runs a :class:`SoloV2` network.

    Attributes:
        model: the network (eval mode, on ``device``).  cfg: its :class:`SoloV2Config`.
        class_names: names by 0-based label.
        last_timings_ms: 'preprocess' (resize, normalise, pad), 'forward' (network),
            'postprocess' (candidates, masks, Matrix NMS, ROI upsampling) of the last call.
    """

    def __init__(self, model: SoloV2, cfg: SoloV2Config, class_names: Sequence[str],
                 device: torch.device | str = 'cpu', half: bool = False, precision: str | None = None) -> None:
        """``model``: the torch network or an exported one (core.family_export); ``device``: 'auto' |
        'cpu' | 'cuda[:N]' (core.predictor.resolve_device); ``precision`` 'fp32' | 'bf16' | 'fp16'
        (``half``: fp16) where the device offers it (a RuntimeWarning and fp32 elsewhere); decoding
        always runs in float32."""
        self._set_network(model, device, half, precision)
        self.cfg = cfg
        self.class_names = tuple(class_names)
        self.last_timings_ms: dict[str, float] = {}

    def decode_params(self, params: InferenceParams | None) -> DecodeParams:
        """mmdet's test_cfg, narrowed by ``params`` (see the module docstring)."""
        cfg = self.cfg
        base = DecodeParams(cfg.score_thr, cfg.mask_thr, cfg.filter_thr, cfg.nms_pre, cfg.max_per_img,
                            cfg.kernel, cfg.sigma)
        if params is None:
            return base
        return base._replace(max_per_img=min(cfg.max_per_img, int(params.max_detections)),
                             final_score_thr=params.score_threshold, class_ids=params.class_ids)

    @torch.inference_mode()
    def _run(self, images: Sequence[np.ndarray], color_order: str, params: InferenceParams | None):
        """Per image (scores, labels, rois, boxes) as host arrays; sets the timings."""
        start = time.perf_counter()
        cfg = self.cfg
        batch = preprocess_batch(images, color_order, cfg.test_scale, cfg.size_divisor, cfg.mean_rgb,
                                 cfg.std_rgb, self.device, torch.float32)
        self._sync()
        preprocessed = time.perf_counter()
        cls_logits, kernels, mask_feats = self._forward(batch.images)
        self._sync()
        forwarded = time.perf_counter()
        decode = self.decode_params(params)
        padded_hw = tuple(batch.images.shape[-2:])
        out = []
        for i, (resized, source) in enumerate(zip(batch.resized_hw, batch.source_hw)):
            scores, labels, probs = decode_single([c[i] for c in cls_logits], [k[i] for k in kernels],
                                                  mask_feats[i], cfg.strides, decode)
            rois, boxes = mask_rois(probs, padded_hw, resized, source, cfg.mask_thr)
            out.append((scores.float().cpu().numpy(), labels.cpu().numpy().astype(np.int64), rois, boxes))
        self._sync()
        self.last_timings_ms = {'preprocess': (preprocessed - start) * 1e3,
                                'forward': (forwarded - preprocessed) * 1e3,
                                'postprocess': (time.perf_counter() - forwarded) * 1e3}
        return out, batch.source_hw

    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """Several images (sizes may differ, padded together as mmdet batches) in one forward."""
        if len(images) == 0:
            return []
        results, _ = self._run(images, color_order, params)
        return [RoiDetections(boxes, scores.astype(np.float32), labels, rois)
                for scores, labels, rois, boxes in results]
