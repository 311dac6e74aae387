"""Numeric precision of the network part: 'fp32', 'bf16', 'fp16', and the memory format.

Only the network (backbone, FPN, heads, YOLACT++ mask-IoU net) runs in the reduced precision; its
outputs are cast to float32 before decoding, NMS, mask assembly and thresholding
(:mod:`instseg_ros.core.postprocess`), and the anchors are always float32.

Support (anything else is one ``RuntimeWarning`` and fp32):

=========  ==================================  ======================================
precision  CPU                                 CUDA
=========  ==================================  ======================================
fp32       yes (contiguous)                    yes (contiguous)
bf16       with native bf16 (avx512_bf16/AMX)  when ``torch.cuda.is_bf16_supported()``
fp16       no                                  yes (channels-last)
=========  ==================================  ======================================

YOLACT++'s deformable convolutions compute in float32 inside a bf16 network (torchvision's
``deform_conv2d`` has no bf16 kernel; :mod:`instseg_ros.core.models.yolact.dcn`); fp16 on CUDA uses its kernel.

Channels-last (NHWC) is used for bf16 / fp16: on this project's CPU the bf16 forward took about a
third of its contiguous time with it (oneDNN's blocked bf16 kernels), and on CUDA it is the layout
tensor cores want. For fp32 the interleaved runs on the loaded shared machine disagreed (0.69x to
1.34x of the contiguous time; bench/model.py ``torch/fp32-cl``), so fp32 keeps the contiguous
layout until a quiet measurement decides; ``channels_last=True`` forces it.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

__all__ = ['PRECISIONS', 'Precision', 'resolve_precision']

PRECISIONS = ('fp32', 'bf16', 'fp16')
_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Precision(NamedTuple):
    """A resolved precision: ``name`` in PRECISIONS, torch ``dtype``, ``channels_last`` (bool)."""

    name: str
    dtype: torch.dtype
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 convolutions natively on this CPU (avx512_bf16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # torch builds without the op
        return False


def _unsupported_reason(name: str, device: torch.device) -> str | None:
    if name == 'fp32':
        return None
    if device.type == 'cuda':
        if name == 'bf16' and not torch.cuda.is_bf16_supported():
            return f'{device} does not support bf16'
        return None
    if device.type == 'cpu':
        if name == 'fp16':
            return 'half precision is only used on CUDA (no fast fp16 convolutions on the CPU)'
        if not cpu_has_native_bf16():
            return 'this CPU has no native bf16 (avx512_bf16 / AMX); emulated bf16 is slower than fp32'
        return None
    return f'{name} is not offered on {device.type} devices'


def resolve_precision(precision: str | None, device: torch.device, half: bool = False,
                      channels_last: bool | None = None, stacklevel: int = 3) -> Precision:
    """The precision to run for a request on ``device``.

    Args:
        precision: 'fp32' | 'bf16' | 'fp16' (case-insensitive) or None (= fp32, or fp16 with ``half``).
        device: the resolved torch device.
        half: legacy alias of precision 'fp16' (used only when ``precision`` is None or 'fp32').
        channels_last: force the memory format; None picks it per the table in the module docstring.

    Raises:
        ValueError: ``precision`` is not one of PRECISIONS.
    """
    name = 'fp32' if precision is None else str(precision).strip().lower()
    if name not in PRECISIONS:
        raise ValueError(f'precision {precision!r} is not one of {", ".join(PRECISIONS)}')
    if half and name == 'fp32':
        name = 'fp16'
    reason = _unsupported_reason(name, device)
    if reason is not None:
        warnings.warn(f'precision {name} on {device}: {reason}; running fp32', RuntimeWarning,
                      stacklevel=stacklevel)
        name = 'fp32'
    if channels_last is None:
        channels_last = name != 'fp32'
    return Precision(name, _DTYPES[name], bool(channels_last))
