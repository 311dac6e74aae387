"""``instseg-export``: a YOLACT checkpoint (or a randomly initialised preset) to ONNX.

Writes ``OUT.onnx`` (raw outputs loc, conf, coeffs, proto, priors; dynamic batch; fixed square
input of the preset), ``OUT.json`` (side-car: preset, config, class names, input size) and, for
YOLACT++, ``OUT.maskiou.onnx``. Every graph passes the onnx checker. Errors: one line, exit 2.
See :mod:`instseg_ros.core.export` for the layout and the YOLACT++ (DeformConv) notes.
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
        formatter_class=DefaultsHelpFormatter, prog='instseg-export', description='Export a YOLACT / YOLACT++ checkpoint to ONNX (raw outputs; '
        'post-processing is the consumer\'s, as in instseg_ros backends).')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('weights', nargs='?', help='checkpoint (.pth), official or instseg-train')
    source.add_argument('--random', metavar='PRESET', help='export PRESET with seeded random weights '
                        '(parity checks and benchmarks without a checkpoint)')
    parser.add_argument('--preset', default='auto', help='preset of WEIGHTS (default: from the file)')
    parser.add_argument('--num-classes', type=int, default=None, help='classes incl. background')
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from instseg_ros.core.checkpoint import CheckpointError
    from instseg_ros.core.export import export_onnx
    out = Path(args.out) if args.out else (
        Path(args.weights).with_suffix('.onnx') if args.weights else Path(f'{args.random}_random.onnx'))
    if out.suffix != '.onnx':
        print(f'instseg-export: --out {out} must end in .onnx', file=sys.stderr)
        return 2
    try:
        model, cfg, names = _model(args)
        sidecar = export_onnx(model, cfg, out, names, source=args.weights or f'random:{args.random}',
                              opset=args.opset)
    except (CheckpointError, ImportError, ValueError, OSError) as exc:
        print(f'instseg-export: {" ".join(str(exc).split())}', file=sys.stderr)
        return 2
    files = [out, out.with_suffix('.json')] + ([out.with_suffix('.maskiou.onnx')]
                                               if sidecar['maskiou_graph'] else [])
    size = sidecar['input']['shape'][-1]
    print(f'{cfg.name}: {len(names)} classes, input {size}x{size}, opset {sidecar["opset"]}'
          + (', YOLACT++ DeformConv (runs on onnxruntime, not on OpenVINO)' if sidecar['deformable_conv']
             else ''))
    for path in files:
        print(path)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
