"""YOLACT / YOLACT++ as a :class:`~instseg_ros.core.segmenter.Segmenter`: the shared
:class:`~instseg_ros.core.predictor.Predictor` (torch, ONNX Runtime or OpenVINO network) behind the
segmenter interface, and the family's ``build_segmenter``."""

from __future__ import annotations

import os
from typing import Sequence

import torch

from instseg_ros.core.postprocess import RoiDetections
from instseg_ros.core.structures import Instances

__all__ = ['YolactSegmenter', 'build_segmenter']


class YolactSegmenter:
    """The YOLACT/YOLACT++ :class:`~instseg_ros.core.predictor.Predictor` as a :class:`Segmenter`
    (delegates every call; ``predictor`` and ``cfg`` stay reachable)."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    @property
    def cfg(self):
        return self.predictor.cfg

    @property
    def name(self) -> str:
        return self.predictor.cfg.name

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    @property
    def backend(self) -> str:
        """Network backend: 'torch', 'onnxruntime' or 'openvino'."""
        return getattr(self.predictor, 'backend', 'torch')

    @property
    def precision(self) -> str:
        own = getattr(self.predictor, 'precision', None)
        if isinstance(own, str):
            return own
        return 'fp16' if getattr(self.predictor, 'half', False) else 'fp32'

    @property
    def class_names(self) -> Sequence[str]:
        return self.predictor.class_names

    @property
    def last_timings_ms(self) -> dict[str, float]:
        return self.predictor.last_timings_ms

    @property
    def model(self):
        return self.predictor.model

    def predict_rois(self, image, color_order='bgr', params=None) -> RoiDetections:
        return self.predictor.predict_rois(image, color_order=color_order, params=params)

    def predict_rois_batch(self, images, color_order='bgr', params=None) -> list[RoiDetections]:
        return self.predictor.predict_rois_batch(images, color_order=color_order, params=params)

    def __call__(self, image, color_order='bgr', params=None) -> Instances:
        return self.predictor(image, color_order=color_order, params=params)

    def predict_batch(self, images, color_order='bgr', params=None) -> list[Instances]:
        return self.predictor.predict_batch(images, color_order=color_order, params=params)

    def warmup(self, image_size=(480, 640), iterations=1) -> None:
        self.predictor.warmup(image_size, iterations)


def build_segmenter(weights: str | os.PathLike, preset: str = 'auto', device: torch.device | str = 'cpu',
                    half: bool = False, class_names: Sequence[str] | None = None,
                    **options) -> YolactSegmenter:
    """A :class:`YolactSegmenter` for a YOLACT checkpoint (official flat layout, our training
    files) or an ``instseg-export`` file; ``options``: num_classes, precision, backend (default
    'torch'); other keys (options of other families) are ignored.
    Raises CheckpointError (file, preset) or ValueError (names, device)."""
    # imported here: core.predictor -> core.checkpoint imports this package's network modules
    from instseg_ros.core.predictor import Predictor
    return YolactSegmenter(Predictor.from_checkpoint(
        weights, preset=preset, device=device, half=half, class_names=class_names,
        num_classes=options.get('num_classes'), precision=options.get('precision'),
        backend=options.get('backend') or 'torch'))
