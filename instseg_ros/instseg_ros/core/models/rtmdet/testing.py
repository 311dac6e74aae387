"""Deterministic synthetic RTMDet-Ins weights for tests and parity runs (no training involved).

The values depend only on each key's name, shape and the seed (never on module order or on a
global RNG), so the same state dict can be filled into mmdet's model and into ours.
"""

from __future__ import annotations

import zlib

import torch

StateDict = dict[str, torch.Tensor]


def _generator(key: str, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


#: weight gains of the head's predictors (moderate logits, boxes of a few strides)
_GAIN = 1.0
_HEAD_GAINS = {'rtm_cls': 0.7, 'rtm_reg': 0.3, 'rtm_kernel': 0.5, 'mask_head': 0.5}


def _kernel_bias(noise: torch.Tensor) -> torch.Tensor:
    """Bias of the dynamic-parameter predictor (169 = weights 80 + 64 + 8, biases 8 + 8 + 1):
    hidden weights ~N(0, 1), last-layer weights -1 and last bias +3, so that each mask is a
    compact blob around its point (logit 1 - sum of ReLU distances) instead of a half-plane."""
    out = noise.clone()
    if out.numel() == 169:
        out[144:152] = -1.0 + 0.2 * noise[144:152]
        out[152:168] = 0.0
        out[168] = 3.0
    return out


def _statistic_or_noise(key: str, shape: torch.Size, seed: int
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(value, None) for a BatchNorm counter or running statistic (drawn alike by every family),
    else (None, the key's standard-normal noise)."""
    gen = _generator(key, seed)
    if key.endswith('num_batches_tracked'):
        return torch.zeros(shape, dtype=torch.int64), None
    noise = torch.randn(shape, generator=gen)
    if key.endswith('running_var'):
        return 0.5 + torch.rand(shape, generator=gen), None
    if key.endswith('running_mean'):
        return 0.1 * noise, None
    return None, noise


def _value(key: str, shape: torch.Size, seed: int, cls_bias: float) -> torch.Tensor:
    statistic, noise = _statistic_or_noise(key, shape, seed)
    if statistic is not None:
        return statistic
    if '.bn.' in key and key.endswith('weight'):
        return 1.0 + 0.1 * noise
    if key.endswith('bias'):
        if 'rtm_cls' in key:
            return cls_bias + 0.5 * noise
        if 'rtm_reg' in key:
            return 2.0 + 0.5 * noise
        if 'rtm_kernel' in key:
            return _kernel_bias(noise)
        return 0.05 * noise
    fan_in = max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1)
    gain = _HEAD_GAINS.get(key.split('.')[1], _GAIN) if key.startswith('bbox_head.') else _GAIN
    return noise * gain / fan_in ** 0.5


def synthetic_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0, cls_bias: float = -2.0
                         ) -> StateDict:
    """float32 tensors (int64 ``num_batches_tracked``) for ``shapes`` (key -> shape).

    Convs: normal with std ``gain / sqrt(fan_in)``; BN near identity; class biases near
    ``cls_bias`` (raise it for more detections); other biases small.
    """
    return {key: _value(key, torch.Size(shape), seed, cls_bias) for key, shape in shapes.items()}


def calibration_images(seed: int, size: int, batch: int = 2) -> torch.Tensor:
    """float32 ``[batch, 3, size, size]`` smooth random normalised images (deterministic)."""
    gen = torch.Generator().manual_seed(seed + 12345)
    coarse = torch.randn((batch, 3, 20, 20), generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode='bilinear', align_corners=False)


def calibrate_batchnorm(model: torch.nn.Module, state_dict: StateDict, images: torch.Tensor) -> StateDict:
    """The state dict of ``model`` loaded with ``state_dict`` (strict) whose BatchNorm running
    statistics are then measured on ``images`` (one batch of network inputs); ``model`` ends in
    eval mode with the default momentum."""
    model.load_state_dict(state_dict, strict=True)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: the stats of the calibration batch
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()
    for norm in norms:
        norm.momentum = 0.1
    return {k: v.clone() for k, v in model.state_dict().items()}


def class_bias_shift(model: torch.nn.Module, state_dict: StateDict, images: torch.Tensor, candidates: int,
                     min_score: float) -> float:
    """The one amount to add to every class bias of ``state_dict`` so that each image of ``images``
    has at least ``candidates`` (point, class) scores above ``min_score`` in ``model`` (whose
    output has ``cls_logits``)."""
    import math

    model.eval()
    model.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        logits = torch.cat([c.flatten(1) for c in model(images).cls_logits], dim=1)  # [B, M]
    kth = logits.topk(candidates, dim=1).values[:, -1].min().item()
    return math.log(min_score / (1 - min_score)) + 0.25 - kth


def calibrated_state_dict(cfg, seed: int = 0, cls_bias: float = -2.0,
                          images: torch.Tensor | None = None) -> StateDict:
    """:func:`synthetic_state_dict` of an :class:`RTMDetIns` of ``cfg`` whose BatchNorm running
    statistics are then measured on ``images`` (float32 ``[B, 3, S, S]`` preprocessed network
    inputs; default :func:`calibration_images`), so activations neither vanish nor explode through
    the random layers on those inputs. Deterministic for a given CPU build of torch."""
    from instseg_ros.core.models.rtmdet.model import RTMDetIns
    model = RTMDetIns(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return calibrate_batchnorm(model, synthetic_state_dict(shapes, seed, cls_bias),
                               calibration_images(seed, cfg.input_size) if images is None else images)


def shift_class_biases(state_dict: StateDict, cfg, images: torch.Tensor, candidates: int = 150,
                       min_score: float = 0.05) -> StateDict:
    """Copy of ``state_dict`` whose ``rtm_cls`` biases are shifted by one common amount so that
    every image of ``images`` (float32 ``[B, 3, S, S]`` network inputs) has at least
    ``candidates`` (point, class) scores above ``min_score`` (detections on every test image)."""
    from instseg_ros.core.models.rtmdet.model import RTMDetIns
    shift = class_bias_shift(RTMDetIns(cfg), state_dict, images, candidates, min_score)
    out = dict(state_dict)
    for key in [k for k in out if k.startswith('bbox_head.rtm_cls.') and k.endswith('bias')]:
        out[key] = out[key] + shift
    return out
