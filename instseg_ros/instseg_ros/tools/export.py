"""``instseg-export``: a YOLACT, RTMDet-Ins, SOLOv2 or CondInst checkpoint (or a randomly
initialised preset) to ONNX.

YOLACT: ``OUT.onnx`` (raw outputs loc, conf, coeffs, proto, priors; dynamic batch; fixed square
input of the preset), ``OUT.json`` (side-car: preset, config, class names, input size) and, for
YOLACT++, ``OUT.maskiou.onnx`` (:mod:`instseg_ros.core.export`). The mmdetection families: the
network's raw outputs per level, RTMDet-Ins with a fixed input, SOLOv2 / CondInst with dynamic
height and width (:mod:`instseg_ros.core.family_export`). Every graph passes the onnx checker.
Errors: one line, exit 2. The family comes from ``--preset`` or the file name, as for the node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence
from instseg_ros.cli_help import DefaultsHelpFormatter

__all__ = ['main']


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsHelpFormatter, prog='instseg-export', description='Export a YOLACT / YOLACT++, RTMDet-Ins, SOLOv2 or CondInst '
        'checkpoint to ONNX (raw network outputs; post-processing is the consumer\'s, as in '
        'instseg_ros backends onnxruntime and openvino).')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('weights', nargs='?', help='checkpoint (.pth), official or instseg-train')
    source.add_argument('--random', metavar='PRESET', help='export PRESET with seeded random weights '
                        '(parity checks and benchmarks without a checkpoint)')
    parser.add_argument('--preset', default='auto', help='preset of WEIGHTS (default: from the file)')
    parser.add_argument('--num-classes', type=int, default=None, help='YOLACT: classes incl. background')
    parser.add_argument('--class-names', default=None, help='class-name file (default: side-car or COCO)')
    parser.add_argument('--out', default=None, help='output .onnx (default: WEIGHTS with suffix .onnx)')
    parser.add_argument('--opset', type=int, default=None, help='ONNX opset (default 17; 19 with DCN)')
    return parser


def _model(args):
    import torch

    from instseg_ros.core.checkpoint import load_model
    from instseg_ros.core.classes import load_class_names, sidecar_class_names
    from instseg_ros.core.config import get_preset
    from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_
    from instseg_ros.core.predictor import default_class_names

    if args.random:
        cfg = get_preset(args.random, num_classes=args.num_classes)
        model = init_weights_(Yolact(cfg), torch.Generator().manual_seed(0)).eval()
        names = None
    else:
        model, cfg = load_model(args.weights, preset=args.preset, device='cpu', num_classes=args.num_classes)
        names = sidecar_class_names(args.weights)
    if args.class_names:
        names = load_class_names(args.class_names)
    names = names or default_class_names(cfg.num_classes)
    if len(names) != cfg.num_classes - 1:
        raise ValueError(f'{len(names)} class names for a model with {cfg.num_classes - 1} classes')
    return model, cfg, names


def _family_export(args, family: str, out: Path) -> tuple[dict, str]:
    """Export an mmdetection family's checkpoint (or random preset): (side-car, preset name)."""
    import torch

    from instseg_ros.core.classes import load_class_names
    from instseg_ros.core.family_export import export_family_onnx, family_traits
    from instseg_ros.core.models.mmdet_checkpoint import resolve_class_names

    traits = family_traits(family)
    if args.num_classes is not None:
        raise ValueError(f'--num-classes is for YOLACT; {traits.title} takes its classes from the weights')
    names = load_class_names(args.class_names) if args.class_names else None
    if args.random:
        torch.manual_seed(0)
        model, cfg = traits.random(args.random)
        names = resolve_class_names(f'random:{args.random}', cfg.num_classes, {}, names)
    else:
        model, cfg, names = traits.load(args.weights, args.preset, names)
    sidecar = export_family_onnx(model, cfg, traits, out, names,
                                 source=args.weights or f'random:{args.random}', opset=args.opset)
    return sidecar, cfg.name


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from instseg_ros.core.checkpoint import CheckpointError
    from instseg_ros.core.export import export_onnx
    from instseg_ros.core.segmenter import model_family
    out = Path(args.out) if args.out else (
        Path(args.weights).with_suffix('.onnx') if args.weights else Path(f'{args.random}_random.onnx'))
    if out.suffix != '.onnx':
        print(f'instseg-export: --out {out} must end in .onnx', file=sys.stderr)
        return 2
    try:
        family = model_family(args.random or args.preset, args.weights or 'random.pth')
        if family == 'yolact':
            model, cfg, names = _model(args)
            sidecar = export_onnx(model, cfg, out, names, source=args.weights or f'random:{args.random}',
                                  opset=args.opset)
            name = cfg.name
        else:
            sidecar, name = _family_export(args, family, out)
    except (CheckpointError, ImportError, ValueError, OSError) as exc:
        print(f'instseg-export: {" ".join(str(exc).split())}', file=sys.stderr)
        return 2
    files = [out, out.with_suffix('.json')] + ([out.with_suffix('.maskiou.onnx')]
                                               if sidecar['maskiou_graph'] else [])
    height, width = sidecar['input']['shape'][-2:]
    print(f'{name}: {len(sidecar["names"])} classes, input {height}x{width}, opset {sidecar["opset"]}'
          + (', YOLACT++ DeformConv (runs on onnxruntime, not on OpenVINO)' if sidecar['deformable_conv']
             else ''))
    for path in files:
        print(path)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
