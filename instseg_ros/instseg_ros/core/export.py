"""ONNX export of a ``Yolact``: the raw network outputs, post-processing left to the consumer.

Graph ``<name>.onnx``: input ``image`` float32 ``[batch, 3, S, S]`` (RGB normalised as
:func:`instseg_ros.core.preprocess.preprocess` makes it, ``S = cfg.max_size``, batch dynamic);
outputs ``loc [batch, P, 4]``, ``conf [batch, P, C]`` (logits, background at 0), ``coeffs
[batch, P, K]``, ``proto [batch, Hp, Wp, K]`` and ``priors [P, 4]`` (constant anchors, cx cy w h
relative), i.e. the fields of ``YolactOutput``. YOLACT++ adds a second graph
``<name>.maskiou.onnx``: ``masks [N, 1, Hp, Wp]`` -> ``maskiou [N, C-1]``.

Side-car ``<name>.json``: format, preset, the full model config, class ``names``, input size and
layout, output names, opset and the source checkpoint (read by
:mod:`instseg_ros.core.exported` and by ``load_class_names``).

YOLACT++'s deformable convolutions (``torchvision::deform_conv2d``) have no ONNX symbolic in
torchvision; :func:`register_deform_conv_symbolic` maps them to the ONNX ``DeformConv`` operator
(opset 19). Whether a runtime executes that operator is checked by the caller
(:data:`DCN_NOTE`).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from instseg_ros.core.config import ModelConfig

__all__ = ['EXPORT_FORMAT', 'OUTPUT_NAMES', 'config_from_dict', 'export_onnx', 'has_dcn']

EXPORT_FORMAT = 'instseg_ros.onnx/1'
OUTPUT_NAMES = ('loc', 'conf', 'coeffs', 'proto', 'priors')
DEFAULT_OPSET = 17
DCN_OPSET = 19  # ONNX DeformConv


class _RawOutputs(nn.Module):
    """``Yolact`` -> the tuple (loc, conf, coeffs, proto, priors) the exporter traces."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        out = self.model(image)
        return out.loc, out.conf, out.coeffs, out.proto, out.priors


class _MaskIoU(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.maskiou_net = model.maskiou_net

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        # MaskIoUNet.forward's global max-pool, with a static reduction the exporter can trace
        return self.maskiou_net.maskiou_net(masks).amax(dim=(2, 3))


def has_dcn(cfg: ModelConfig) -> bool:
    """True when the preset uses deformable convolutions (YOLACT++)."""
    return any(n > 0 for n in cfg.dcn_layers)


def _deform_conv_symbolic(g, inp, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                          dil_h, dil_w, n_weight_grps, n_offset_grps, use_mask):
    from torch.onnx.symbolic_helper import _get_const
    kernel = weight.type().sizes()[-2:]
    args = [inp, weight, offset, bias]
    if _get_const(use_mask, 'b', 'use_mask'):
        args.append(mask)
    ph, pw = _get_const(pad_h, 'i', 'pad_h'), _get_const(pad_w, 'i', 'pad_w')
    return g.op('DeformConv', *args, kernel_shape_i=list(kernel),
                strides_i=[_get_const(stride_h, 'i', 's'), _get_const(stride_w, 'i', 's')],
                pads_i=[ph, pw, ph, pw],
                dilations_i=[_get_const(dil_h, 'i', 'd'), _get_const(dil_w, 'i', 'd')],
                group_i=_get_const(n_weight_grps, 'i', 'g'),
                offset_group_i=_get_const(n_offset_grps, 'i', 'og'))


def register_deform_conv_symbolic() -> None:
    """Export ``torchvision::deform_conv2d`` as ONNX ``DeformConv`` (opset >= 19; idempotent)."""
    torch.onnx.register_custom_op_symbolic('torchvision::deform_conv2d', _deform_conv_symbolic,
                                           DCN_OPSET)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
            output_names: Sequence[str], batched_outputs: Sequence[str], opset: int) -> None:
    axes = {input_name: {0: 'batch'}, **{name: {0: 'batch'} for name in batched_outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about Python ints in shapes (fixed input)
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[input_name], output_names=list(output_names),
                          dynamic_axes=axes, do_constant_folding=True)


def _check(path: Path) -> None:
    import onnx
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def export_onnx(model: nn.Module, cfg: ModelConfig, out_path: str | Path,
                class_names: Sequence[str], source: str = '', opset: int | None = None) -> dict:
    """Export ``model`` (any device; exported from a float32 CPU copy) to ``out_path`` (.onnx).

    Returns:
        The side-car dict, also written to ``out_path`` with the suffix ``.json``.

    Raises:
        ImportError: the ``onnx`` package is missing (the checker needs it).
    """
    import onnx  # noqa: F401  (clear ImportError before any work)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dcn = has_dcn(cfg)
    if dcn:
        register_deform_conv_symbolic()
    opset = opset or (DCN_OPSET if dcn else DEFAULT_OPSET)
    cpu_model = model.to('cpu', torch.float32, memory_format=torch.contiguous_format).eval()
    size = int(cfg.max_size)
    with torch.no_grad():
        example = torch.zeros(1, 3, size, size)
        out = cpu_model(example)
        cpu_model._priors_cache.clear()  # traced afresh: a cached tensor would be an untraced input
        _export(_RawOutputs(cpu_model), example, out_path, 'image', OUTPUT_NAMES,
                OUTPUT_NAMES[:4], opset)
        _check(out_path)
        maskiou_path = None
        if cfg.use_maskiou:
            maskiou_path = out_path.with_suffix('.maskiou.onnx')
            masks = torch.zeros(2, 1, out.proto.shape[1], out.proto.shape[2])
            _export(_MaskIoU(cpu_model), masks, maskiou_path, 'masks', ('maskiou',), ('maskiou',), opset)
            _check(maskiou_path)
    cpu_model._priors_cache.clear()
    sidecar = {
        'format': EXPORT_FORMAT, 'preset': cfg.name, 'names': list(class_names),
        'num_classes': cfg.num_classes, 'input': {
            'name': 'image', 'shape': ['batch', 3, size, size], 'dtype': 'float32', 'channels': 'RGB',
            'normalization': cfg.normalization, 'resize': 'to S x S as instseg_ros preprocess'},
        'outputs': {name: list(getattr(out, name).shape[1:] if name != 'priors' else out.priors.shape)
                    for name in OUTPUT_NAMES},
        'maskiou_graph': maskiou_path.name if maskiou_path else None,
        'deformable_conv': 'ONNX DeformConv (opset 19)' if dcn else None,
        'opset': opset, 'torch': torch.__version__, 'source': str(source),
        'config': dataclasses.asdict(cfg),
    }
    text = json.dumps(sidecar, indent=1) + '\n'
    out_path.with_suffix('.json').write_text(text, encoding='utf-8')
    return json.loads(text)


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def config_from_dict(config: dict, config_type: type = ModelConfig):
    """The ``config_type`` dataclass (default YOLACT's ``ModelConfig``) of a side-car's ``config``
    entry (JSON lists back to tuples; keys the dataclass lacks are ignored)."""
    names = {f.name for f in dataclasses.fields(config_type)}
    return config_type(**{k: _tuples(v) for k, v in config.items() if k in names})
