"""gradcam_core.explainers.rise: RISE.

The reference is the authors' code (github.com/eclique/RISE, ``explanations.py``), written out
again here with numpy and scikit-image: ``generate_masks`` upsamples each binary grid with
``skimage.transform.resize(order=1, mode="reflect", anti_aliasing=False)`` to
``(s + 1) * ceil(H / s)`` and crops it at the random shift; ``forward`` weighs each mask by the
softmax probability of the masked image and divides by ``N * p1``. Given the same grids and
shifts the masks agree to float rounding, and given the same masks so do the maps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import (
    assert_no_hooks,
    assert_same_state,
    count_calls,
    make_tiny,
    snapshot,
)
from skimage.transform import resize
from torch import nn

import gradcam_core as gc
from gradcam_core.explainers.rise import _draw, rise_masks


def reference_masks(count, size, grid, p, seed) -> np.ndarray:
    """The authors' ``generate_masks``, on the grids and shifts that ``seed`` draws."""
    cells, shifts = _draw(count, grid, p, size, seed)
    cell_size = np.ceil(np.array(size) / grid)
    up_size = (grid + 1) * cell_size
    masks = np.empty((count, *size))
    for i in range(count):
        x, y = int(shifts[i, 0]), int(shifts[i, 1])
        masks[i] = resize(cells[i].numpy().astype("float32"), up_size, order=1, mode="reflect",
                          anti_aliasing=False)[x:x + size[0], y:y + size[1]]
    return masks


def reference_rise(model, x, target, masks, p) -> torch.Tensor:
    """The authors' ``RISE.forward`` for one image, the model followed by a softmax."""
    masks = torch.as_tensor(masks, dtype=torch.float32)[:, None]
    with torch.no_grad():
        probabilities = model(masks * x).softmax(dim=1)
    n, _, h, w = masks.shape
    return (probabilities.T @ masks.view(n, h * w)).view(-1, h, w)[target] / n / p


@pytest.mark.parametrize("size, grid", [((224, 224), 7), ((8, 8), 3), ((13, 9), 4), ((5, 5), 1), ((6, 6), 6)])
def test_the_masks_are_the_authors_generate_masks(size, grid):
    masks = rise_masks(12, size, grid=grid, p=0.3, seed=5)
    assert masks.shape == (12, *size)
    np.testing.assert_allclose(masks.numpy(), reference_masks(12, size, grid, 0.3, 5), rtol=0, atol=1e-6)
    assert masks.min() >= 0 and masks.max() <= 1


def test_the_masks_keep_a_share_p_on_average():
    masks = rise_masks(2000, (16, 16), grid=4, p=0.3, seed=0)
    assert abs(masks.mean().item() - 0.3) < 0.02


def test_rise_equals_the_authors_formula_on_the_same_masks():
    model = make_tiny()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    s = gc.RISE(model, masks=50, grid=3, p=0.4, seed=9, batch_size=7)(x, target=[1, 3])
    masks = reference_masks(50, (8, 8), 3, 0.4, 9)
    assert s.shape == (2, 8, 8)
    for i, target in enumerate([1, 3]):
        torch.testing.assert_close(s[i], reference_rise(model, x[i], target, masks, 0.4), rtol=1e-5, atol=1e-7)


def test_rise_on_efficientnet_equals_the_authors_formula(efficientnet, cat_dog_x):
    # 24 masks are enough to compare the arithmetic; the map itself needs hundreds
    s = gc.RISE(efficientnet.module, masks=24, seed=2, batch_size=12)(cat_dog_x, target=243)
    expected = reference_rise(efficientnet.module, cat_dog_x[0], 243, reference_masks(24, (224, 224), 7, 0.5, 2), 0.5)
    torch.testing.assert_close(s[0], expected, rtol=1e-4, atol=1e-6)


def test_rise_on_resnet34_equals_the_authors_formula(resnet34, small_batch):
    s = gc.RISE(resnet34.module, masks=16, grid=5, p=0.6, seed=4)(small_batch[:2], target=7)
    masks = reference_masks(16, (64, 64), 5, 0.6, 4)
    for i in range(2):
        torch.testing.assert_close(s[i], reference_rise(resnet34.module, small_batch[i], 7, masks, 0.6),
                                   rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


class LooksAtOneCorner(nn.Module):
    """Class 0's logit is ``6 (m - 0.5)`` with ``m`` the mean of channel 0 over the top-left 4x4
    quarter of an 8x8 input; class 1's is 0. On an all-ones input its probability goes from 0.05
    (the quarter masked) to 0.95 (kept): only that quarter matters."""

    def forward(self, x):
        score = 6 * (x[:, 0, :4, :4].mean(dim=(1, 2)) - 0.5)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


class Blind(nn.Module):
    """The same logits whatever the input: [1, 0, -1]."""

    def forward(self, x):
        return torch.tensor([1.0, 0.0, -1.0]).expand(x.shape[0], 3)


def test_a_model_that_ignores_the_input_gets_its_probability_times_the_mean_mask():
    # P_c is the same for every mask: S = P_c * sum_i M_i / (N p)
    s = gc.RISE(Blind(), masks=30, grid=2, p=0.5, seed=1)(torch.rand(1, 3, 8, 8), target=0)
    p0 = torch.tensor([1.0, 0.0, -1.0]).softmax(0)[0]
    torch.testing.assert_close(s[0], p0 * rise_masks(30, (8, 8), grid=2, p=0.5, seed=1).sum(0) / 15)


def test_the_map_puts_its_mass_where_the_score_looks():
    x = torch.ones(1, 3, 8, 8)
    s = gc.RISE(LooksAtOneCorner(), masks=400, grid=4, p=0.5, seed=0)(x, target=0)[0]
    corner = torch.zeros(8, 8, dtype=torch.bool)
    corner[:4, :4] = True
    # every map also carries the mean probability, about 0.5 here; the corner stands out of it
    assert s[corner].mean() > s[~corner].mean() + 0.08
    assert s[corner].min() > s[4:, 4:].max()
    assert corner.flatten()[s.argmax()]
    # for the other class the corner is where the probability falls
    other = gc.RISE(LooksAtOneCorner(), masks=400, grid=4, p=0.5, seed=0)(x, target=1)[0]
    assert other[corner].mean() < other[~corner].mean()


# --------------------------------------------------------------------------------------------
# Seeds, batches, progress, options
# --------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_map_and_another_seed_another(tiny, tiny_input):
    a = gc.RISE(tiny, masks=20, grid=3, seed=3)(tiny_input, target=1)
    assert torch.equal(a, gc.RISE(tiny, masks=20, grid=3, seed=3)(tiny_input, target=1))
    assert not torch.allclose(a, gc.RISE(tiny, masks=20, grid=3, seed=4)(tiny_input, target=1))


def test_forward_passes_progress_and_batch_size(tiny, tiny_input):
    x = tiny_input[:2]
    calls = []
    with count_calls(tiny) as counts:
        s = gc.RISE(tiny, masks=12, grid=3, batch_size=5, progress=lambda d, t: calls.append((d, t)))(x, target=0)
    assert counts == [1 + 2 * math.ceil(12 / 5)]
    # batch by batch, each image in turn
    assert calls == [(5, 24), (10, 24), (15, 24), (20, 24), (22, 24), (24, 24)]
    for batch_size in (1, 12, 100):
        other = gc.RISE(tiny, masks=12, grid=3, batch_size=batch_size)(x, target=0)
        torch.testing.assert_close(other, s, rtol=1e-5, atol=1e-7)


def test_a_progress_callback_that_raises_cancels_and_leaves_the_model_as_it_was(tiny_input):
    model = make_tiny()
    model.train()
    before = snapshot(model)

    def cancel(done, total):
        raise InterruptedError(f"cancelled at {done} of {total}")

    with pytest.raises(InterruptedError, match="cancelled at 4 of 30"):
        gc.RISE(model, masks=10, grid=2, batch_size=4, progress=cancel)(tiny_input, target=1)
    assert_no_hooks(model)
    assert_same_state(before, model)


@pytest.mark.parametrize(
    "option, value",
    [("masks", 0), ("masks", 2.0), ("grid", 0), ("grid", True), ("p", 0), ("p", 1.5), ("p", "half"),
     ("seed", 1.5), ("seed", None), ("seed", -1), ("batch_size", 0)],
)
def test_bad_options_are_refused(tiny, option, value):
    with pytest.raises(ValueError, match=option):
        gc.RISE(tiny, **{option: value})
