"""gradcam_core.explainers.extremal_perturbation: Extremal Perturbation, the preservation game.

TorchRay, the authors' package, is not a dependency (its last release predates the torch used
here), so the method is checked for what it promises: the mask keeps the share of the picture
asked for, and on a toy model whose score lives in one known region the mask finds that region and
keeps the class better than any other mask of the same area.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import (
    assert_no_hooks,
    assert_same_state,
    count_calls,
    make_tiny,
    snapshot,
)
from torch import nn

import gradcam_core as gc
from gradcam_core.explainers.extremal_perturbation import (
    _blur_pyramid,
    _perturb,
    _SmoothMask,
)

CHECKER = (torch.arange(4)[:, None] + torch.arange(4)) % 2 * 2.0 - 1


class CheckerInOneRegion(nn.Module):
    """Class 0's logit is the correlation of a 16x16 picture with a checkerboard on rows 2-5, columns
    9-12 (class 1's its opposite). Blurring wipes a checkerboard out, so only keeping that 4x4
    region sharp keeps the score: on ``PICTURE`` 48 kept, about 0 blurred."""

    def forward(self, x):
        score = (x[:, :, 2:6, 9:13] * CHECKER).sum(dim=(1, 2, 3))
        return torch.stack([score, -score], dim=1)


PICTURE = torch.zeros(1, 3, 16, 16)
PICTURE[:, :, 2:6, 9:13] = CHECKER
REGION = torch.zeros(16, 16, dtype=torch.bool)
REGION[2:6, 9:13] = True


def kept_score(model, x, mask, target) -> float:
    """The class logit of ``x`` kept where ``mask`` is 1 and blurred where it is 0."""
    pyramid = _blur_pyramid(x, 8, 20.0 * min(x.shape[-2:]) / 224)
    with torch.no_grad():
        return float(model(_perturb(pyramid, mask[None]))[0, target])


def test_the_mask_finds_the_one_region_that_holds_the_score():
    mask = gc.ExtremalPerturbation(CheckerInOneRegion(), area=16 / 256)(PICTURE, target=0)[0]
    assert mask.shape == (16, 16) and mask.min() >= 0 and mask.max() <= 1
    assert mask[REGION].mean() > 0.8
    assert mask[~REGION].mean() < 0.03
    assert REGION.flatten()[mask.argmax()]


def test_the_mask_keeps_the_class_better_than_any_other_mask_of_its_area():
    model = CheckerInOneRegion()
    mask = gc.ExtremalPerturbation(model, area=16 / 256)(PICTURE, target=0)[0]
    best = kept_score(model, PICTURE, mask, 0)
    assert best > 0.7 * 48
    # every binary 4x4 square (the area asked for) but the region itself, and random smooth masks
    # of that area (thresholded at their 16th largest value)
    others = []
    for top in range(13):
        for left in range(13):
            if (top, left) != (2, 9):
                square = torch.zeros(16, 16)
                square[top:top + 4, left:left + 4] = 1
                others.append(kept_score(model, PICTURE, square, 0))
    smooth = _SmoothMask((16, 16), PICTURE.device)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        m = smooth(torch.rand(1, *smooth.grid, generator=g))[0]
        others.append(kept_score(model, PICTURE, (m >= m.flatten().topk(16).values[-1]).float(), 0))
    assert best > max(others)


@pytest.mark.parametrize("area", [0.05, 0.1, 0.25, 0.5, 0.75])
def test_the_mask_keeps_the_share_asked_for(area, tiny):
    # tolerance at 32x32: 0.02 of the picture, for the mean mask and for the pixels over 1/2
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(10))
    masks = gc.ExtremalPerturbation(tiny, area=area)(x, target=[3, 0])
    assert masks.shape == (2, 32, 32)
    assert ((masks.mean(dim=(1, 2)) - area).abs() <= 0.02).all(), masks.mean(dim=(1, 2))
    assert (((masks > 0.5).float().mean(dim=(1, 2)) - area).abs() <= 0.02).all()


@pytest.mark.parametrize("area", [0.1, 0.25, 0.5])
def test_on_8x8_the_mask_keeps_the_share_asked_for_to_a_pixel_and_a_half(area, tiny, tiny_input):
    # the mask's edges are a pixel wide here, so its mean is looser (0.1 at worst); the pixels
    # over 1/2 keep the share to 1.5 of the 64
    masks = gc.ExtremalPerturbation(tiny, area=area)(tiny_input, target=[3, 0, 4])
    assert masks.shape == (3, 8, 8)
    assert (((masks > 0.5).float().mean(dim=(1, 2)) - area).abs() <= 1.5 / 64).all()
    assert ((masks.mean(dim=(1, 2)) - area).abs() <= 0.1).all()


@pytest.mark.slow
def test_on_efficientnet_the_dog_and_the_cat_get_their_own_regions(efficientnet, cat_dog_x):
    # 243 bull mastiff (upper half of the photo), 282 tiger cat (lower half); about a minute
    masks = gc.ExtremalPerturbation(efficientnet.module, area=0.1)(cat_dog_x.expand(2, -1, -1, -1), [243, 282])
    assert ((masks.mean(dim=(1, 2)) - 0.1).abs() < 0.02).all()
    rows = torch.arange(224, dtype=torch.float32)[:, None]
    centre = [(m * rows).sum() / m.sum() for m in masks]
    assert centre[0] < 112 < centre[1]
    for mask, target in zip(masks, [243, 282]):
        blurred = kept_score(efficientnet.module, cat_dog_x, torch.zeros(224, 224), target)
        assert kept_score(efficientnet.module, cat_dog_x, mask, target) > blurred + 3


# --------------------------------------------------------------------------------------------
# The pieces: smooth masks, the blur pyramid
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(8, 8), (16, 16), (224, 224), (30, 17)])
def test_the_smooth_masks_are_zero_or_one_and_scale_with_the_picture(size):
    smooth = _SmoothMask(size, torch.device("cpu"))
    side = min(size)
    assert smooth.step == max(1, round(side / 32)) and smooth.sigma == max(1.0, 3 * side / 32)
    assert smooth.grid == (math.ceil(size[0] / smooth.step), math.ceil(size[1] / smooth.step))
    assert torch.equal(smooth(torch.zeros(2, *smooth.grid)), torch.zeros(2, *size))
    torch.testing.assert_close(smooth(torch.ones(1, *smooth.grid)), torch.ones(1, *size))
    between = smooth(torch.rand(3, *smooth.grid, generator=torch.Generator().manual_seed(0)))
    assert between.min() >= 0 and between.max() <= 1


def test_one_grid_point_makes_a_round_blob():
    smooth = _SmoothMask((64, 64), torch.device("cpu"))  # step 2, sigma 6
    parameters = torch.zeros(1, *smooth.grid)
    parameters[0, 16, 16] = 1  # the point at (33, 33)
    blob = smooth(parameters)[0]
    assert blob[33, 33] == blob.max() and blob.max() > 0.99
    torch.testing.assert_close(blob, blob.T)  # round: the same across the diagonal
    assert blob[33, 33 + 12] < 0.2 and blob[0, 0] < 1e-6


def test_the_pyramid_goes_from_blurred_to_the_picture_and_a_mask_picks_its_level():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pyramid = _blur_pyramid(x, 8, 3.5)
    assert pyramid.shape == (8, 2, 3, 16, 16)
    assert torch.equal(pyramid[-1], x)
    assert pyramid[0].std() < pyramid[3].std() < x.std()  # more blur, less contrast
    assert pyramid.min() >= x.min() and pyramid.max() <= x.max()  # weighted means of the picture
    assert torch.equal(_perturb(pyramid, torch.ones(2, 16, 16)), x)
    torch.testing.assert_close(_perturb(pyramid, torch.zeros(2, 16, 16)), pyramid[0])
    half = _perturb(pyramid, torch.full((2, 16, 16), 0.5))  # between levels 3 and 4
    torch.testing.assert_close(half, (pyramid[3] + pyramid[4]) / 2)


# --------------------------------------------------------------------------------------------
# Passes, batches, options
# --------------------------------------------------------------------------------------------


def test_one_forward_pass_per_step_and_progress_per_step(tiny, tiny_input):
    calls = []
    with count_calls(tiny) as counts:
        gc.ExtremalPerturbation(tiny, steps=5, progress=lambda d, t: calls.append((d, t)))(tiny_input, target=1)
    assert counts == [1 + 3 * 5]
    assert calls == [(i, 15) for i in range(1, 16)]
    calls.clear()
    with count_calls(tiny) as counts:
        gc.ExtremalPerturbation(tiny, steps=5, batch_size=2, progress=lambda d, t: calls.append((d, t)))(
            tiny_input, target=1
        )
    assert counts == [1 + 2 * 5]
    assert calls == [(2 * i, 15) for i in range(1, 6)] + [(10 + i, 15) for i in range(1, 6)]


def test_images_optimized_together_get_the_masks_they_get_alone(tiny, tiny_input):
    alone = gc.ExtremalPerturbation(tiny, area=0.25, steps=50)(tiny_input, target=[3, 0, 4])
    together = gc.ExtremalPerturbation(tiny, area=0.25, steps=50, batch_size=3)(tiny_input, target=[3, 0, 4])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-4)


def test_deterministic(tiny, tiny_input):
    explainer = gc.ExtremalPerturbation(tiny, steps=20)
    assert torch.equal(explainer(tiny_input, target=2), explainer(tiny_input, target=2))


def test_a_progress_callback_that_raises_cancels_and_leaves_the_model_as_it_was(tiny_input):
    model = make_tiny()
    model.train()
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    before = snapshot(model)

    def cancel(done, total):
        raise InterruptedError(f"cancelled at {done} of {total}")

    with pytest.raises(InterruptedError, match="cancelled at 1 of 30"):
        gc.ExtremalPerturbation(model, steps=10, progress=cancel)(tiny_input, target=1)
    assert_no_hooks(model)
    assert_same_state(before, model)


@pytest.mark.parametrize(
    "option, value",
    [("area", 0), ("area", 1), ("area", "half"), ("steps", 0), ("steps", 2.5), ("learning_rate", 0),
     ("learning_rate", True), ("batch_size", 0)],
)
def test_bad_options_are_refused(tiny, option, value):
    with pytest.raises(ValueError, match=option):
        gc.ExtremalPerturbation(tiny, **{option: value})
