"""COCO-format instance-segmentation data for training YOLACT.

A dataset is a folder (or any paths) with a COCO ``instances.json`` and its images. Category ids are
mapped to contiguous 0-based labels in sorted category-id order (label ``i`` is model class channel
``i + 1``; channel 0 is background); :attr:`CocoInstanceDataset.class_names` follows that order.

Every sample is prepared like inference (see :mod:`instseg_ros.core.preprocess`): the RGB image is
stretched to the square ``S x S`` network input with bilinear interpolation (no antialias) and then
normalised. Ground-truth masks are produced directly at a (smaller) mask resolution, typically the
prototype resolution of the model, which is all the mask loss needs.

Determinism: the augmentation of a sample depends only on ``(seed, index, draw)`` where ``draw`` is
the position of the sample in the training stream (see :class:`InfiniteBatchSampler`), so results are
identical for any number of loader workers and a resumed run continues the exact same stream.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from instseg_ros.core.preprocess import normalize, upload_image

ANNOTATION_NAMES = ('instances.json', 'annotations.json', 'annotations/instances.json')
_MIN_BOX_PX = 1.0  # boxes narrower/shorter than this (source pixels) are dropped: no valid regression target


@dataclass(frozen=True)
class AugmentConfig:
    """Light training augmentation; every draw comes from a per-sample numpy Generator.

    Attributes:
        flip_prob: probability of a horizontal flip.
        photometric_prob: probability of each of brightness / contrast / saturation jitter.
        brightness: maximal additive brightness change (0..255 scale).
        contrast: multiplicative contrast range around the image mean.
        saturation: multiplicative range of the distance to the grey value.
        crop_prob: probability of a random crop (then stretched back to the square input).
        min_crop_scale: smallest crop side as a fraction of the image side (drawn per axis).
        min_visible: instances keeping less than this fraction of their mask area are dropped.
    """

    flip_prob: float = 0.5
    photometric_prob: float = 0.5
    brightness: float = 32.0
    contrast: tuple[float, float] = (0.6, 1.4)
    saturation: tuple[float, float] = (0.6, 1.4)
    crop_prob: float = 0.3
    min_crop_scale: float = 0.6
    min_visible: float = 0.4


@dataclass
class Sample:
    """Decoded ground truth of one image in source pixels (before resizing).

    Attributes:
        image: float32 ``[3, H, W]`` RGB, 0..255.
        boxes: float32 ``[n, 4]`` xyxy pixels; labels: int64 ``[n]`` 0-based;
        masks: float32 ``[n, H, W]`` in {0, 1}; crowd_boxes: float32 ``[m, 4]`` xyxy pixels.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    crowd_boxes: torch.Tensor


@dataclass
class Batch:
    """A collated batch. ``images``: float32 ``[B, 3, S, S]`` network input; per image (lists of length B):
    ``boxes`` float32 ``[n, 4]`` xyxy relative, ``labels`` int64 ``[n]`` 0-based, ``masks`` float32
    ``[n, M, M]`` in {0, 1}, ``crowd_boxes`` float32 ``[m, 4]`` xyxy relative; ``image_ids`` int64 ``[B]``."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]
    crowd_boxes: list[torch.Tensor]
    image_ids: torch.Tensor

    def to(self, device: torch.device | str) -> 'Batch':
        """Copy every tensor to ``device`` (non-blocking where possible)."""
        def move(items: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.to(device, non_blocking=True) for t in items]
        return Batch(self.images.to(device, non_blocking=True), move(self.boxes), move(self.labels),
                     move(self.masks), move(self.crowd_boxes), self.image_ids.to(device))


def find_annotation_file(root: str | Path) -> Path:
    """The COCO json of a dataset folder: the first of :data:`ANNOTATION_NAMES` that exists, or ``root``
    itself if it is a file. Raises FileNotFoundError otherwise."""
    root = Path(root)
    if root.is_file():
        return root
    for name in ANNOTATION_NAMES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f'no COCO annotation file ({", ".join(ANNOTATION_NAMES)}) in {root}')


def load_coco(ann_file: str | Path):
    """pycocotools COCO object for ``ann_file`` (its progress prints are silenced)."""
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def category_mapping(coco, category_ids: Sequence[int] | None = None) -> tuple[list[int], list[str]]:
    """Sorted category ids (or ``category_ids`` as given) and their names, index = 0-based label."""
    ids = sorted(int(c) for c in coco.getCatIds()) if category_ids is None else [int(c) for c in category_ids]
    cats = coco.loadCats(ids)
    return ids, [str(c['name']) for c in cats]


def _ann_mask(coco, ann: dict, height: int, width: int) -> np.ndarray:
    """uint8 ``[height, width]`` mask of one annotation (polygon / RLE); the filled box if it has none."""
    if ann.get('segmentation'):
        with warnings.catch_warnings():  # pycocotools' decode under numpy 2 warns on every call
            warnings.simplefilter('ignore', DeprecationWarning)
            return coco.annToMask(ann).astype(np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    x, y, w, h = ann['bbox']
    mask[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
    return mask


class CocoInstanceDataset(Dataset):
    """Torch dataset over a COCO instances file.

    Args:
        root: dataset folder (holding ``instances.json``) or the json file itself.
        image_dir: folder of the images; default: ``file_name`` is tried relative to the json's folder,
            then to ``<folder>/images``.
        input_size: side S of the square network input.
        mask_size: side M of the returned gt masks (e.g. the prototype resolution; S/4 for ResNets).
        normalization: ``'resnet'`` or ``'darknet'`` (as the model config).
        augment: AugmentConfig, or None for no augmentation (evaluation / fixed batches).
        seed: base seed of the augmentation draws.
        category_ids: explicit label order (e.g. the training set's); default sorted ids of this file.
        skip_empty: leave out images without any non-crowd annotation.
    """

    def __init__(self, root: str | Path, image_dir: str | Path | None = None, input_size: int = 320,
                 mask_size: int = 96, normalization: str = 'resnet', augment: AugmentConfig | None = None,
                 seed: int = 0, category_ids: Sequence[int] | None = None, skip_empty: bool = True):
        self.ann_file = find_annotation_file(root)
        self.coco = load_coco(self.ann_file)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.input_size, self.mask_size = int(input_size), int(mask_size)
        self.normalization, self.augment, self.seed = normalization, augment, int(seed)
        self.category_ids, self.class_names = category_mapping(self.coco, category_ids)
        self._label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        ids = sorted(int(i) for i in self.coco.getImgIds())
        if skip_empty:
            ids = [i for i in ids if any(not a.get('iscrowd', 0) and a['category_id'] in self._label_of
                                         for a in self.coco.imgToAnns.get(i, []))]
        if not ids:
            raise ValueError(f'{self.ann_file}: no usable images')
        self.image_ids = ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def metadata(self) -> dict:
        """JSON-serialisable description (class names, category ids, annotation file)."""
        return {'class_names': list(self.class_names), 'category_ids': list(self.category_ids),
                'annotations': str(self.ann_file)}

    def image_path(self, info: dict) -> Path:
        """Path of the image described by a COCO ``images`` entry."""
        name = info['file_name']
        if self.image_dir is not None:
            return self.image_dir / name
        base = self.ann_file.parent
        candidates = [base / name, base / 'images' / name, base.parent / 'images' / name]
        return next((p for p in candidates if p.is_file()), candidates[0])

    def load_sample(self, index: int) -> Sample:
        """Decode image ``index`` and its annotations in source pixels (no resizing, no augmentation)."""
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_path(info)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f'cannot read image {path}')
        height, width = bgr.shape[:2]
        boxes, labels, masks, crowd = [], [], [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann['category_id'] not in self._label_of:
                continue
            x, y, w, h = (float(v) for v in ann['bbox'])
            if ann.get('iscrowd', 0):
                crowd.append((x, y, x + w, y + h))
            elif w >= _MIN_BOX_PX and h >= _MIN_BOX_PX:
                boxes.append((x, y, x + w, y + h))
                labels.append(self._label_of[ann['category_id']])
                masks.append(_ann_mask(self.coco, ann, height, width))
        mask_t = (torch.from_numpy(np.stack(masks)).float() if masks
                  else torch.zeros((0, height, width), dtype=torch.float32))
        return Sample(image=upload_image(bgr, 'cpu', 'bgr')[0], boxes=_boxes(boxes),
                      labels=torch.tensor(labels, dtype=torch.int64), masks=mask_t, crowd_boxes=_boxes(crowd))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` = index, or (index, draw) from :class:`InfiniteBatchSampler`.

        Returns a dict with ``image`` float32 ``[3, S, S]`` (normalised network input), ``boxes`` float32
        ``[n, 4]`` xyxy relative, ``labels`` int64 ``[n]``, ``masks`` float32 ``[n, M, M]`` in {0, 1},
        ``crowd_boxes`` float32 ``[m, 4]`` xyxy relative and ``image_id`` (int).
        """
        index, draw = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)
        sample = self.load_sample(index)
        flip = False
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, index, draw])
            sample = random_crop(sample, rng, self.augment)
            flip = rng.random() < self.augment.flip_prob
            sample.image = photometric_jitter(sample.image, rng, self.augment)
        out = resize_sample(sample, self.input_size, self.mask_size)
        if flip:
            out = hflip_sample(out)
        out['image'] = normalize(out['image'][None], self.normalization)[0]
        out['image_id'] = self.image_ids[index]
        return out


def _boxes(rows: list[tuple[float, float, float, float]]) -> torch.Tensor:
    """float32 ``[n, 4]`` from a list of 4-tuples (``[0, 4]`` when empty)."""
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def random_crop(sample: Sample, rng: np.random.Generator, aug: AugmentConfig, tries: int = 10) -> Sample:
    """With probability ``aug.crop_prob`` crop a random window (each side ``min_crop_scale..1`` of the image).

    Instances keeping less than ``aug.min_visible`` of their mask area, or with a box under one pixel,
    are dropped; a window that would drop every instance is redrawn (up to ``tries`` times, else no crop).
    Boxes are clipped to the window. Returns a new Sample in window pixels.
    """
    if rng.random() >= aug.crop_prob:
        return sample
    _, height, width = sample.image.shape
    area = sample.masks.sum(dim=(1, 2))
    for _ in range(tries):
        cw = int(round(width * rng.uniform(aug.min_crop_scale, 1.0)))
        ch = int(round(height * rng.uniform(aug.min_crop_scale, 1.0)))
        x0, y0 = int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1))
        masks = sample.masks[:, y0:y0 + ch, x0:x0 + cw]
        offset = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
        limit = torch.tensor([cw, ch, cw, ch], dtype=torch.float32)
        boxes = torch.minimum((sample.boxes - offset).clamp(min=0), limit)
        keep = ((masks.sum(dim=(1, 2)) >= aug.min_visible * area.clamp(min=1))
                & (boxes[:, 2] - boxes[:, 0] >= _MIN_BOX_PX) & (boxes[:, 3] - boxes[:, 1] >= _MIN_BOX_PX))
        if bool(keep.any()) or sample.labels.numel() == 0:
            crowd = torch.minimum((sample.crowd_boxes - offset).clamp(min=0), limit)
            return Sample(sample.image[:, y0:y0 + ch, x0:x0 + cw].contiguous(), boxes[keep],
                          sample.labels[keep], masks[keep].contiguous(), crowd)
    return sample


def photometric_jitter(image: torch.Tensor, rng: np.random.Generator, aug: AugmentConfig) -> torch.Tensor:
    """Random brightness, contrast and saturation of a float ``[3, H, W]`` RGB 0..255 image (new tensor,
    clamped to 0..255). Each jitter is applied with probability ``aug.photometric_prob``."""
    out = image
    if rng.random() < aug.photometric_prob:
        out = out + float(rng.uniform(-aug.brightness, aug.brightness))
    if rng.random() < aug.photometric_prob:
        mean = out.mean()
        out = (out - mean) * float(rng.uniform(*aug.contrast)) + mean
    if rng.random() < aug.photometric_prob:
        grey = (0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2])[None]
        out = grey + (out - grey) * float(rng.uniform(*aug.saturation))
    return out.clamp(0.0, 255.0)


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """float ``[n, H, W]`` {0, 1} masks -> float32 ``[n, size, size]`` {0, 1}: area-aware (antialiased)
    bilinear resize, then ``>= 0.5``."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, size, size))
    soft = F.interpolate(masks[None].float(), size=(size, size), mode='bilinear', align_corners=False,
                         antialias=masks.shape[-1] > size or masks.shape[-2] > size)[0]
    return (soft >= 0.5).float()


def resize_sample(sample: Sample, input_size: int, mask_size: int) -> dict:
    """Stretch a Sample to the square network input like inference; boxes become relative.

    Returns a dict with ``image`` float32 ``[3, S, S]`` RGB 0..255 (not yet normalised), ``boxes``
    ``[n, 4]`` and ``crowd_boxes`` ``[m, 4]`` relative xyxy in [0, 1], ``labels`` ``[n]`` and ``masks``
    float32 ``[n, M, M]``.
    """
    _, height, width = sample.image.shape
    image = F.interpolate(sample.image[None], size=(input_size, input_size), mode='bilinear',
                          align_corners=False, antialias=False)[0]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return {'image': image, 'boxes': (sample.boxes / scale).clamp(0, 1), 'labels': sample.labels,
            'masks': resize_masks(sample.masks, mask_size),
            'crowd_boxes': (sample.crowd_boxes / scale).clamp(0, 1)}


def hflip_sample(item: dict) -> dict:
    """Horizontally flip a resized sample dict (image, masks, relative boxes); returns a new dict."""
    def flip_boxes(b: torch.Tensor) -> torch.Tensor:
        return torch.stack((1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]), dim=1)
    return {**item, 'image': item['image'].flip(-1), 'masks': item['masks'].flip(-1),
            'boxes': flip_boxes(item['boxes']), 'crowd_boxes': flip_boxes(item['crowd_boxes'])}


def collate_batch(items: list[dict]) -> Batch:
    """Stack the images of dataset items; keep per-image targets as lists."""
    return Batch(images=torch.stack([it['image'] for it in items]),
                 boxes=[it['boxes'] for it in items], labels=[it['labels'] for it in items],
                 masks=[it['masks'] for it in items], crowd_boxes=[it['crowd_boxes'] for it in items],
                 image_ids=torch.tensor([int(it['image_id']) for it in items], dtype=torch.int64))


class InfiniteBatchSampler(Sampler):
    """Endless stream of batches of ``(index, draw)`` keys.

    Epoch ``e`` visits the dataset in the order ``default_rng([seed, e]).permutation(n)`` (or 0..n-1 if
    not ``shuffle``); the stream of epochs is cut into batches of ``batch_size`` (a batch may span two
    epochs). ``draw`` is the position of the key in the stream, so batch ``k`` is always the same and
    ``start_batch`` resumes exactly.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 start_batch: int = 0):
        if num_samples < 1 or batch_size < 1:
            raise ValueError('num_samples and batch_size must be positive')
        self.num_samples, self.batch_size, self.seed = int(num_samples), int(batch_size), int(seed)
        self.shuffle, self.start_batch = shuffle, int(start_batch)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        draw = self.start_batch * self.batch_size
        epoch, pos = divmod(draw, self.num_samples)
        order = self._order(epoch)
        while True:
            batch = []
            for _ in range(self.batch_size):
                if pos == self.num_samples:
                    epoch, pos = epoch + 1, 0
                    order = self._order(epoch)
                batch.append((int(order[pos]), draw))
                pos, draw = pos + 1, draw + 1
            yield batch


def _seed_worker(worker_id: int) -> None:
    """Seed numpy's legacy global RNG of a loader worker from its torch seed (torch seeds it per worker)."""
    np.random.seed(torch.initial_seed() % 2 ** 32)


def make_loader(dataset: Dataset, batch_size: int, seed: int = 0, start_batch: int = 0,
                num_workers: int = 0, shuffle: bool = True) -> DataLoader:
    """Endless DataLoader of :class:`Batch` es over ``dataset`` (see :class:`InfiniteBatchSampler`)."""
    sampler = InfiniteBatchSampler(len(dataset), batch_size, seed, shuffle, start_batch)
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch, num_workers=num_workers,
                      worker_init_fn=_seed_worker if num_workers > 0 else None, generator=generator,
                      persistent_workers=False, prefetch_factor=2 if num_workers > 0 else None)

