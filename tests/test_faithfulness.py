"""gradcam_core.metrics.faithfulness: deletion, insertion, Average Drop, occlusion rank correlation.

Most values are worked by hand on ``OnePixel``, a model whose class-1 logit is ``ln(3) * v`` with
``v`` one chosen pixel (class 0's logit is 0), so that its class-1 probability is

    P(v) = 3^v / (1 + 3^v):   P(2) = 9/10, P(1) = 3/4, P(0) = 1/2, P(-1) = 1/4, P(-2) = 1/10.

Every other pixel is ignored, so a deletion or insertion curve only changes at the step that
removes (or puts back) that pixel, and the step is the pixel's rank in the map's order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, make_tiny, snapshot
from scipy import stats
from torch import nn

import gradcam_core as gc
from gradcam_core import metrics

R, C = 1, 2  # OnePixel's pixel on a 4x4 picture; index 4 * R + C = 6 in reading order
PIXEL = 4 * R + C


def prob(v: float) -> float:
    """OnePixel's class-1 probability when its pixel reads ``v``."""
    return 3.0**v / (1.0 + 3.0**v)


class OnePixel(nn.Module):
    """flatten -> linear(16 -> 2, no bias): logits ``[0, ln(3) * x[0, R, C]]`` on a 1x4x4 input."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1, PIXEL] = math.log(3.0)
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(x))


class Distinct(nn.Module):
    """flatten -> linear(C*H*W -> 3), seeded weights: every pixel moves the scores its own way, so
    two different orders of removal give two different curves."""

    def __init__(self, pixels: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(pixels, 3)
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(x))


class Recorder(nn.Module):
    """Wraps a model and keeps a copy of every batch it is given."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


def one_pixel_input(value: float = 1.0) -> torch.Tensor:
    """(1, 1, 4, 4): 0.1, 0.2, ... in reading order, except ``value`` at OnePixel's pixel."""
    x = (torch.arange(16, dtype=torch.float32) + 1).div(10).view(1, 1, 4, 4)
    x[0, 0, R, C] = value
    return x


def map_with_pixel_at_rank(k: int) -> torch.Tensor:
    """(1, 4, 4) map without ties whose order puts OnePixel's pixel at place ``k`` (0 = first);
    the other pixels keep reading order around it."""
    order = [p for p in range(16) if p != PIXEL]
    order.insert(k, PIXEL)
    m = torch.empty(16)
    for place, p in enumerate(order):
        m[p] = 16.0 - place
    return m.view(1, 4, 4)


def reading_order_reference(m: torch.Tensor) -> list[int]:
    """Most salient first, ties in reading order, by Python's (stable) sort."""
    values = m.flatten().tolist()
    return sorted(range(len(values)), key=lambda i: -values[i])


# --------------------------------------------------------------------------------------------
# Pixel order
# --------------------------------------------------------------------------------------------


def test_salience_order_of_an_upsampled_map_by_hand():
    # [[1, 0], [0, 0]] bilinearly upsampled to 4x4 is the outer product of [1, .75, .25, 0] with
    # itself: 1 at (0,0); .75 at (0,1), (1,0); .5625 at (1,1); .25 at (0,2), (2,0); .1875 at (1,2),
    # (2,1); .0625 at (2,2); then the seven zeros in reading order.
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    expected = [0, 1, 4, 5, 2, 8, 6, 9, 10, 3, 7, 11, 12, 13, 14, 15]
    assert metrics.salience_order(m, (4, 4)).tolist() == [expected]


def test_ties_go_in_reading_order_on_a_large_map():
    """A 48x48 map of only three values (thousands of ties): the order a stable sort gives."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randint(0, 3, (2, 48, 48), generator=g).float()
    order = metrics.salience_order(maps, (48, 48))
    assert order.shape == (2, 48 * 48)
    for i in range(2):
        assert order[i].tolist() == reading_order_reference(maps[i])


def test_a_constant_map_is_read_row_by_row():
    assert metrics.salience_order(torch.zeros(1, 3, 3), (5, 5)).tolist() == [list(range(25))]
    assert metrics.salience_order(torch.full((1, 7, 7), 0.25), (28, 28)).tolist() == [list(range(784))]


def test_a_constant_map_of_any_value_and_size_is_read_row_by_row():
    """A constant map has no order but reading order, whatever its value and whatever size it is
    brought to (bilinear weights that do not sum to exactly 1 in float32 must not invent one)."""
    assert metrics.salience_order(torch.full((1, 2, 2), 7.0), (3, 4)).tolist() == [list(range(12))]
    x = torch.ones(1, 1, 3, 4)
    steps = metrics.deletion_steps(x, torch.full((1, 2, 2), 7.0), [2 / 12])
    expected = torch.ones(1, 1, 3, 4)
    expected[0, 0, 0, :2] = 0.0  # the first two pixels of the first row
    assert torch.equal(steps, expected)


# --------------------------------------------------------------------------------------------
# Deletion
# --------------------------------------------------------------------------------------------


def test_a_perfect_map_deletes_the_pixel_first():
    # steps=16 removes one pixel a step. Perfect map: the pixel goes at step 1, so the curve is
    # [3/4, 1/2, 1/2, ..., 1/2]; trapezoids of width 1/16: (3/4 + 1/2)/2 + 15 * 1/2 = 8.125.
    perfect = torch.zeros(1, 4, 4)
    perfect[0, R, C] = 1.0
    curve = metrics.deletion(OnePixel(), one_pixel_input(), perfect, target=1, steps=16)
    torch.testing.assert_close(curve.fractions, torch.arange(17) / 16)
    torch.testing.assert_close(curve.probabilities, torch.tensor([[0.75] + [0.5] * 16]))
    torch.testing.assert_close(curve.auc, torch.tensor([8.125 / 16]))


def test_a_map_that_puts_the_pixel_last_deletes_it_last():
    # 1 everywhere but 0 at the pixel: fifteen tied pixels first (reading order), the pixel last,
    # at step 16: [3/4] * 16 + [1/2]; area (15 * 3/4 + (3/4 + 1/2)/2) / 16 = 11.875 / 16.
    last = torch.ones(1, 4, 4)
    last[0, R, C] = 0.0
    curve = metrics.deletion(OnePixel(), one_pixel_input(), last, target=1, steps=16)
    torch.testing.assert_close(curve.probabilities, torch.tensor([[0.75] * 16 + [0.5]]))
    torch.testing.assert_close(curve.auc, torch.tensor([11.875 / 16]))


@pytest.mark.parametrize("k", range(16))
def test_the_deletion_curve_falls_at_the_pixels_rank(k):
    # The pixel at place k is removed at step k + 1: probabilities 3/4 up to step k, then 1/2.
    # Area: (k * 3/4 + (3/4 + 1/2)/2 + (15 - k) * 1/2) / 16 = (8.125 + k/4) / 16, which grows
    # with k: the perfect map (k = 0) has the lowest area, the one ending with it (k = 15) the
    # highest.
    curve = metrics.deletion(OnePixel(), one_pixel_input(), map_with_pixel_at_rank(k), target=1, steps=16)
    torch.testing.assert_close(curve.probabilities, torch.tensor([[0.75] * (k + 1) + [0.5] * (16 - k)]))
    torch.testing.assert_close(curve.auc, torch.tensor([(8.125 + k / 4) / 16]))


def test_fewer_steps_remove_several_pixels_a_step():
    # steps=4: 4 pixels a step, fractions 0, 1/4, 1/2, 3/4, 1. The pixel at place 5 goes in the
    # second group (places 4-7), at step 2: [3/4, 3/4, 1/2, 1/2, 1/2];
    # area (3/4 + (3/4 + 1/2)/2 + 1/2 + 1/2) / 4 = 2.375 / 4.
    curve = metrics.deletion(OnePixel(), one_pixel_input(), map_with_pixel_at_rank(5), target=1, steps=4)
    torch.testing.assert_close(curve.fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(curve.probabilities, torch.tensor([[0.75, 0.75, 0.5, 0.5, 0.5]]))
    torch.testing.assert_close(curve.auc, torch.tensor([2.375 / 4]))


def test_fractions_are_the_shares_of_pixels_actually_removed():
    # 16 pixels in 3 steps: 16 * k // 3 = 0, 5, 10, 16 pixels, fractions 0, 5/16, 10/16, 1. The
    # pixel at place 5 goes at step 2 (places 5-9): [3/4, 3/4, 1/2, 1/2]. Trapezoids over those
    # fractions: 5/16 * 3/4 + 5/16 * (3/4 + 1/2)/2 + 6/16 * 1/2 = (3.75 + 3.125 + 3) / 16.
    curve = metrics.deletion(OnePixel(), one_pixel_input(), map_with_pixel_at_rank(5), target=1, steps=3)
    torch.testing.assert_close(curve.fractions, torch.tensor([0.0, 5 / 16, 10 / 16, 1.0]))
    torch.testing.assert_close(curve.probabilities, torch.tensor([[0.75, 0.75, 0.5, 0.5]]))
    torch.testing.assert_close(curve.auc, torch.tensor([9.875 / 16]))


def test_the_baseline_is_the_value_a_deleted_pixel_takes():
    # baseline -1: the removed pixel reads -1, P(-1) = 1/4.
    perfect = torch.zeros(1, 4, 4)
    perfect[0, R, C] = 1.0
    curve = metrics.deletion(OnePixel(), one_pixel_input(), perfect, target=1, steps=4, baseline=-1.0)
    torch.testing.assert_close(curve.probabilities, torch.tensor([[0.75, 0.25, 0.25, 0.25, 0.25]]))
    # area: ((3/4 + 1/4)/2 + 3 * 1/4) / 4 = 1.25 / 4
    torch.testing.assert_close(curve.auc, torch.tensor([1.25 / 4]))


def test_the_target_picks_the_probability_and_defaults_to_the_top_class():
    m = map_with_pixel_at_rank(3)
    model, x = OnePixel(), one_pixel_input()  # P(class 1) = 3/4 on x: the top class is 1
    one = metrics.deletion(model, x, m, target=1, steps=8)
    top = metrics.deletion(model, x, m, target=None, steps=8)
    zero = metrics.deletion(model, x, m, target=0, steps=8)
    assert torch.equal(top.probabilities, one.probabilities)
    torch.testing.assert_close(zero.probabilities, 1 - one.probabilities)  # two classes
    torch.testing.assert_close(zero.auc, 1 - one.auc)


def test_a_batch_gives_each_image_its_own_curve_and_chunks_change_nothing():
    x = torch.cat([one_pixel_input(1.0), one_pixel_input(2.0), one_pixel_input(-1.0)])
    maps = torch.cat([map_with_pixel_at_rank(0), map_with_pixel_at_rank(7), map_with_pixel_at_rank(15)])
    model = OnePixel()
    whole = metrics.deletion(model, x, maps, target=1, steps=16)
    assert whole.probabilities.shape == (3, 17) and whole.auc.shape == (3,)
    for i in range(3):
        alone = metrics.deletion(model, x[i : i + 1], maps[i : i + 1], target=1, steps=16)
        torch.testing.assert_close(whole.probabilities[i : i + 1], alone.probabilities)
    # image 1 reads 2 (P = 9/10) until its pixel goes at step 8; image 2 reads -1 (P = 1/4) to
    # the last step
    torch.testing.assert_close(whole.probabilities[1], torch.tensor([0.9] * 8 + [0.5] * 9))
    torch.testing.assert_close(whole.probabilities[2], torch.tensor([0.25] * 16 + [0.5]))
    for batch_size in (1, 5):
        chunked = metrics.deletion(model, x, maps, target=1, steps=16, batch_size=batch_size)
        assert torch.equal(chunked.probabilities, whole.probabilities)


def test_two_maps_with_the_same_reading_order_tie_break_give_the_same_curve():
    """A map full of ties, and the same map with its ties broken in reading order explicitly,
    must give the same curve, bit for bit; breaking them the other way round must not."""
    g = torch.Generator().manual_seed(1)
    side = 12
    pixels = side * side
    tied = torch.randint(0, 3, (1, side, side), generator=g).float()  # 3 values, ~48 pixels each
    index = torch.arange(pixels, dtype=torch.float32).view(1, side, side)
    broken = tied + (pixels - 1 - index) / pixels  # adds < 1: only the ties change, earlier first
    reversed_ = tied + index / pixels  # ties broken the other way: later pixels first
    x = torch.randn(1, 1, side, side, generator=g)
    model = Distinct(pixels)
    a = metrics.deletion(model, x, tied, target=2, steps=pixels)
    b = metrics.deletion(model, x, broken, target=2, steps=pixels)
    c = metrics.deletion(model, x, reversed_, target=2, steps=pixels)
    assert torch.equal(a.probabilities, b.probabilities)
    assert not torch.allclose(a.probabilities, c.probabilities)  # the model does see the order
    ins_a = metrics.insertion(model, x, tied, target=2, steps=pixels)
    ins_b = metrics.insertion(model, x, broken, target=2, steps=pixels)
    assert torch.equal(ins_a.probabilities, ins_b.probabilities)


def test_deletion_refuses_bad_arguments():
    model, x, m = OnePixel(), one_pixel_input(), map_with_pixel_at_rank(0)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            metrics.deletion(model, x, m, target=1, steps=steps)
    with pytest.raises(ValueError, match="batch_size"):
        metrics.deletion(model, x, m, target=1, steps=4, batch_size=0)
    for wrong in (m[0], torch.zeros(2, 4, 4), torch.zeros(1, 1, 4, 4)):
        with pytest.raises(ValueError, match="one"):
            metrics.deletion(model, x, wrong, target=1, steps=4)


# --------------------------------------------------------------------------------------------
# deletion_steps: the pictures deletion sees
# --------------------------------------------------------------------------------------------


def test_a_constant_map_deletes_in_reading_order():
    x = torch.arange(1.0, 49.0).view(1, 3, 4, 4)  # three channels, no pixel equal to the baseline
    steps = metrics.deletion_steps(x, torch.zeros(1, 2, 2), [0.0, 0.25, 0.5, 1.0], baseline=-2.0)
    assert steps.shape == (4, 3, 4, 4)
    for image, count in zip(steps, (0, 4, 8, 16)):
        expected = x[0].clone().view(3, 16)
        expected[:, :count] = -2.0  # the first `count` pixels, row by row, in every channel
        assert torch.equal(image, expected.view(3, 4, 4))


def test_deletion_steps_of_a_map_by_hand():
    # the upsampled [[1, 0], [0, 0]] of test_salience_order_of_an_upsampled_map_by_hand: its
    # first three pixels are (0,0), (0,1), (1,0)
    x = torch.ones(1, 1, 4, 4)
    steps = metrics.deletion_steps(x, torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), [3 / 16])
    expected = torch.ones(1, 1, 4, 4)
    expected[0, 0, 0, 0] = expected[0, 0, 0, 1] = expected[0, 0, 1, 0] = 0.0
    assert torch.equal(steps, expected)


def test_deletion_steps_removes_that_share_of_the_pixels():
    """57% of a 10x10 picture is 57 pixels (and 47% 47, 94% 94, ...)."""
    x = torch.ones(1, 1, 10, 10)
    fractions = [k / 100 for k in range(101)]
    steps = metrics.deletion_steps(x, torch.zeros(1, 10, 10), fractions)
    removed = (steps == 0).flatten(1).sum(dim=1).tolist()
    wrong = {f"{f:.2f}": got for f, got in zip(fractions, removed) if got != round(f * 100)}
    assert wrong == {}, f"pixels removed at these fractions of 100 pixels: {wrong}"


@pytest.mark.parametrize(("side", "steps"), [(4, 16), (8, 10), (5, 3), (7, 10)])
def test_deletion_steps_at_the_curves_fractions_are_the_pictures_deletion_scored(side, steps):
    g = torch.Generator().manual_seed(side)
    x = torch.randn(1, 2, side, side, generator=g)
    m = torch.rand(1, 3, 3, generator=g)
    model = Recorder(Distinct(2 * side * side))
    curve = metrics.deletion(model, x, m, target=0, steps=steps, batch_size=64, baseline=0.5)
    seen = model.seen[1]  # model.seen[0] is the pass that resolves the target
    assert seen.shape == (steps + 1, 2, side, side)
    shown = metrics.deletion_steps(x, m, curve.fractions, baseline=0.5)
    differ = [k for k in range(steps + 1) if not torch.equal(shown[k], seen[k])]
    assert differ == [], (
        f"deletion_steps(x, m, curve.fractions) differs from what deletion scored at steps {differ}: "
        f"pixels at baseline {[(s == 0.5).all(0).sum().item() for s in shown[differ]]}, deletion removed "
        f"{[(s == 0.5).all(0).sum().item() for s in seen[differ]]}"
    )


# --------------------------------------------------------------------------------------------
# Blur and insertion
# --------------------------------------------------------------------------------------------


def gaussian(d: int) -> float:
    return math.exp(-(d * d) / (2 * 5.0**2))


#: The 1-D kernel's sum: the 2-D kernel is g(dy) g(dx) / S^2.
S = sum(gaussian(d) for d in range(-5, 6))


def test_blur_is_a_normalized_11x11_gaussian_of_sigma_5():
    assert (metrics.BLUR_KERNEL, metrics.BLUR_SIGMA) == (11, 5.0)
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0  # a point: its blur is the kernel itself
    out = metrics.blur(x)
    kernel = torch.tensor([[gaussian(dy) * gaussian(dx) / S**2 for dx in range(-5, 6)] for dy in range(-5, 6)])
    torch.testing.assert_close(out[0, 0, 5:16, 5:16], kernel.float())
    assert out[0, 0, :5].abs().max() == 0 and out[0, 0, :, 16:].abs().max() == 0
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))


def test_blur_keeps_each_channel_apart_and_pads_with_zeros():
    x = torch.ones(1, 3, 21, 21) * torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1)
    out = metrics.blur(x)
    # the kernel sums to 1: the middle, whose window lies inside, keeps each channel's value
    torch.testing.assert_close(out[0, :, 10, 10], torch.tensor([1.0, -2.0, 3.0]))
    # a corner sees only the kernel's quarter d >= 0 (zero padding beyond the edge)
    corner = sum(gaussian(d) for d in range(6)) ** 2 / S**2
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, -2.0, 3.0]) * corner)


def blurred_pixel(x: torch.Tensor) -> float:
    """The blurred value at OnePixel's pixel of a (1, 1, 4, 4) picture, as a double sum."""
    return sum(
        gaussian(i - R) * gaussian(j - C) * float(x[0, 0, i, j]) for i in range(4) for j in range(4)
    ) / S**2


def test_insertion_with_a_perfect_map_rises_at_the_first_step():
    x = one_pixel_input()
    b = blurred_pixel(x)  # 0.156: the 16 pixels (0.1 .. 1.6, and 1 at the pixel) weigh ~0.01 each
    assert 0.15 < b < 0.16
    perfect = torch.zeros(1, 4, 4)
    perfect[0, R, C] = 1.0
    curve = metrics.insertion(OnePixel(), x, perfect, target=1, steps=16)
    expected = [prob(b)] + [0.75] * 16
    torch.testing.assert_close(curve.probabilities, torch.tensor([expected]))
    torch.testing.assert_close(curve.auc, torch.tensor([((prob(b) + 0.75) / 2 + 15 * 0.75) / 16]))


@pytest.mark.parametrize("k", [0, 6, 15])
def test_the_insertion_curve_rises_at_the_pixels_rank(k):
    # the mirror image of deletion: the blurred value until step k, the pixel's own from k + 1;
    # a later place means a lower area, so the perfect map has the highest
    x = one_pixel_input()
    p = prob(blurred_pixel(x))
    curve = metrics.insertion(OnePixel(), x, map_with_pixel_at_rank(k), target=1, steps=16)
    torch.testing.assert_close(curve.probabilities, torch.tensor([[p] * (k + 1) + [0.75] * (16 - k)]))
    area = (k * p + (p + 0.75) / 2 + (15 - k) * 0.75) / 16
    torch.testing.assert_close(curve.auc, torch.tensor([area]))


def test_insertion_starts_from_the_blur_and_ends_at_the_image():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 6, 6, generator=g)
    m = torch.rand(2, 6, 6, generator=g)
    model = Recorder(Distinct(3 * 36))
    curve = metrics.insertion(model, x, m, target=[0, 2], steps=9)
    assert len(model.seen) == 3  # the target pass, then one batch of 10 pictures per image
    blurred = metrics.blur(x)
    for i in range(2):
        seen = model.seen[1 + i]
        assert seen.shape == (10, 3, 6, 6)
        assert torch.equal(seen[0], blurred[i]) and torch.equal(seen[-1], x[i])
        # step k: the first 36 * k // 9 = 4k pixels of the order are the image's, the rest blurred
        order = metrics.salience_order(m[i : i + 1], (6, 6))[0]
        for k in range(10):
            put_back = torch.zeros(36, dtype=torch.bool)
            put_back[order[: 4 * k]] = True
            expected = torch.where(put_back.view(1, 6, 6), x[i], blurred[i])
            assert torch.equal(seen[k], expected), (i, k)
        probabilities = model.inner(seen).softmax(dim=1)[:, [0, 2][i]]
        torch.testing.assert_close(curve.probabilities[i], probabilities)


# --------------------------------------------------------------------------------------------
# Average Drop and Increase in Confidence
# --------------------------------------------------------------------------------------------


def test_average_drop_and_increase_by_hand():
    # Three pictures read 2, 2 and -2 at the pixel; each map is min-max scaled to [0, 1] and
    # multiplies the picture.
    x = torch.cat([one_pixel_input(2.0), one_pixel_input(2.0), one_pixel_input(-2.0)])
    maps = torch.zeros(3, 4, 4)
    maps[:, 0, 0] = -2.0  # the minimum, scaled to 0
    maps[:, 3, 3] = 6.0  # the maximum, scaled to 1
    maps[0, R, C] = 2.0  # (2 + 2) / 8 = 1/2: the pixel reads 1
    maps[1, R, C] = 6.0  # scaled to 1: the picture is unchanged
    maps[2, R, C] = 2.0  # the pixel reads -1
    # target 1: Y = P(2), P(2), P(-2) = 9/10, 9/10, 1/10 and O = P(1), P(2), P(-1) = 3/4, 9/10, 1/4.
    # Drops: (9/10 - 3/4) / (9/10) = 1/6, 0, 0 (O > Y counts no drop): mean 1/18 = 5.56%.
    # Increase: only the third (the second's O equals Y, not more): 1/3 = 33.3%.
    drop, increase = metrics.average_drop(OnePixel(), x, maps, target=1)
    assert drop == pytest.approx(100 / 18, rel=1e-5)
    assert increase == pytest.approx(100 / 3, rel=1e-6)
    # Each picture's top class instead: the third's is class 0, with Y = 9/10 and O = 3/4, a drop
    # of 1/6 too: mean 2/18, and no increase.
    drop, increase = metrics.average_drop(OnePixel(), x, maps, target=None)
    assert drop == pytest.approx(200 / 18, rel=1e-5)
    assert increase == 0.0


def test_average_drop_upsamples_a_coarse_map():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 4, 4, generator=g)
    coarse = torch.rand(2, 2, 2, generator=g)
    model = Distinct(16)
    assert metrics.average_drop(model, x, coarse, target=[0, 1]) == pytest.approx(
        metrics.average_drop(model, x, gc.upsample(coarse, (4, 4)), target=[0, 1])
    )


def test_average_drop_is_zero_for_a_map_that_keeps_everything():
    # A map that is 1 at the pixel and lower elsewhere: x * map leaves OnePixel's input as it is.
    x = one_pixel_input(2.0)
    m = torch.zeros(1, 4, 4)
    m[0, R, C] = 1.0
    assert metrics.average_drop(OnePixel(), x, m, target=1) == (0.0, 0.0)


# --------------------------------------------------------------------------------------------
# Rank correlation with occlusion
# --------------------------------------------------------------------------------------------


def test_occlusion_correlation_by_hand():
    # ranks 1 2 3 4 against 1 3 2 4: d = 0, 1, -1, 0, rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    x = torch.zeros(1, 3, 2, 2)
    m = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    occlusion = torch.tensor([[[1.0, 3.0], [2.0, 4.0]]])
    rho = metrics.occlusion_correlation(make_tiny(), x, m, target=0, occlusion=occlusion)
    assert isinstance(rho, np.ndarray) and rho.shape == (1,)
    assert rho[0] == pytest.approx(0.8)


def test_occlusion_correlation_is_spearmans_rho_with_the_given_map():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 8, 8, generator=g)
    occlusion = torch.randn(3, 8, 8, generator=g)
    maps = torch.rand(3, 4, 4, generator=g)  # coarse: upsampled to 8x8 first
    rho = metrics.occlusion_correlation(make_tiny(), x, maps, target=1, occlusion=occlusion)
    up = gc.upsample(maps, (8, 8))
    expected = [stats.spearmanr(up[i].flatten().numpy(), occlusion[i].flatten().numpy()).statistic for i in range(3)]
    np.testing.assert_allclose(rho, expected, rtol=1e-6)


def test_occlusion_correlation_is_one_for_the_occlusion_map_itself_and_minus_one_reversed():
    g = torch.Generator().manual_seed(4)
    occlusion = torch.randn(2, 8, 8, generator=g)
    x = torch.randn(2, 3, 8, 8, generator=g)
    np.testing.assert_allclose(metrics.occlusion_correlation(make_tiny(), x, occlusion, 0, occlusion), [1.0, 1.0])
    np.testing.assert_allclose(
        metrics.occlusion_correlation(make_tiny(), x, -occlusion, 0, occlusion), [-1.0, -1.0]
    )


def test_occlusion_correlation_is_nan_for_a_constant_map_only():
    g = torch.Generator().manual_seed(6)
    occlusion = torch.randn(3, 8, 8, generator=g)
    maps = torch.rand(3, 8, 8, generator=g)
    maps[1] = 0.0
    maps[2] = 5.0
    rho = metrics.occlusion_correlation(make_tiny(), torch.randn(3, 3, 8, 8, generator=g), maps, 0, occlusion)
    assert not np.isnan(rho[0]) and np.isnan(rho[1]) and np.isnan(rho[2])


def test_occlusion_correlation_computes_the_occlusion_map_when_not_given(tiny, tiny_input):
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(7))
    reference = gc.Occlusion(tiny, window=4, stride=2)(tiny_input, [0, 3, 1])
    given = metrics.occlusion_correlation(tiny, tiny_input, maps, [0, 3, 1], occlusion=reference)
    computed = metrics.occlusion_correlation(tiny, tiny_input, maps, [0, 3, 1], window=4, stride=2, batch_size=5)
    np.testing.assert_allclose(computed, given, rtol=1e-6)
    assert not np.isnan(computed).any()


# --------------------------------------------------------------------------------------------
# Every metric leaves the model as it was
# --------------------------------------------------------------------------------------------

METRICS = {
    "deletion": lambda model, x, m: metrics.deletion(model, x, m, [0, 3, 1], steps=5, batch_size=4).probabilities,
    "insertion": lambda model, x, m: metrics.insertion(model, x, m, [0, 3, 1], steps=5, batch_size=4).probabilities,
    "average_drop": lambda model, x, m: torch.tensor(metrics.average_drop(model, x, m, [0, 3, 1])),
    "occlusion_correlation": lambda model, x, m: torch.from_numpy(
        metrics.occlusion_correlation(model, x, m, [0, 3, 1], window=4, stride=2, batch_size=4)
    ),
}


@pytest.mark.parametrize("name", list(METRICS))
def test_a_model_in_training_mode_is_measured_in_eval_mode_and_left_as_it_was(name, tiny_input):
    """BatchNorm in training mode would use each batch's statistics (and update its running
    ones); the metrics measure the model as it predicts and restore every flag."""
    maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(8))
    expected = METRICS[name](make_tiny(), tiny_input, maps)
    model = make_tiny().train()
    model.relu1.eval()  # a mixture of flags, each restored as it was
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = snapshot(model)
    got = METRICS[name](model, tiny_input, maps)
    torch.testing.assert_close(got, expected, equal_nan=True)
    assert_same_state(before, model)
    assert_no_hooks(model)
