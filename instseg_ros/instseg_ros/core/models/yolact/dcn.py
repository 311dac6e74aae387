"""Modulated deformable convolution (DCNv2) on top of ``torchvision.ops.deform_conv2d``.

Checkpoint-compatible with the reference ``external/DCNv2/dcn_v2.py::DCN`` (YOLACT++):
parameters ``weight [Co,Ci,k,k]``, ``bias [Co]`` and the sub-module
``conv_offset_mask`` (Conv2d Ci -> 3*k*k, same stride/padding) predicting offsets and masks.

Channel layout of ``conv_offset_mask`` output (3*k*k channels):
    channels [0, 2*k*k): offsets, interleaved per kernel tap t = i*k + j (row-major) as
        channel 2t = dy (row shift), channel 2t+1 = dx (column shift), in input pixels;
    channels [2*k*k, 3*k*k): modulation logits, mask = sigmoid(.), one per tap.
This is exactly torchvision's ``offset`` / ``mask`` layout, so no reshuffle is needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class DCNv2(nn.Module):
    """3x3 (or k x k) modulated deformable convolution with bias, deformable_groups = 1.

    forward: x float [B, Ci, H, W] -> float [B, Co, Ho, Wo] with the usual conv output size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        taps = kernel_size * kernel_size
        self.conv_offset_mask = nn.Conv2d(in_channels, 3 * taps, kernel_size, stride=stride,
                                          padding=padding, dilation=dilation, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init: uniform(+-1/sqrt(fan_in)) weight, zero bias, zero offsets (mask = 0.5)."""
        fan_in = self.weight.shape[1] * self.kernel_size * self.kernel_size
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.zero_()
            self.conv_offset_mask.weight.zero_()
            self.conv_offset_mask.bias.zero_()

    def split_offset_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets float [B, 2*k*k, Ho, Wo] (dy, dx interleaved) and masks float [B, k*k, Ho, Wo] in (0, 1)."""
        out = self.conv_offset_mask(x)
        n_offset = 2 * self.kernel_size * self.kernel_size
        return out[:, :n_offset], torch.sigmoid(out[:, n_offset:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.split_offset_mask(x)
        if not _has_kernel(x):  # bf16 anywhere, fp16 off CUDA: this layer alone runs in float32
            out = deform_conv2d(x.float(), offset.float(), self.weight.float(), self.bias.float(),
                                stride=self.stride, padding=self.padding, dilation=self.dilation,
                                mask=mask.float())
            return out.to(x.dtype)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)


def _has_kernel(x: torch.Tensor) -> bool:
    """Whether torchvision's deform_conv2d has a kernel for ``x``'s dtype on its device: float32 /
    float64 everywhere, float16 on CUDA only, bfloat16 nowhere (torchvision 0.2x)."""
    if x.dtype in (torch.float32, torch.float64):
        return True
    return x.dtype == torch.float16 and x.device.type == 'cuda'

