"""Localization metrics: does a saliency map find the object whose mask and box we know?

Boxes are ``(x0, y0, x1, y1)`` in pixels with the ends exclusive, like Python slices: the box
covers columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``, so ``mask[y0:y1, x0:x1]`` is its
content, its width is ``x1 - x0`` and ``(0, 0, 0, 0)`` is the empty box (what a map with nothing
above zero yields).

Two protocols:

* **Pointing game** (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016):
  a hit when the map's maximum, after upsampling to the image, falls inside the object's mask.
  No tolerance margin is used (the original allows 15 pixels; these objects are small).
* **Box IoU** (Selvaraju et al., "Grad-CAM", ICCV 2017, Section 4.1): upsample the map to the
  image, keep the pixels at or above 15% of its maximum, draw the box around the largest
  8-connected region, and count a success when its IoU with the ground-truth box exceeds 0.5.
* **Mask IoU** (weakly-supervised segmentation): the pixels at or above a fraction of the map's
  maximum, against the object's mask.
* **Mass in a mask**, the energy-based pointing game (Wang et al., "Score-CAM", CVPRW 2020,
  Section 5.2): the share of the map's total (upsampled, non-negative) value that lies in a mask.
  Unlike the pointing game it sees a map that splits its attention between two places.

Example:
    >>> import torch
    >>> m = torch.zeros(8, 8); m[2:4, 5:7] = 1.0
    >>> mask = torch.zeros(8, 8, dtype=torch.bool); mask[2:4, 5:8] = True
    >>> pointing_game(m, mask), box_from_map(m, (8, 8)), box_iou((5, 2, 7, 4), box_from_mask(mask))
    (True, (5, 2, 7, 4), 0.6666666666666666)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from ..maps import upsample

__all__ = [
    "BOX_THRESHOLD",
    "box_from_map",
    "box_from_mask",
    "box_iou",
    "box_ious",
    "boxes_from_maps",
    "boxes_from_masks",
    "mask_coverages",
    "mask_ious",
    "mass_in_masks",
    "pointing_game",
    "pointing_game_hits",
]

#: The Grad-CAM paper's threshold: a map's pixels at or above this fraction of its maximum.
BOX_THRESHOLD = 0.15

Box = tuple[int, int, int, int]


def pointing_game(m: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether the maximum of the ``(h, w)`` map, upsampled to the ``(H, W)`` mask, lies in the mask.

    The map is resized bilinearly (:func:`gradcam_core.maps.upsample`); on ties the first maximum
    in row-major order counts. A constant map (all zeros, say) points nowhere and misses.

    Example:
        >>> mask = torch.zeros(4, 4, dtype=torch.bool); mask[0, 3] = True
        >>> pointing_game(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), mask)
        True
    """
    return bool(pointing_game_hits(torch.as_tensor(m)[None], torch.as_tensor(mask)[None])[0])


def pointing_game_hits(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """:func:`pointing_game` for a batch: ``(N, h, w)`` maps, ``(N, H, W)`` masks -> ``(N,)`` bool."""
    maps, masks = torch.as_tensor(maps), torch.as_tensor(masks).bool()
    _check_batch(maps, masks)
    flat = upsample(maps.detach().cpu(), tuple(masks.shape[-2:])).flatten(1)
    peaks = flat.argmax(dim=1)
    hits = masks.cpu().flatten(1).gather(1, peaks[:, None])[:, 0]
    return hits & (flat.amax(dim=1) > flat.amin(dim=1))


def box_from_map(m: torch.Tensor, size: tuple[int, int], threshold: float = BOX_THRESHOLD) -> Box:
    """The Grad-CAM paper's box: around the largest region of the upsampled map at or above
    ``threshold * max``.

    Args:
        m: ``(h, w)`` map, any non-negative range (a CAM or Grad-CAM map before normalization).
        size: ``(H, W)`` of the image the box is for; the map is upsampled bilinearly to it.
        threshold: fraction of the map's maximum; pixels ``>= threshold * max`` are kept.

    Returns:
        ``(x0, y0, x1, y1)``, ends exclusive; ``(0, 0, 0, 0)`` when the map has no positive value.
        The largest region is the 8-connected one with the most pixels (ties: the first in
        row-major order).

    Example:
        >>> m = torch.zeros(6, 6); m[0, 0] = 1.0; m[3:5, 2:6] = 0.5      # one pixel, one 2x4 blob
        >>> box_from_map(m, (6, 6))
        (2, 3, 6, 5)
    """
    heat = upsample(torch.as_tensor(m).detach().cpu().float(), tuple(size)).double().numpy()
    peak = heat.max()
    if not peak > 0:
        return (0, 0, 0, 0)
    # A ratio in float64 keeps a value of exactly 15% of the maximum (3 of 20), which a float32
    # product 0.15 * max can round out.
    kept = heat / peak >= threshold
    # Diagonal neighbours join a region: pixels touching only at their corners are one blob.
    regions, count = ndimage.label(kept, structure=ndimage.generate_binary_structure(2, 2))
    largest = 1 + int(np.argmax(np.bincount(regions.ravel(), minlength=count + 1)[1:]))
    return box_from_mask(torch.from_numpy(regions == largest))


def boxes_from_maps(
    maps: torch.Tensor, size: tuple[int, int], threshold: float = BOX_THRESHOLD
) -> torch.Tensor:
    """:func:`box_from_map` for each of ``(N, h, w)`` maps -> ``(N, 4)`` long."""
    return torch.tensor(
        [box_from_map(m, size, threshold) for m in torch.as_tensor(maps)], dtype=torch.long
    ).view(-1, 4)


def box_from_mask(mask: torch.Tensor) -> Box:
    """The tightest box ``(x0, y0, x1, y1)`` around an ``(H, W)`` mask, ends exclusive.

    Example:
        >>> mask = torch.zeros(5, 5, dtype=torch.bool); mask[1:3, 2:5] = True
        >>> box_from_mask(mask)
        (2, 1, 5, 3)
    """
    return tuple(boxes_from_masks(torch.as_tensor(mask)[None])[0].tolist())


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """:func:`box_from_mask` for ``(N, H, W)`` masks -> ``(N, 4)`` long; an empty mask gives zeros."""
    masks = torch.as_tensor(masks).bool()
    if masks.dim() != 3:
        raise ValueError(f"Expected masks of shape (N, H, W), got {tuple(masks.shape)}.")
    x0, x1 = _span(masks.any(dim=1))  # the occupied columns
    y0, y1 = _span(masks.any(dim=2))  # the occupied rows
    return torch.stack([x0, y0, x1, y1], dim=1)


def box_iou(a: Sequence[int] | torch.Tensor, b: Sequence[int] | torch.Tensor) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1)``, ends exclusive.

    ``area = (x1 - x0) * (y1 - y0)``, ``IoU = area(a & b) / (area(a) + area(b) - area(a & b))``;
    two empty boxes have IoU 0.

    Example:
        >>> box_iou((0, 0, 4, 4), (2, 0, 6, 4))     # overlap 2x4 = 8, union 16 + 16 - 8 = 24
        0.3333333333333333
    """
    return float(box_ious(torch.as_tensor(a)[None], torch.as_tensor(b)[None])[0])


def box_ious(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`box_iou` of matching rows: ``(N, 4)`` and ``(N, 4)`` -> ``(N,)`` float64."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape or a.dim() != 2 or a.shape[1] != 4:
        raise ValueError(
            f"Expected two (N, 4) boxes tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    low = torch.maximum(a[:, :2], b[:, :2])
    high = torch.minimum(a[:, 2:], b[:, 2:])
    overlap = (high - low).clamp(min=0).prod(dim=1)
    union = _area(a) + _area(b) - overlap
    return torch.where(union > 0, overlap / union.clamp(min=1e-12), 0.0)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)


def _span(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and one past the last index of the True entries of each ``(N, L)`` row."""
    length = occupied.shape[1]
    positions = torch.arange(length)
    first = torch.where(occupied, positions, length).amin(dim=1)
    last = torch.where(occupied, positions, -1).amax(dim=1)
    empty = ~occupied.any(dim=1)
    return first.masked_fill(empty, 0), (last + 1).masked_fill(empty, 0)


def _check_batch(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if maps.dim() != 3 or masks.dim() != 3 or maps.shape[0] != masks.shape[0]:
        raise ValueError(
            f"Expected (N, h, w) maps and (N, H, W) masks with the same N, got {tuple(maps.shape)} "
            f"and {tuple(masks.shape)}."
        )


def mask_ious(maps: torch.Tensor, masks: torch.Tensor, threshold: float = BOX_THRESHOLD) -> torch.Tensor:
    """``(N,)`` IoU of each map's region at or above ``threshold`` of its maximum with its mask.

    ``maps`` ``(N, h, w)`` at any resolution (upsampled to the masks' size), ``masks`` ``(N, H, W)``
    bool. A map that is zero everywhere selects nothing: its IoU is 0.

    Example:
        >>> m = torch.zeros(1, 4, 4); m[0, :2, :2] = 1.0
        >>> mask = torch.zeros(1, 4, 4, dtype=torch.bool); mask[0, :2, :] = True
        >>> mask_ious(m, mask)
        tensor([0.5000])
    """
    region, masks = _regions(maps, masks, threshold)
    union = (region | masks).flatten(1).sum(dim=1)
    return torch.where(union > 0, (region & masks).flatten(1).sum(dim=1) / union.clamp(min=1), 0.0)


def mask_coverages(maps: torch.Tensor, masks: torch.Tensor, threshold: float = BOX_THRESHOLD) -> torch.Tensor:
    """``(N,)`` share of each mask's pixels inside its map's region at or above ``threshold`` of the peak.

    The recall of :func:`mask_ious`' region: how much of the object the map covers, however far
    it spills beyond. CAM's paper says global average pooling makes a network find an object's
    whole extent and global max pooling one part of it; this is what that claim measures. An
    empty mask, or a map with nothing above zero, covers 0.

    Example:
        >>> m = torch.zeros(1, 4, 4); m[0, :2, :2] = 1.0
        >>> mask = torch.zeros(1, 4, 4, dtype=torch.bool); mask[0, :2, :] = True
        >>> mask_coverages(m, mask)
        tensor([0.5000])
    """
    region, masks = _regions(maps, masks, threshold)
    area = masks.flatten(1).sum(dim=1)
    return torch.where(area > 0, (region & masks).flatten(1).sum(dim=1) / area.clamp(min=1), 0.0)


def _regions(maps: torch.Tensor, masks: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's pixels at or above ``threshold`` of its peak (none for a map without a positive
    value), upsampled to the masks' size, and the masks as bool on the CPU."""
    _check_batch(maps, masks)
    up = upsample(maps.detach().cpu().float(), tuple(masks.shape[-2:]))
    peak = up.flatten(1).amax(dim=1).view(-1, 1, 1)
    return (up >= threshold * peak) & (peak > 0), masks.cpu().bool()


def mass_in_masks(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    r"""``(N,)`` share of each map's mass inside its mask: :math:`\sum_{p \in M} L_p / \sum_p L_p`.

    ``maps`` ``(N, h, w)`` at any resolution, upsampled bilinearly to the masks' size, negative
    values clipped to zero; ``masks`` ``(N, H, W)`` bool. A map that is zero everywhere has no mass
    anywhere: its share is 0. A uniform map's share is the mask's area over the picture's, the
    level a map must beat to be said to look at the mask.

    Example:
        >>> m = torch.tensor([[[3.0, 1.0], [0.0, 0.0]]])
        >>> mask = torch.zeros(1, 2, 2, dtype=torch.bool); mask[0, 0, 0] = True
        >>> mass_in_masks(m, mask)
        tensor([0.7500])
    """
    _check_batch(maps, masks)
    up = upsample(maps.detach().cpu().float(), tuple(masks.shape[-2:])).clamp(min=0).flatten(1)
    total = up.sum(dim=1)
    inside = (up * masks.cpu().flatten(1)).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(up.dtype).tiny), 0.0)
