"""Instances: the detection result of one image, a small typed structure (cf. detectron2).

All tensors live on the same device. Coordinates are pixels of the *source* image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch


@dataclass
class Instances:
    """Detections for one image, sorted by descending score.

    Attributes:
        image_size: (height, width) of the source image in pixels.
        boxes_xyxy: float32 [N, 4] pixel box (x1, y1, x2, y2), 0 <= x1 <= x2 <= width.
        scores: float32 [N] confidence in [0, 1].
        labels: int64 [N] class index, 0-based, background excluded.
        masks: bool [N, H, W] full-resolution masks (H, W = image_size).
        class_names: names indexed by label (shared list, not per instance).
    """

    image_size: tuple[int, int]
    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    class_names: Sequence[str] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, index) -> 'Instances':
        """Select instances by int, slice, bool mask or index tensor."""
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return replace(self, boxes_xyxy=self.boxes_xyxy[index], scores=self.scores[index],
                       labels=self.labels[index], masks=self.masks[index])

    def to(self, device: torch.device | str) -> 'Instances':
        """Copy every tensor to ``device``."""
        return replace(self, boxes_xyxy=self.boxes_xyxy.to(device), scores=self.scores.to(device),
                       labels=self.labels.to(device), masks=self.masks.to(device))

    @property
    def names(self) -> list[str]:
        """Class name of each instance."""
        return [self.class_names[int(i)] if int(i) < len(self.class_names) else str(int(i))
                for i in self.labels.tolist()]

    @staticmethod
    def empty(image_size: tuple[int, int], device: torch.device | str = 'cpu',
              class_names: Sequence[str] = ()) -> 'Instances':
        """No detections for an image of ``image_size`` (height, width)."""
        h, w = image_size
        return Instances(image_size=(h, w),
                         boxes_xyxy=torch.zeros((0, 4), dtype=torch.float32, device=device),
                         scores=torch.zeros((0,), dtype=torch.float32, device=device),
                         labels=torch.zeros((0,), dtype=torch.int64, device=device),
                         masks=torch.zeros((0, h, w), dtype=torch.bool, device=device),
                         class_names=class_names)
