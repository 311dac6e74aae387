"""Deterministic SOLOv2 weights for the golden tests (no checkpoint is committed).

``seeded_state_dict(cfg, seed)`` gives the same tensors on every machine with this torch version;
bench/solov2_golden.py loads them into mmdetection's SOLOv2 and stores its outputs in
test/data/solov2_golden.json, and test_solov2.py runs our model on the same weights.
"""

from __future__ import annotations

import math

import torch

from instseg_ros.core.models.solov2.config import SoloV2Config
from instseg_ros.core.models.solov2.network import SoloV2

#: classes whose category bias is raised so that random features give detections
DETECTING_CLASSES = 6


def _fill(key: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """One tensor of the seeded weights, by the role its key names."""
    randn = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    if key.endswith('num_batches_tracked'):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith('running_mean'):
        return 0.1 * randn(shape)
    if key.endswith('running_var'):
        return 1.0 + 0.5 * torch.rand(shape, generator=gen)
    if key == 'mask_head.conv_cls.bias':
        bias = torch.full(shape, -12.0)
        count = min(DETECTING_CLASSES, shape[0])
        bias[:count] = -4.5 + 0.3 * randn(count)
        return bias
    if key == 'mask_head.conv_cls.weight':
        return 0.05 * randn(shape)
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return randn(shape) * math.sqrt(2.0 / fan_in)
    if key.endswith('.weight'):  # BN / GN scale; bn3 damped so that residual sums stay bounded
        return (0.3 if '.bn3.' in key or 'downsample.1' in key else 1.0) * (1.0 + 0.1 * randn(shape))
    return 0.1 * randn(shape)  # BN / GN / conv biases


def seeded_state_dict(cfg: SoloV2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """float32 state dict of ``SoloV2(cfg)`` drawn from ``torch.Generator().manual_seed(seed)`` in
    sorted key order."""
    with torch.device('meta'):
        shapes = {k: v.shape for k, v in SoloV2(cfg).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    return {key: _fill(key, shapes[key], gen) for key in sorted(shapes)}


def seeded_model(cfg: SoloV2Config, seed: int = 0) -> SoloV2:
    """``SoloV2(cfg)`` in eval mode with :func:`seeded_state_dict` loaded strictly."""
    with torch.device('meta'):
        model = SoloV2(cfg)
    model.load_state_dict(seeded_state_dict(cfg, seed), strict=True, assign=True)
    return model.eval()
