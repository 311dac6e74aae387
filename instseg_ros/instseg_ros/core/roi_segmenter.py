"""What every ROI-native segmenter shares: a segmenter implements ``predict_rois_batch`` (one
forward pass, masks straight to tight ROIs) and gets the single-image call, full-frame
``Instances`` for the evaluator and the warm-up from :class:`RoiSegmenterMixin`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from instseg_ros.core.postprocess import InferenceParams, RoiDetections
from instseg_ros.core.structures import Instances

__all__ = ['RoiSegmenterMixin', 'instances_from_rois']


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
    ``device`` and ``class_names``)."""

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
