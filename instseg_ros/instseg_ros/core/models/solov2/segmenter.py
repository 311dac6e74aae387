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
import warnings
from typing import Sequence

import numpy as np
import torch

from instseg_ros.core.models.solov2.config import SoloV2Config
from instseg_ros.core.models.solov2.network import SoloV2
from instseg_ros.core.models.solov2.postprocess import DecodeParams, decode_single, mask_rois
from instseg_ros.core.models.solov2.preprocess import preprocess_batch
from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.structures import Instances

__all__ = ['SoloV2Segmenter']


class SoloV2Segmenter:
    """Runs a :class:`SoloV2` network.

    Attributes:
        model: the network (eval mode, on ``device``).  cfg: its :class:`SoloV2Config`.
        class_names: names by 0-based label.
        last_timings_ms: 'preprocess' (resize, normalise, pad), 'forward' (network),
            'postprocess' (candidates, masks, Matrix NMS, ROI upsampling) of the last call.
    """

    backend = 'torch'

    def __init__(self, model: SoloV2, cfg: SoloV2Config, class_names: Sequence[str],
                 device: torch.device | str = 'cpu', half: bool = False) -> None:
        """``device``: 'auto' | 'cpu' | 'cuda[:N]' (core.predictor.resolve_device); ``half``: float16 network on
        CUDA only (a RuntimeWarning and float32 elsewhere); decoding always runs in float32."""
        from instseg_ros.core.predictor import resolve_device

        self.device = resolve_device(device)
        if half and self.device.type != 'cuda':
            warnings.warn('half precision is only used on CUDA; running float32', RuntimeWarning, stacklevel=2)
            half = False
        self.half = bool(half)
        self.cfg = cfg
        self.class_names = tuple(class_names)
        self.model = model.to(self.device, torch.float16 if self.half else torch.float32).eval()
        self.last_timings_ms: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def precision(self) -> str:
        return 'fp16' if self.half else 'fp32'

    def decode_params(self, params: InferenceParams | None) -> DecodeParams:
        """mmdet's test_cfg, narrowed by ``params`` (see the module docstring)."""
        cfg = self.cfg
        base = DecodeParams(cfg.score_thr, cfg.mask_thr, cfg.filter_thr, cfg.nms_pre, cfg.max_per_img,
                            cfg.kernel, cfg.sigma)
        if params is None:
            return base
        return base._replace(max_per_img=min(cfg.max_per_img, int(params.max_detections)),
                             final_score_thr=params.score_threshold, class_ids=params.class_ids)

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def _run(self, images: Sequence[np.ndarray], color_order: str, params: InferenceParams | None):
        """Per image (scores, labels, rois, boxes) as host arrays; sets the timings."""
        start = time.perf_counter()
        cfg = self.cfg
        batch = preprocess_batch(images, color_order, cfg.test_scale, cfg.size_divisor, cfg.mean_rgb,
                                 cfg.std_rgb, self.device, torch.float16 if self.half else torch.float32)
        self._sync()
        preprocessed = time.perf_counter()
        cls_logits, kernels, mask_feats = self.model(batch.images)
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

    def predict_rois(self, image: np.ndarray, color_order: str = 'bgr',
                     params: InferenceParams | None = None) -> RoiDetections:
        """One uint8 ``[H, W, 3]`` image -> detections with tight mask ROIs on the host."""
        return self.predict_rois_batch([image], color_order, params)[0]

    def predict_rois_batch(self, images: Sequence[np.ndarray], color_order: str = 'bgr',
                           params: InferenceParams | None = None) -> list[RoiDetections]:
        """Several images (sizes may differ, padded together as mmdet batches) in one forward."""
        if len(images) == 0:
            return []
        results, _ = self._run(images, color_order, params)
        return [RoiDetections(boxes, scores.astype(np.float32), labels, rois)
                for scores, labels, rois, boxes in results]

    def __call__(self, image: np.ndarray, color_order: str = 'bgr',
                 params: InferenceParams | None = None) -> Instances:
        """One image -> :class:`Instances` with full-frame bool masks on ``device``."""
        dets = self.predict_rois(image, color_order, params)
        height, width = image.shape[:2]
        masks = np.zeros((len(dets.rois), height, width), dtype=bool)
        for i, roi in enumerate(dets.rois):
            if roi is not None:
                x0, y0, crop = roi
                masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return Instances(image_size=(height, width),
                         boxes_xyxy=torch.from_numpy(dets.boxes_xyxy).to(self.device),
                         scores=torch.from_numpy(dets.scores).to(self.device),
                         labels=torch.from_numpy(dets.labels).to(self.device),
                         masks=torch.from_numpy(masks).to(self.device), class_names=self.class_names)

    def warmup(self, image_size: tuple[int, int] = (480, 640), iterations: int = 1) -> None:
        """Run predictions on a grey image (kernel selection, allocator)."""
        grey = np.full((int(image_size[0]), int(image_size[1]), 3), 114, dtype=np.uint8)
        for _ in range(int(iterations)):
            self.predict_rois(grey)
