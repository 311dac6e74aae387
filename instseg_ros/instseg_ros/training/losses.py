"""YOLACT training losses: prior matching, box / class / mask / semantic (and YOLACT++ mask-IoU) losses.

Conventions: priors float ``[P, 4]`` (cx, cy, w, h) relative; gt boxes float ``[n, 4]`` xyxy relative;
labels int64 ``[n]`` 0-based (model class channel = label + 1, channel 0 = background).

Normalisation (as the YOLACT reference, ``layers/modules/multibox_loss.py``):

* ``box``: smooth-L1 (beta 1) summed over positives and coordinates / number of positives, x 1.5.
* ``conf``: softmax cross-entropy over positives and OHEM negatives (the ``negpos_ratio x #pos`` priors
  of each image with the highest background loss) / number of positives, x 1.
* ``mask``: per positive prior, BCE between ``sigmoid(proto @ coeffs)`` and its gt mask at prototype
  resolution, zeroed outside the gt box (padded by 1 px, like inference cropping) and divided by the
  gt box area in prototype pixels -- i.e. the mean BCE inside the box, as the reference's
  ``mask_proto_normalize_emulate_roi_pooling``. Averaged over the trained masks (at most
  ``masks_to_train`` random positives per image; the reference divides by all positives instead,
  which under-weights crowded images), x 6.125.
* ``semantic``: BCE-with-logits of the semantic head against per-class union masks downsampled to its
  resolution, summed over classes, averaged over pixels and images, x 1.
* ``maskiou`` (YOLACT++ only): smooth-L1 between the mask-IoU net's prediction at the gt class and the
  IoU of the binarised cropped mask with the gt, for gt masks of at least 25 proto pixels; mean, x 25.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from instseg_ros.core.ops.boxes import box_iou, center_size, encode, point_form
from instseg_ros.core.ops.masks import crop_masks


@dataclass(frozen=True)
class LossConfig:
    """Matching thresholds and loss weights (defaults: the YOLACT reference)."""

    pos_thresh: float = 0.5
    neg_thresh: float = 0.4
    crowd_thresh: float = 0.7
    negpos_ratio: int = 3
    masks_to_train: int = 100
    variances: tuple[float, float] = (0.1, 0.2)
    bbox_weight: float = 1.5
    conf_weight: float = 1.0
    mask_weight: float = 6.125
    semantic_weight: float = 1.0
    maskiou_weight: float = 25.0
    maskiou_min_area: float = 25.0


class Match(NamedTuple):
    """Prior assignment of one image.

    conf_t: int64 ``[P]`` target class channel: ``label + 1`` (positive), 0 (background), -1 (ignored).
    gt_index: int64 ``[P]`` index of the gt box each prior is matched to (meaningful where conf_t > 0).
    overlap: float ``[P]`` IoU with that gt box (2.0 for the forced best prior of a gt).
    """

    conf_t: torch.Tensor
    gt_index: torch.Tensor
    overlap: torch.Tensor


def match(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, priors: torch.Tensor,
          crowd_boxes: torch.Tensor | None = None, cfg: LossConfig = LossConfig()) -> Match:
    """Assign every prior to a gt box by IoU of the prior (in point form) with the gt boxes.

    IoU >= ``pos_thresh`` -> positive, < ``neg_thresh`` -> background, in between -> ignored (-1).
    Every gt is first forced onto its best prior (greedily, highest IoU pair first, each prior at most
    once). Background priors overlapping a crowd box by IoU > ``crowd_thresh`` are ignored.

    Args:
        gt_boxes: float ``[n, 4]`` xyxy relative; gt_labels: int64 ``[n]`` 0-based;
        priors: float ``[P, 4]`` (cx, cy, w, h); crowd_boxes: float ``[m, 4]`` xyxy or None.
    """
    num_priors = priors.shape[0]
    if gt_boxes.shape[0] == 0:
        conf_t = torch.zeros(num_priors, dtype=torch.int64, device=priors.device)
        best_gt, best_overlap = conf_t.clone(), torch.zeros(num_priors, dtype=priors.dtype, device=priors.device)
    else:
        overlaps = box_iou(gt_boxes.to(priors.dtype), point_form(priors))  # [n, P]
        best_overlap, best_gt = overlaps.max(dim=0)
        _force_best_priors(overlaps, best_overlap, best_gt)
        conf_t = gt_labels.to(priors.device)[best_gt] + 1
        conf_t[best_overlap < cfg.pos_thresh] = -1
        conf_t[best_overlap < cfg.neg_thresh] = 0
    if crowd_boxes is not None and crowd_boxes.shape[0] > 0:
        crowd_iou = box_iou(crowd_boxes.to(priors.dtype), point_form(priors)).max(dim=0).values
        conf_t[(conf_t <= 0) & (crowd_iou > cfg.crowd_thresh)] = -1
    return Match(conf_t, best_gt, best_overlap)


def _force_best_priors(overlaps: torch.Tensor, best_overlap: torch.Tensor, best_gt: torch.Tensor) -> None:
    """In place: give every gt (rows of ``overlaps`` float ``[n, P]``) its own best prior, highest IoU pair
    first; the chosen priors get overlap 2.0 so they always become positives."""
    work = overlaps.clone()
    num_priors = overlaps.shape[1]
    for _ in range(overlaps.shape[0]):
        gt, prior = divmod(int(work.argmax()), num_priors)
        if work[gt, prior] < 0:
            break
        best_gt[prior], best_overlap[prior] = gt, 2.0
        work[gt, :], work[:, prior] = -1.0, -1.0


def match_batch(boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], priors: torch.Tensor,
                crowd_boxes: Sequence[torch.Tensor] | None = None,
                cfg: LossConfig = LossConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`match` per image -> (conf_t int64 ``[B, P]``, gt_index int64 ``[B, P]``)."""
    crowds = crowd_boxes if crowd_boxes is not None else [None] * len(boxes)
    results = [match(b, l, priors, c, cfg) for b, l, c in zip(boxes, labels, crowds)]
    return torch.stack([r.conf_t for r in results]), torch.stack([r.gt_index for r in results])


def box_loss(loc: torch.Tensor, priors: torch.Tensor, boxes: Sequence[torch.Tensor], conf_t: torch.Tensor,
             gt_index: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Sum of smooth-L1 over positives (``conf_t > 0``) between ``loc`` float ``[B, P, 4]`` and the encoded
    matched gt boxes. Returns a 0-dim tensor (not normalised)."""
    total = loc.new_zeros(())
    for b, gt in enumerate(boxes):
        pos = conf_t[b] > 0
        if not bool(pos.any()):
            continue
        target = encode(gt[gt_index[b, pos]].to(loc.dtype), priors[pos], variances)
        total = total + F.smooth_l1_loss(loc[b, pos], target, reduction='sum', beta=1.0)
    return total


def hard_negatives(conf: torch.Tensor, conf_t: torch.Tensor, negpos_ratio: int) -> torch.Tensor:
    """OHEM: bool ``[B, P]``, per image the ``negpos_ratio * #positives`` background priors with the
    highest background cross-entropy ``logsumexp(conf) - conf[..., 0]`` (ignored priors excluded).

    Args:
        conf: float ``[B, P, C]`` logits; conf_t: int64 ``[B, P]`` from :func:`match`.
    """
    with torch.no_grad():
        candidates = conf_t == 0
        bg_loss = torch.logsumexp(conf.float(), dim=-1) - conf[..., 0].float()
        bg_loss = bg_loss.masked_fill(~candidates, float('-inf'))
        rank = bg_loss.argsort(dim=1, descending=True).argsort(dim=1)
        num_neg = (negpos_ratio * (conf_t > 0).sum(dim=1, keepdim=True)).clamp(max=conf_t.shape[1] - 1)
        return (rank < num_neg) & candidates


def conf_loss(conf: torch.Tensor, conf_t: torch.Tensor, negpos_ratio: int) -> torch.Tensor:
    """Summed softmax cross-entropy over positives and hard negatives; ``conf`` float ``[B, P, C]``."""
    selected = (conf_t > 0) | hard_negatives(conf, conf_t, negpos_ratio)
    if not bool(selected.any()):
        return conf.sum() * 0.0
    return F.cross_entropy(conf[selected], conf_t[selected], reduction='sum')


def _masks_at(masks: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """gt masks float ``[n, M, M]`` -> float ``[n, H, W]`` in {0, 1} (bilinear + 0.5 threshold if resized)."""
    if tuple(masks.shape[-2:]) == tuple(size_hw) or masks.shape[0] == 0:
        return masks.reshape(masks.shape[0], *size_hw) if masks.shape[0] == 0 else masks
    soft = F.interpolate(masks[None].float(), size=size_hw, mode='bilinear', align_corners=False)[0]
    return (soft >= 0.5).to(masks.dtype)


def _select_positives(pos: torch.Tensor, limit: int, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of positive priors of one image, a random subset of at most ``limit`` (int64 ``[k]``)."""
    idx = pos.nonzero(as_tuple=False).flatten()
    if idx.numel() > limit:
        perm = torch.randperm(idx.numel(), generator=generator, device='cpu')[:limit]
        idx = idx[perm.to(idx.device)]
    return idx


class MaskTerms(NamedTuple):
    """Per trained mask: loss float ``[k]``, soft cropped masks float ``[k, Hp, Wp]`` (detached), gt masks
    float ``[k, Hp, Wp]``, labels int64 ``[k]``."""

    loss: torch.Tensor
    soft: torch.Tensor
    gt: torch.Tensor
    labels: torch.Tensor


def mask_terms(proto: torch.Tensor, coeffs: torch.Tensor, idx: torch.Tensor, gt_boxes: torch.Tensor,
               gt_masks: torch.Tensor, gt_labels: torch.Tensor) -> MaskTerms:
    """Box-normalised mask BCE of the priors ``idx`` of one image.

    Args:
        proto: float ``[Hp, Wp, K]``; coeffs: float ``[P, K]``; idx: int64 ``[k]`` prior indices;
        gt_boxes: float ``[k, 4]`` matched gt boxes xyxy relative; gt_masks: float ``[k, Hp, Wp]``;
        gt_labels: int64 ``[k]``.
    """
    height, width, _ = proto.shape
    logits = (proto @ coeffs[idx].t()).permute(2, 0, 1)  # [k, Hp, Wp]
    inside = crop_masks(torch.ones_like(logits), gt_boxes, padding=1)
    bce = F.binary_cross_entropy_with_logits(logits, gt_masks.to(logits.dtype), reduction='none')
    size = center_size(gt_boxes.to(logits.dtype))
    area = (size[:, 2] * width).clamp(min=1.0) * (size[:, 3] * height).clamp(min=1.0)
    loss = (bce * inside).sum(dim=(1, 2)) / area
    return MaskTerms(loss, (torch.sigmoid(logits) * inside).detach(), gt_masks, gt_labels)


def semantic_loss(segm: torch.Tensor, masks: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over images and pixels, summed over classes, of BCE-with-logits between ``segm`` float
    ``[B, C-1, Hs, Ws]`` and the per-class union of the gt masks (float ``[n, M, M]``) resized to Hs x Ws."""
    batch, num_fg, height, width = segm.shape
    target = torch.zeros_like(segm)
    for b in range(batch):
        if labels[b].numel() == 0:
            continue
        resized = _masks_at(masks[b], (height, width)).to(segm.dtype)
        for mask, label in zip(resized, labels[b].tolist()):
            target[b, label] = torch.maximum(target[b, label], mask)
    loss = F.binary_cross_entropy_with_logits(segm, target, reduction='sum')
    return loss / (height * width * batch)


def maskiou_loss(rescore: Callable[[torch.Tensor], torch.Tensor], terms: MaskTerms,
                 min_area: float) -> torch.Tensor | None:
    """YOLACT++ mask-IoU regression (mean smooth-L1), None when no gt mask is large enough.

    ``rescore``: soft masks float ``[k, 1, Hp, Wp]`` -> predicted IoU float ``[k, C-1]``.
    """
    keep = terms.gt.sum(dim=(1, 2)) >= min_area
    if not bool(keep.any()):
        return None
    soft, gt = terms.soft[keep], terms.gt[keep].to(terms.soft.dtype)
    binary = (soft > 0.5).to(soft.dtype)
    inter = (binary * gt).sum(dim=(1, 2))
    union = binary.sum(dim=(1, 2)) + gt.sum(dim=(1, 2)) - inter
    target = inter / union.clamp(min=1.0)
    pred = rescore(soft[:, None])
    pred = pred.gather(1, terms.labels[keep][:, None].to(pred.device)).squeeze(1)
    return F.smooth_l1_loss(pred, target, reduction='mean')


def _all_mask_terms(output, batch, pos: torch.Tensor, gt_index: torch.Tensor, cfg: LossConfig,
                    generator: torch.Generator | None) -> MaskTerms | None:
    """:func:`mask_terms` of every image concatenated (None when the batch has no positive)."""
    height, width = output.proto.shape[1:3]
    parts = []
    for b in range(pos.shape[0]):
        idx = _select_positives(pos[b], cfg.masks_to_train, generator)
        if idx.numel() == 0:
            continue
        gt_i = gt_index[b, idx]
        gt_masks = _masks_at(batch.masks[b], (height, width))[gt_i]
        parts.append(mask_terms(output.proto[b], output.coeffs[b], idx, batch.boxes[b][gt_i], gt_masks,
                                batch.labels[b][gt_i]))
    if not parts:
        return None
    return MaskTerms(*(torch.cat(items) for items in zip(*parts)))


def compute_losses(output, batch, cfg: LossConfig = LossConfig(),
                   rescore: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Weighted YOLACT losses of one batch.

    Args:
        output: YolactOutput of the model in training mode (``segm`` may be None: no semantic loss).
        batch: data.Batch on the output's device (relative boxes, 0-based labels, masks ``[n, M, M]``).
        cfg: thresholds and weights.
        rescore: YOLACT++ mask-IoU net (e.g. ``model.rescore``) to train, or None.
        generator: CPU generator choosing the trained masks when an image has > ``masks_to_train``.

    Returns:
        dict of 0-dim tensors: ``box``, ``conf``, ``mask``, ``semantic`` (if segm) and ``maskiou`` (if
        rescore); the training objective is their sum.
    """
    priors = output.priors
    conf_t, gt_index = match_batch(batch.boxes, batch.labels, priors, batch.crowd_boxes, cfg)
    pos = conf_t > 0
    num_pos = pos.sum().clamp(min=1).to(output.loc.dtype)
    losses = {
        'box': cfg.bbox_weight * box_loss(output.loc, priors, batch.boxes, conf_t, gt_index, cfg.variances)
        / num_pos,
        'conf': cfg.conf_weight * conf_loss(output.conf, conf_t, cfg.negpos_ratio) / num_pos,
    }
    terms = _all_mask_terms(output, batch, pos, gt_index, cfg, generator)
    losses['mask'] = (cfg.mask_weight * terms.loss.mean() if terms is not None
                      else output.coeffs.sum() * 0.0 + output.proto.sum() * 0.0)
    if output.segm is not None:
        losses['semantic'] = cfg.semantic_weight * semantic_loss(output.segm, batch.masks, batch.labels)
    if rescore is not None:
        value = maskiou_loss(rescore, terms, cfg.maskiou_min_area) if terms is not None else None
        losses['maskiou'] = cfg.maskiou_weight * value if value is not None else output.loc.new_zeros(())
    return losses
