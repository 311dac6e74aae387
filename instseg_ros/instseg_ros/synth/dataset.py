"""Write synthetic scenes as a COCO instance-segmentation dataset (``instseg-synth``).

Layout of ``out_dir``::

    instances.json          COCO: images, annotations (compressed RLE, counts as str), categories
    images/000000.png       colour image, BGR as written by OpenCV (PNG or JPEG quality 95)
    depth/000000.png        uint16 depth in millimetres, 0 = invalid (16UC1)

Every image entry carries ``file_name`` and ``depth_file`` (both relative to ``out_dir``),
``width``, ``height`` and its scene ``seed``; the top-level ``camera`` key holds the intrinsics
(width, height, fx, fy, cx, cy, k). Category ids are ``label + 1``; image and annotation ids start
at 1. Image ``i`` is rendered with seed ``seed * 100000 + i`` (see :func:`image_seed`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .scene import CLASS_NAMES, Camera, Scene, render_scene
from instseg_ros.cli_help import DefaultsHelpFormatter


def image_seed(dataset_seed: int, index: int) -> int:
    """Scene seed of image ``index`` of the dataset with seed ``dataset_seed``."""
    return int(dataset_seed) * 100000 + int(index)


def encode_mask(mask: np.ndarray) -> dict:
    """bool [H, W] -> COCO compressed RLE ``{'size': [H, W], 'counts': str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def categories(class_names: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """COCO categories with ``id = label + 1``."""
    return [{'id': i + 1, 'name': name, 'supercategory': 'shape'}
            for i, name in enumerate(class_names)]


def scene_annotations(scene: Scene, image_id: int, first_ann_id: int) -> list[dict]:
    """COCO annotation dicts for the instances of ``scene`` (ids from ``first_ann_id``).

    ``bbox`` is ``[x, y, w, h]`` in pixels (pixel-edge convention, = pycocotools ``toBbox``),
    ``area`` the mask pixel count, plus the extra key ``depth_m`` (reference depth in metres).
    """
    anns = []
    for k in range(len(scene)):
        x1, y1, x2, y2 = (float(v) for v in scene.boxes_xyxy[k])
        anns.append({
            'id': first_ann_id + k, 'image_id': image_id,
            'category_id': int(scene.labels[k]) + 1,
            'segmentation': encode_mask(scene.masks[k]),
            'area': int(scene.masks[k].sum()),
            'bbox': [x1, y1, x2 - x1, y2 - y1],
            'iscrowd': 0,
            'depth_m': float(scene.depths_m[k]),
        })
    return anns


def write_coco_dataset(out_dir: str | Path, num_images: int, seed: int,
                       camera: Camera = Camera(), *, image_format: str = 'png',
                       write_depth: bool = True, verbose: bool = False,
                       **render_kwargs) -> Path:
    """Render ``num_images`` scenes and write them as a COCO dataset under ``out_dir``.

    Args:
        out_dir: target directory (created; existing files with the same names are overwritten).
        num_images: number of images.
        seed: dataset seed; image ``i`` uses :func:`image_seed` ``(seed, i)``.
        camera: intrinsics / image size.
        image_format: ``'png'`` (lossless) or ``'jpg'`` (JPEG quality 95).
        write_depth: also write ``depth/*.png`` (uint16 mm).
        verbose: print progress to stderr.
        **render_kwargs: forwarded to :func:`render_scene`.

    Returns:
        Path of ``instances.json``.
    """
    if image_format not in ('png', 'jpg'):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    out = Path(out_dir)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    if write_depth:
        (out / 'depth').mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == 'jpg' else []

    images, annotations = [], []
    for i in range(num_images):
        scene = render_scene(image_seed(seed, i), camera, **render_kwargs)
        image_id = i + 1
        file_name = f'images/{i:06d}.{image_format}'
        if not cv2.imwrite(str(out / file_name), scene.image_bgr, params):
            raise OSError(f'could not write {out / file_name}')
        entry = {'id': image_id, 'file_name': file_name, 'width': camera.width,
                 'height': camera.height, 'seed': scene.seed}
        if write_depth:
            depth_file = f'depth/{i:06d}.png'
            if not cv2.imwrite(str(out / depth_file), scene.depth_mm):
                raise OSError(f'could not write {out / depth_file}')
            entry['depth_file'] = depth_file
        images.append(entry)
        annotations.extend(scene_annotations(scene, image_id, len(annotations) + 1))
        if verbose and ((i + 1) % 100 == 0 or i + 1 == num_images):
            print(f'[instseg-synth] {i + 1}/{num_images} images', file=sys.stderr)

    coco = {
        'info': {'description': 'instseg_ros synthetic RGB-D shapes', 'version': '1.0',
                 'dataset_seed': int(seed)},
        'licenses': [],
        'camera': camera.to_dict(),
        'images': images,
        'annotations': annotations,
        'categories': categories(),
    }
    json_path = out / 'instances.json'
    with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    return json_path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``instseg-synth --out DIR --num-images N --seed S [--width W --height H]``."""
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsHelpFormatter, prog='instseg-synth', description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--num-images', type=int, required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--format', choices=('png', 'jpg'), default='png',
                        help='colour image format (jpg = JPEG quality 95)')
    parser.add_argument('--no-depth', action='store_true', help='do not write depth images')
    args = parser.parse_args(argv)
    json_path = write_coco_dataset(args.out, args.num_images, args.seed,
                                   Camera(width=args.width, height=args.height),
                                   image_format=args.format, write_depth=not args.no_depth,
                                   verbose=True)
    with open(json_path, encoding='utf-8') as f:
        n_ann = len(json.load(f)['annotations'])
    print(f'wrote {args.num_images} images, {n_ann} instances -> {json_path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
