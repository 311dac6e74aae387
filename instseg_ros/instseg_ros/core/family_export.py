"""ONNX export and exported runtimes (ONNX Runtime, OpenVINO) of the mmdetection families
(RTMDet-Ins, SOLOv2, CondInst): the network part only, as for YOLACT (:mod:`.export`,
:mod:`.exported`); each family's own torch post-processing decodes the runtime's outputs.

A family plugs in with an :class:`ExportTraits` (its subpackage's ``export.TRAITS``): the config
dataclass, the network's output type, whether the input size is fixed, and how to load a
checkpoint. Nothing here knows a family's layers.

Graph ``<name>.onnx``: input ``image`` float32 ``[batch, 3, H, W]`` (normalised as the family's
preprocessing makes it; RTMDet-Ins: fixed ``S x S``, SOLOv2 / CondInst: ``height`` and ``width``
dynamic, multiples of the size divisor), batch dynamic; outputs the network's raw tensors in order,
a tensor field ``f`` named ``f`` and a per-level field ``f`` named ``f_0``, ``f_1``, ...
Side-car ``<name>.json``: the YOLACT side-car's keys plus ``family`` and ``fields``
(``[[field, levels or null], ...]``, to rebuild the output type).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from instseg_ros.core.export import DEFAULT_OPSET, EXPORT_FORMAT, config_from_dict

__all__ = ['ExportTraits', 'ExportedFamilyNetwork', 'export_family_onnx', 'family_traits',
           'flatten_outputs', 'keep_ratio_example_hw', 'load_exported_segmenter', 'rgb_input_note',
           'sidecar_family', 'unflatten_outputs']

#: families with an export (subpackage under core/models holding ``export.TRAITS``)
_TRAIT_MODULES = {'rtmdet_ins': 'instseg_ros.core.models.rtmdet.export',
                  'solov2': 'instseg_ros.core.models.solov2.export',
                  'condinst': 'instseg_ros.core.models.condinst.export'}


class ExportTraits(NamedTuple):
    """What the export needs of a family.

    Attributes:
        family: key of core.segmenter.BUILDERS, e.g. 'rtmdet_ins'.
        title: the family in words ('RTMDet-Ins').
        config_type: the frozen config dataclass (``cfg.name``, ``cfg.num_classes``).
        output_type: the network's output type: a NamedTuple class, or ``tuple`` with ``fields``.
        fields: output field names (used when ``output_type`` is ``tuple``).
        fixed_input: True when the network input is a fixed ``S x S`` (``input_size(cfg)``).
        example_hw: ``cfg -> (height, width)`` of the traced example input.
        input_note: ``cfg -> dict`` channel order, normalisation and resize (side-car ``input``).
        load: ``(path, preset, class_names) -> (model, cfg, class names)`` of a checkpoint
            (CheckpointError, one line, for a file that does not fit).
        random: ``preset -> (model, cfg)`` with the layers' default initialisation (exports for
            benchmarks and checks without a checkpoint; seed torch first).
        segmenter: ``(network, cfg, class_names, device, precision) -> Segmenter``.
    """

    family: str
    title: str
    config_type: type
    output_type: Any
    fields: tuple[str, ...]
    fixed_input: bool
    example_hw: Callable[[Any], tuple[int, int]]
    input_note: Callable[[Any], dict]
    load: Callable[..., tuple]
    random: Callable[[str], tuple]
    segmenter: Callable[..., Any]


def keep_ratio_example_hw(cfg) -> tuple[int, int]:
    """The padded network input of a 640x480 camera under ``cfg.test_scale`` (the traced example;
    the graph takes any size)."""
    long_side, short_side = max(cfg.test_scale), min(cfg.test_scale)
    scale = min(long_side / 640, short_side / 480)
    div = cfg.size_divisor
    return (-(-round(480 * scale) // div) * div, -(-round(640 * scale) // div) * div)


def rgb_input_note(cfg) -> dict:
    """Side-car input note of an RGB keep-ratio family (``mean_rgb``, ``std_rgb``, ``test_scale``)."""
    return {'channels': 'RGB', 'mean': list(cfg.mean_rgb), 'std': list(cfg.std_rgb),
            'resize': f'keep ratio within {tuple(cfg.test_scale)}, padded right/bottom with 0 to '
                      f'multiples of {cfg.size_divisor}'}


def family_traits(family: str) -> ExportTraits:
    """The :class:`ExportTraits` of ``family`` (ValueError when the family has no export)."""
    if family not in _TRAIT_MODULES:
        raise ValueError(f'{family} has no ONNX export; the exported backends run '
                         f'{", ".join(["yolact", *_TRAIT_MODULES])}')
    import importlib
    return importlib.import_module(_TRAIT_MODULES[family]).TRAITS


def _field_names(output, traits: ExportTraits) -> tuple[str, ...]:
    return tuple(getattr(output, '_fields', None) or traits.fields)


def flatten_outputs(output, names: Sequence[str]) -> tuple[list[torch.Tensor], list[str], list[list]]:
    """(tensors, their graph names, fields ``[[name, levels or None], ...]``) of a network output
    whose entries are tensors or sequences of tensors (per level)."""
    tensors, graph_names, fields = [], [], []
    for name, value in zip(names, output):
        if isinstance(value, torch.Tensor):
            tensors.append(value)
            graph_names.append(name)
            fields.append([name, None])
        else:
            tensors.extend(value)
            graph_names.extend(f'{name}_{i}' for i in range(len(value)))
            fields.append([name, len(value)])
    return tensors, graph_names, fields


def unflatten_outputs(tensors: Sequence[torch.Tensor], fields: Sequence[Sequence], output_type):
    """The network output rebuilt from the flat ``tensors`` (inverse of :func:`flatten_outputs`)."""
    entries, index = [], 0
    for _, levels in fields:
        if levels is None:
            entries.append(tensors[index])
            index += 1
        else:
            entries.append(tuple(tensors[index:index + int(levels)]))
            index += int(levels)
    return tuple(entries) if output_type is tuple else output_type(*entries)


class _Flat(nn.Module):
    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, image: torch.Tensor):
        return tuple(flatten_outputs(self.model(image), self.names)[0])


def export_family_onnx(model: nn.Module, cfg, traits: ExportTraits, out_path: str | Path,
                       class_names: Sequence[str], source: str = '', opset: int | None = None) -> dict:
    """Export a family's network (any device; exported from a float32 CPU copy) to ``out_path``
    (.onnx) and write the side-car (returned). ImportError without the ``onnx`` package."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    opset = opset or DEFAULT_OPSET
    cpu_model = model.to('cpu', torch.float32, memory_format=torch.contiguous_format).eval()
    height, width = traits.example_hw(cfg)
    example = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        output = cpu_model(example)
    names = _field_names(output, traits)
    tensors, graph_names, fields = flatten_outputs(output, names)
    image_axes = {0: 'batch'} if traits.fixed_input else {0: 'batch', 2: 'height', 3: 'width'}
    axes = {'image': image_axes}
    out_shapes = {}
    for name, tensor in zip(graph_names, tensors):
        spatial = not traits.fixed_input and tensor.dim() == 4
        axes[name] = {0: 'batch', **({2: f'{name}_h', 3: f'{name}_w'} if spatial else {})}
        out_shapes[name] = [int(tensor.shape[1]), *([f'{name}_h', f'{name}_w'] if spatial
                                                     else [int(d) for d in tensor.shape[2:]])]
    flat = _Flat(cpu_model, names).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer notes on Python ints in shapes; checked below
        torch.onnx.export(flat, (example,), str(out_path), dynamo=False, opset_version=opset,
                          input_names=['image'], output_names=graph_names, dynamic_axes=axes,
                          do_constant_folding=True)
    cpu_model.eval()  # the exporter restores the wrapper's (training) mode on everything inside
    onnx.checker.check_model(onnx.load(str(out_path)), full_check=True)
    sidecar = {
        'format': EXPORT_FORMAT, 'family': traits.family, 'preset': cfg.name, 'names': list(class_names),
        'num_classes': int(cfg.num_classes),
        'input': {'name': 'image', 'shape': ['batch', 3, *((height, width) if traits.fixed_input
                                                           else ('height', 'width'))],
                  'dtype': 'float32', **traits.input_note(cfg)},
        'outputs': out_shapes, 'fields': fields, 'maskiou_graph': None, 'deformable_conv': None,
        'opset': opset, 'torch': torch.__version__, 'source': str(source),
        'config': dataclasses.asdict(cfg),
    }
    text = json.dumps(sidecar, indent=1) + '\n'
    out_path.with_suffix('.json').write_text(text, encoding='utf-8')
    return json.loads(text)


def config_from_sidecar(sidecar: dict, traits: ExportTraits):
    """The family config of a side-car (ValueError, one line, when it does not fit)."""
    try:
        return config_from_dict(sidecar['config'], traits.config_type)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the side-car's config is not a {traits.title} config "
                         f'({type(exc).__name__}: {exc}); export again with instseg-export') from None


def sidecar_family(onnx_path: str | Path) -> str:
    """The family an export's side-car names ('yolact' for side-cars written before families had
    exports, or without a readable side-car: the YOLACT loader then says what is wrong)."""
    try:
        data = json.loads(Path(onnx_path).with_suffix('.json').read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return 'yolact'
    family = data.get('family') if isinstance(data, dict) else None
    return family if isinstance(family, str) and family else 'yolact'


class ExportedFamilyNetwork:
    """A family's network on an exported runtime: float32 ``[B, 3, H, W]`` -> the family's output
    type of float32 CPU tensors (what its torch network returns). ``backend``, ``precision``
    (core.precision.Precision) and ``device`` are the runtime's."""

    def __init__(self, runtime, fields: Sequence[Sequence], output_type) -> None:
        self.runtime = runtime
        self.fields = [list(f) for f in fields]
        self.output_type = output_type
        self.backend = runtime.backend
        self.precision = runtime.precision
        self.device = runtime.device

    def __call__(self, batch: torch.Tensor):
        arrays = self.runtime.run(batch)
        tensors = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in arrays]
        return unflatten_outputs(tensors, self.fields, self.output_type)


def _check_fits(sidecar: dict, traits: ExportTraits, onnx_path: Path) -> None:
    family = sidecar.get('family', 'yolact')
    if family != traits.family:
        raise ValueError(f'{onnx_path.name} is a {family} export, not a {traits.family} one; pass '
                         f'model:=auto (the side-car names the family) or the {family} export')
    fields = sidecar.get('fields')
    count = sum(1 if n is None else int(n) for _, n in fields) if isinstance(fields, list) else -1
    if count != len(sidecar['outputs']):
        raise ValueError(f'{onnx_path.with_suffix(".json").name}: its fields do not match its outputs; '
                         'export again with instseg-export')


def load_exported_segmenter(traits: ExportTraits, weights: str | Path, backend: str, preset: str = 'auto',
                            device: torch.device | str | None = None, precision: str | None = None,
                            half: bool = False, class_names: Sequence[str] | None = None,
                            config_overrides: dict | None = None):
    """The family's segmenter running its network on ``backend`` ('onnxruntime' | 'openvino').

    ``weights``: an ``instseg-export`` .onnx (with side-car) or a checkpoint, exported on first use
    into the cache (:func:`instseg_ros.core.exported.cached_onnx`). Unsupported precision or
    device requests are one RuntimeWarning (fp32 on the CPU). Raises ImportError (runtime missing),
    ValueError (an export that does not fit) or CheckpointError (a checkpoint that does not fit).
    """
    from instseg_ros.core.exported import cached_onnx, open_runtime, read_sidecar

    path = Path(weights)
    if path.suffix == '.onnx':
        onnx_path = path
    else:
        def make(tmp: Path) -> None:
            model, cfg, names = traits.load(path, preset, None)
            export_family_onnx(model, cfg, traits, tmp, names, source=str(path))
        onnx_path = cached_onnx(path, f'{traits.family}|{preset}', make)
    sidecar = read_sidecar(onnx_path)
    _check_fits(sidecar, traits, onnx_path)
    cfg = config_from_sidecar(sidecar, traits)
    if preset not in ('auto', cfg.name):
        raise ValueError(f'{onnx_path.name} is an export of {cfg.name}, not {preset}; pass preset:=auto')
    if config_overrides:
        cfg = dataclasses.replace(cfg, **config_overrides)
    names = tuple(class_names) if class_names is not None else tuple(sidecar['names'])
    if len(names) != cfg.num_classes:
        raise ValueError(f'{len(names)} class names for a model with {cfg.num_classes} classes')
    runtime = open_runtime(onnx_path, sidecar, backend, device, precision, half, stacklevel=4)
    network = ExportedFamilyNetwork(runtime, sidecar['fields'], traits.output_type)
    return traits.segmenter(network, cfg, names)
