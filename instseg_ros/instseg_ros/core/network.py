"""The network part of a predictor: normalised float batch in, raw ``YolactOutput`` out.

Backends differ only here; decoding, NMS and mask assembly (:mod:`instseg_ros.core.postprocess`)
are one shared implementation. :class:`TorchNetwork` runs the PyTorch model in a
:class:`~instseg_ros.core.precision.Precision`; the exported runtimes live in
:mod:`instseg_ros.core.exported`.
"""

from __future__ import annotations

import torch
from torch import nn

from instseg_ros.core.precision import Precision

__all__ = ['TorchNetwork']


class TorchNetwork:
    """A ``Yolact`` on ``device`` in ``precision`` (weights converted in place, eval mode).

    Attributes:
        backend: 'torch'. precision: the resolved :class:`Precision`. model: the module.
    """

    backend = 'torch'

    def __init__(self, model: nn.Module, device: torch.device, precision: Precision) -> None:
        self.device = device
        self.precision = precision
        self.model = model.to(device=device, dtype=precision.dtype,
                              memory_format=precision.memory_format).eval()

    def __call__(self, batch: torch.Tensor):
        """``batch`` float ``[B, 3, S, S]`` on the device -> ``YolactOutput`` (network dtype; priors
        float32)."""
        batch = batch.to(self.precision.dtype).contiguous(memory_format=self.precision.memory_format)
        return self.model(batch)

    def rescore(self, masks_soft: torch.Tensor) -> torch.Tensor:
        """YOLACT++ mask-IoU: float32 ``[N, 1, Hp, Wp]`` soft masks -> float32 ``[N, C-1]``."""
        return self.model.rescore(masks_soft.to(self.precision.dtype)).to(torch.float32)
