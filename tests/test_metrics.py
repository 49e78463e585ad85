"""Localization metrics against hand-made maps, masks and boxes whose answers are known."""

import pytest
import torch

from gradcam_core.metrics import (
    BOX_THRESHOLD,
    box_from_map,
    box_from_mask,
    box_iou,
    box_ious,
    boxes_from_maps,
    boxes_from_masks,
    mask_coverages,
    mask_ious,
    mass_in_masks,
    pointing_game,
    pointing_game_hits,
)


def _mask(shape, *rows_cols):
    mask = torch.zeros(shape, dtype=torch.bool)
    for rows, cols in rows_cols:
        mask[rows, cols] = True
    return mask


# --- pointing game -----------------------------------------------------------------------------


def test_pointing_game_hits_when_the_maximum_is_inside_the_object():
    m = torch.zeros(6, 6)
    m[1, 4] = 5.0
    m[4, 1] = 3.0  # a lower bump outside the object does not matter
    assert pointing_game(m, _mask((6, 6), (slice(0, 3), slice(3, 6))))


def test_pointing_game_misses_when_the_maximum_is_outside_the_object():
    m = torch.zeros(6, 6)
    m[4, 1] = 5.0
    m[1, 4] = 3.0  # the object has some heat, but not the most
    assert not pointing_game(m, _mask((6, 6), (slice(0, 3), slice(3, 6))))


def test_pointing_game_upsamples_the_map_to_the_mask():
    # [[0, 1], [0, 0]] bilinearly upsampled to 4x4 peaks at pixel (0, 3) alone (value 1; its
    # neighbours get 0.75), so a one-pixel object there is hit, and the pixel beside it missed.
    m = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert pointing_game(m, _mask((4, 4), (0, 3)))
    assert not pointing_game(m, _mask((4, 4), (0, 2)))


def test_a_constant_map_points_nowhere():
    everywhere = torch.ones(4, 4, dtype=torch.bool)
    assert not pointing_game(torch.zeros(2, 2), everywhere)
    assert not pointing_game(torch.full((2, 2), 3.0), everywhere)


def test_pointing_game_hits_is_the_batch_of_single_answers():
    maps = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(0))
    masks = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5
    hits = pointing_game_hits(maps, masks)
    assert hits.dtype == torch.bool and hits.shape == (6,)
    assert hits.tolist() == [pointing_game(m, k) for m, k in zip(maps, masks)]


def test_pointing_game_hits_refuses_mismatched_batches():
    with pytest.raises(ValueError, match="same N"):
        pointing_game_hits(torch.zeros(2, 4, 4), torch.zeros(3, 4, 4, dtype=torch.bool))


# --- boxes from masks --------------------------------------------------------------------------


def test_box_from_mask_is_tight_with_exclusive_ends():
    mask = _mask((6, 7), (slice(1, 3), slice(2, 5)), (4, 3))  # rows 1-2 and 4, columns 2-4
    x0, y0, x1, y1 = box_from_mask(mask)
    assert (x0, y0, x1, y1) == (2, 1, 5, 5)
    assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the box holds the whole mask, as a slice


def test_an_empty_mask_gives_the_empty_box():
    assert box_from_mask(torch.zeros(4, 4, dtype=torch.bool)) == (0, 0, 0, 0)


def test_boxes_from_masks_is_the_batch_of_single_answers():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 4, 4] = True
    masks[1, 0:2, 1:4] = True
    assert boxes_from_masks(masks).tolist() == [[4, 4, 5, 5], [1, 0, 4, 2]]


# --- boxes from maps (the Grad-CAM paper's protocol) -------------------------------------------


def test_the_box_surrounds_the_largest_region_not_the_highest_one():
    m = torch.zeros(8, 8)
    m[0, 0] = 1.0  # the maximum, one pixel
    m[4:7, 2:6] = 0.5  # a 3x4 region at 50% of the maximum
    assert box_from_map(m, (8, 8)) == (2, 4, 6, 7)


def test_regions_are_eight_connected():
    m = torch.zeros(8, 8)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # three pixels touching at their corners: one region
    m[6, 4:6] = 1.0  # two pixels side by side
    assert box_from_map(m, (8, 8)) == (0, 0, 3, 3)


def test_the_threshold_keeps_exactly_fifteen_percent_and_drops_less():
    assert BOX_THRESHOLD == 0.15
    m = torch.zeros(5, 5)
    m[2, 2] = 20.0
    m[2, 3] = 3.0  # exactly 15% of the maximum: kept
    m[2, 1] = 2.99  # just below: dropped
    assert box_from_map(m, (5, 5)) == (2, 2, 4, 3)
    assert box_from_map(m, (5, 5), threshold=0.149) == (1, 2, 4, 3)


def test_the_map_is_upsampled_to_the_image_before_thresholding():
    m = torch.zeros(4, 4)
    m[1:3, 1:3] = 1.0  # the middle quarter of the map
    # Upsampled 10x, pixel p samples the map at s = (p + 0.5) / 10 - 0.5, where the middle rows
    # rise as s from cell 0 to cell 1 and fall as 3 - s from cell 2 to cell 3. At 20% of the
    # maximum: s >= 0.2 gives p >= 7, and 3 - s >= 0.2 gives p <= 32.
    assert box_from_map(m, (40, 40), threshold=0.2) == (7, 7, 33, 33)


def test_a_map_without_positive_values_gives_the_empty_box():
    assert box_from_map(torch.zeros(4, 4), (8, 8)) == (0, 0, 0, 0)
    assert box_from_map(-torch.ones(4, 4), (8, 8)) == (0, 0, 0, 0)


def test_boxes_from_maps_is_the_batch_of_single_answers():
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    boxes = boxes_from_maps(maps, (16, 16))
    assert boxes.dtype == torch.long and boxes.shape == (3, 4)
    assert [tuple(b) for b in boxes.tolist()] == [box_from_map(m, (16, 16)) for m in maps]


# --- box IoU ------------------------------------------------------------------------------------


def test_identical_boxes_have_iou_one():
    assert box_iou((3, 1, 9, 7), (3, 1, 9, 7)) == 1.0


def test_disjoint_and_touching_boxes_have_iou_zero():
    assert box_iou((0, 0, 2, 2), (5, 5, 8, 8)) == 0.0
    assert box_iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0  # ends are exclusive: no shared pixel


def test_half_overlapping_boxes_by_hand():
    # shifted by half their width: intersection 2x4 = 8, union 16 + 16 - 8 = 24
    assert box_iou((0, 0, 4, 4), (2, 0, 6, 4)) == pytest.approx(8 / 24)
    # one box is the top half of the other: intersection 8, union 16
    assert box_iou((0, 0, 4, 4), (0, 0, 4, 2)) == pytest.approx(0.5)


def test_iou_is_symmetric_and_empty_boxes_score_zero():
    a, b = (1, 2, 7, 5), (4, 0, 9, 4)  # intersection 3x2 = 6, union 18 + 20 - 6 = 32
    assert box_iou(a, b) == box_iou(b, a) == pytest.approx(6 / 32)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    assert box_iou((0, 0, 0, 0), a) == 0.0


def test_box_ious_pairs_rows():
    a = torch.tensor([[0, 0, 4, 4], [0, 0, 2, 2]])
    b = torch.tensor([[2, 0, 6, 4], [0, 0, 2, 2]])
    assert box_ious(a, b).tolist() == pytest.approx([1 / 3, 1.0])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_ious(a, b[:1])


# --- mask IoU -------------------------------------------------------------------------------------


def test_mask_iou_of_a_map_at_the_masks_size_by_hand():
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0:2] = 4.0
    m[0, 1, 0:2] = 1.0  # 25% of the maximum
    m[0, 2, 0] = 0.5  # 12.5%
    # the cells at or above threshold * 4 are kept
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, :] = True  # the first row
    # 15%: the 4 cells >= 0.6, 2 of them in the first row: union 4 + 4 - 2 = 6, IoU 2/6
    assert mask_ious(m, mask).tolist() == pytest.approx([2 / 6])
    # 50%: the two 4s, both in the row: 2/4
    assert mask_ious(m, mask, threshold=0.5).tolist() == pytest.approx([0.5])
    # 10%: the 4s, the 1s and the 0.5: 5 cells, union 5 + 4 - 2 = 7
    assert mask_ious(m, mask, threshold=0.1).tolist() == pytest.approx([2 / 7])


def test_mask_iou_threshold_keeps_exactly_the_fraction():
    m = torch.tensor([[[20.0, 3.0, 2.99, 0.0]]])  # 3 is exactly 15% of 20
    mask = torch.tensor([[[True, True, True, False]]])
    # kept: 20 and 3 (at the threshold); 2.99 is not: IoU 2/3
    assert mask_ious(m, mask).tolist() == pytest.approx([2 / 3])


def test_mask_iou_upsamples_the_map_to_the_mask():
    # [[0, 1], [0, 0]] upsampled to 4x4 is the outer product of [1, .75, .25, 0] (rows) and
    # [0, .25, .75, 1] (columns):
    #   0  .25    .75    1
    #   0  .1875  .5625  .75
    #   0  .0625  .1875  .25
    #   0  0      0      0
    m = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    corner = torch.zeros(1, 4, 4, dtype=torch.bool)
    corner[0, :2, 2:] = True  # the top-right quarter
    assert mask_ious(m, corner, threshold=0.5).tolist() == pytest.approx([1.0])  # exactly the quarter
    assert mask_ious(m, corner, threshold=0.7).tolist() == pytest.approx([3 / 4])  # 1, .75 and .75
    assert mask_ious(m, corner, threshold=0.75).tolist() == pytest.approx([3 / 4])  # >=: .75 stays
    assert mask_ious(m, corner, threshold=0.25).tolist() == pytest.approx([4 / 6])  # and .5625, .25 twice
    assert mask_ious(m, corner).tolist() == pytest.approx([4 / 8])  # 15%: also .1875 twice


def test_a_map_with_nothing_above_zero_selects_nothing():
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True
    maps = torch.stack([torch.zeros(2, 2), -torch.ones(2, 2), -torch.rand(2, 2) - 0.1])
    assert mask_ious(maps, mask).tolist() == [0.0, 0.0, 0.0]


def test_empty_masks_score_zero():
    maps = torch.stack([torch.zeros(4, 4), torch.rand(4, 4) + 0.1])
    assert mask_ious(maps, torch.zeros(2, 4, 4, dtype=torch.bool)).tolist() == [0.0, 0.0]


def test_negative_values_are_never_selected():
    # threshold 0 keeps what is >= 0 only
    m = torch.tensor([[[2.0, 0.0], [-1.0, -3.0]]])
    mask = torch.tensor([[[True, True], [True, True]]])
    assert mask_ious(m, mask, threshold=0.0).tolist() == pytest.approx([0.5])


def test_mask_ious_is_the_batch_of_single_answers_and_refuses_mismatched_batches():
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(5, 4, 4, generator=g)
    masks = torch.rand(5, 8, 8, generator=g) > 0.5
    ious = mask_ious(maps, masks)
    assert ious.shape == (5,)
    assert ious.tolist() == [mask_ious(maps[i : i + 1], masks[i : i + 1]).item() for i in range(5)]
    assert all(0.0 <= v <= 1.0 for v in ious.tolist())
    with pytest.raises(ValueError, match="same N"):
        mask_ious(maps, masks[:4])


# --- mass in a mask ----------------------------------------------------------------------------


def test_mass_in_masks_by_hand():
    maps = torch.tensor([[[3.0, 1.0], [0.0, -4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    masks = torch.stack([_mask((2, 2), (0, 0)), _mask((2, 2), (0, slice(None)))])
    # negative values count as zero: 3 of 4; a uniform map: the mask's share of the area
    assert torch.allclose(mass_in_masks(maps, masks), torch.tensor([0.75, 0.5]))


def test_mass_in_masks_upsamples_the_map_and_a_zero_map_has_none():
    m = torch.zeros(1, 2, 2)
    m[0, 0, 0] = 1.0
    mask = _mask((4, 4), (slice(0, 2), slice(0, 2)))[None]
    up = torch.nn.functional.interpolate(m[None], size=(4, 4), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(mass_in_masks(m, mask), up[:, :2, :2].sum() / up.sum())
    assert mass_in_masks(torch.zeros(1, 2, 2), mask).tolist() == [0.0]


def test_mass_in_masks_refuses_mismatched_batches():
    with pytest.raises(ValueError, match="same N"):
        mass_in_masks(torch.ones(2, 2, 2), torch.ones(3, 2, 2, dtype=torch.bool))


def test_mask_coverage_is_the_share_of_the_object_in_the_region_by_hand():
    m = torch.tensor([[[1.0, 0.4], [0.6, 0.0]]])
    mask = _mask((2, 2), (slice(None), 0))[None] | _mask((2, 2), (0, 1))[None]  # three of four cells
    # at half the peak the region is {(0, 0), (1, 0)}: two of the object's three cells, spilling nowhere
    assert torch.allclose(mask_coverages(m, mask, threshold=0.5), torch.tensor([2 / 3]))
    assert mask_coverages(m, mask, threshold=0.3).tolist() == [1.0]
    assert mask_coverages(torch.zeros(1, 2, 2), mask).tolist() == [0.0]
    assert mask_coverages(m, torch.zeros(1, 2, 2, dtype=torch.bool)).tolist() == [0.0]
