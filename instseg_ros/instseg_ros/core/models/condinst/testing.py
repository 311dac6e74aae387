"""Deterministic synthetic CondInst weights for tests and parity runs (no training involved).

Values depend only on each key's name, shape and the seed (never on module order or a global
RNG), so the same state dict fills mmdet's model and ours. BatchNorm statistics are then measured
on given network inputs so activations neither vanish nor explode through 50 random layers.
"""

from __future__ import annotations

import math

import torch

from instseg_ros.core.models.condinst.config import CondInstConfig
from instseg_ros.core.models.rtmdet.testing import (_kernel_bias, _statistic_or_noise, calibrate_batchnorm,
                                                    class_bias_shift)

StateDict = dict[str, torch.Tensor]

#: weight gains of the box head's predictors (moderate logits, boxes of a few strides)
_HEAD_GAINS = {'conv_cls': 0.7, 'conv_reg': 0.3, 'conv_centerness': 0.5, 'controller': 0.5}


def _value(key: str, shape: torch.Size, seed: int, cls_bias: float) -> torch.Tensor:
    statistic, noise = _statistic_or_noise(key, shape, seed)
    if statistic is not None:
        return statistic
    if key.endswith('.scale'):
        return 1.0 + 0.1 * noise
    if ('.bn' in key or '.gn.' in key) and key.endswith('weight'):
        return 1.0 + 0.1 * noise
    part = key.split('.')[1] if key.startswith('bbox_head.') else ''
    if key.endswith('bias'):
        if part == 'conv_cls':
            return cls_bias + 0.5 * noise
        if part == 'conv_reg':
            return 1.0 + 0.3 * noise
        if part == 'controller':
            return _kernel_bias(noise)
        return 0.05 * noise
    fan_in = max(1, math.prod(shape[1:]))
    return noise * _HEAD_GAINS.get(part, 1.0) / fan_in ** 0.5


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0, cls_bias: float = -4.0
                         ) -> StateDict:
    """float32 tensors (int64 ``num_batches_tracked``) for ``shapes`` (key -> shape): convs normal
    with std ``gain / sqrt(fan_in)``, norms near identity, class biases near ``cls_bias``,
    box biases near 1 (distances of about a stride), controller biases giving compact masks."""
    return {key: _value(key, torch.Size(shape), seed, cls_bias) for key, shape in shapes.items()}


def calibrated_state_dict(cfg: CondInstConfig, images: torch.Tensor, seed: int = 0,
                          cls_bias: float = -4.0) -> StateDict:
    """:func:`synthetic_state_dict` of a :class:`CondInst` whose BatchNorm running statistics are
    measured on ``images`` (float32 ``[B, 3, H, W]`` preprocessed network inputs)."""
    from instseg_ros.core.models.condinst.network import CondInst
    model = CondInst(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return calibrate_batchnorm(model, synthetic_state_dict(shapes, seed, cls_bias), images)


def shift_class_biases(state_dict: StateDict, cfg: CondInstConfig, images: torch.Tensor,
                       candidates: int = 40, min_score: float = 0.05) -> StateDict:
    """Copy of ``state_dict`` whose ``conv_cls`` bias is shifted by one common amount so that every
    image of ``images`` has at least ``candidates`` (point, class) class scores above ``min_score``."""
    from instseg_ros.core.models.condinst.network import CondInst
    shift = class_bias_shift(CondInst(cfg), state_dict, images, candidates, min_score)
    out = dict(state_dict)
    out['bbox_head.conv_cls.bias'] = out['bbox_head.conv_cls.bias'] + shift
    return out
