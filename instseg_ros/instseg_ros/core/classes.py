"""Class names: the 80 COCO classes in the YOLACT reference order, and a loader for custom lists.

Label ``i`` of a detection (0-based, background excluded) names ``names[i]``; the model's class
channel is ``i + 1`` (channel 0 = background).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

COCO_CLASSES: tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
    'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave',
    'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush',
)

# COCO annotation ``category_id`` of each entry of COCO_CLASSES (ids are not contiguous).
COCO_CATEGORY_IDS: tuple[int, ...] = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91),
)

_LIST_KEYS = ('names', 'class_names', 'classes')


def _names_from_object(data: object, path: Path) -> list[str]:
    """A list of names, ``{index: name}``, or a dict holding one of those under a ``_LIST_KEYS`` key."""
    if isinstance(data, dict):
        for key in _LIST_KEYS:
            if key in data:
                return _names_from_object(data[key], path)
        if data and all(isinstance(k, int) or (isinstance(k, str) and k.isdigit()) for k in data):
            indexed = sorted((int(k), v) for k, v in data.items())
            if [i for i, _ in indexed] != list(range(len(indexed))):
                raise ValueError(f'{path}: class indices must be 0..N-1')
            return [str(v) for _, v in indexed]
        raise ValueError(f'{path}: expected a list of class names or a key in {_LIST_KEYS}')
    if isinstance(data, (list, tuple)) and all(isinstance(n, (str, int, float)) for n in data):
        return [str(n) for n in data]
    raise ValueError(f'{path}: expected a list of class names')


def load_class_names(path: str | Path) -> tuple[str, ...]:
    """Read class names (background excluded, label order) from a file.

    Formats: ``.json`` / ``.yaml`` / ``.yml`` holding a list (or ``{names: [...]}`` or ``{0: a, 1: b}``);
    anything else is read as plain text, one name per line (blank lines and ``#`` comments skipped).

    Raises:
        ValueError: unreadable structure or no names.
    """
    path = Path(path)
    text = path.read_text(encoding='utf-8')
    suffix = path.suffix.lower()
    if suffix == '.json':
        names = _names_from_object(json.loads(text), path)
    elif suffix in ('.yaml', '.yml'):
        names = _names_from_object(yaml.safe_load(text), path)
    else:
        names = [line.strip() for line in text.splitlines()]
        names = [n for n in names if n and not n.startswith('#')]
    if not names:
        raise ValueError(f'{path}: no class names')
    return tuple(names)


def sidecar_class_names(weights_path: str | Path) -> tuple[str, ...] | None:
    """Class names stored next to a checkpoint as ``<stem>.json`` (instseg-train writes it), or None."""
    sidecar = Path(weights_path).with_suffix('.json')
    return load_class_names(sidecar) if sidecar.is_file() else None


def unknown_classes(wanted, known) -> list[str]:
    """The names of ``wanted`` (a class filter) that are not among ``known`` (the model's)."""
    return [name for name in wanted if name not in known]


def unknown_classes_text(unknown: list[str], known) -> str:
    """One line naming the unknown names and (the first 20 of) the known ones."""
    known = list(known)
    names = ', '.join(known[:20]) + (', ...' if len(known) > 20 else '')
    return f'unknown class name(s) {unknown}; known: {names}'
