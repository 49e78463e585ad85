"""gradcam_core.explainers.occlusion: the mean drop of the class logit over the windows covering
each pixel.

Windows are ``window`` x ``window`` squares every ``stride`` pixels, the last one flush with the
far edge; all channels under a window are set to ``baseline``. For a linear model
``y = sum_p W_p x_p + b`` a window's drop is ``sum_{p in window} W_p (x_p - baseline)``, which is
what the values worked by hand below use.
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

X = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 1.0], [2.0, 1.0, 0.0, 4.0]]).view(
    1, 1, 4, 4
)
W0 = torch.ones(4, 4)
W1 = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 1.0]])


class LinearOnPixels(nn.Module):
    """flatten -> linear(C*H*W -> classes) with the given weights and bias 0.5."""

    def __init__(self, *weights: torch.Tensor):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(weights[0].numel(), len(weights))
        with torch.no_grad():
            self.fc.weight.copy_(torch.stack([w.flatten() for w in weights]))
            self.fc.bias.fill_(0.5)
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(x))


def starts(size: int, window: int, stride: int) -> list[int]:
    """Every stride pixels, plus a last window flush with the far edge (0 if the window is larger)."""
    last = max(size - window, 0)
    out = list(range(0, last + 1, stride))
    return out if out[-1] == last else [*out, last]


def brute_force_occlusion(model, x, targets, window, stride, baseline=0.0) -> torch.Tensor:
    """One occluded copy per window, one forward pass each, one image at a time."""
    n, _, height, width = x.shape
    out = torch.zeros(n, height, width)
    for i, target in enumerate(targets):
        with torch.no_grad():
            y = model(x[i : i + 1])[0, target]
        total, cover = torch.zeros(height, width), torch.zeros(height, width)
        for top in starts(height, window, stride):
            for left in starts(width, window, stride):
                occluded = x[i : i + 1].clone()
                occluded[..., top : top + window, left : left + window] = baseline
                with torch.no_grad():
                    drop = y - model(occluded)[0, target]
                total[top : top + window, left : left + window] += drop
                cover[top : top + window, left : left + window] += 1
        out[i] = total / cover
    return out


# --------------------------------------------------------------------------------------------
# By hand: a linear model on one 4x4 channel
# --------------------------------------------------------------------------------------------
# X = [[1, 2, 0, 0], [3, 1, 0, 2], [0, 0, 1, 1], [2, 1, 0, 4]], sum 18.
#
# class 0, W0 = 1 everywhere, window 2, stride 2: four windows, no overlap; each drop is the
# window's sum: top-left 1+2+3+1 = 7, top-right 0+0+0+2 = 2, bottom-left 0+0+2+1 = 3,
# bottom-right 1+1+0+4 = 6; each pixel gets its one window's drop.
#   baseline 0.5: each drop falls by 4 * 0.5 = 2 -> 5, 0, 1, 4.
#
# class 1, W1 * X = [[1, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0], [-2, 0, 0, 4]], window 3, stride 2:
# offsets range(0, 2, 2) = [0], plus 1 flush with the edge: windows at (0,0), (0,1), (1,0), (1,1)
# with drops 1, 2, -2, 2 + 4 = 6. Rows 0 and 3 are covered by one row offset, rows 1-2 by two
# (the same for columns), so:
#   (0,0): 1;  (0,1..2): (1 + 2) / 2 = 1.5;  (0,3): 2
#   (1..2,0): (1 - 2) / 2 = -0.5;  interior: (1 + 2 - 2 + 6) / 4 = 1.75;  (1..2,3): (2 + 6) / 2 = 4
#   (3,0): -2;  (3,1..2): (-2 + 6) / 2 = 2;  (3,3): 6
# The drop of the logit, not of a probability, and not ReLU'd: a window can raise the score.


def test_occlusion_non_overlapping_windows_by_hand():
    o = gc.Occlusion(LinearOnPixels(W0, W1), window=2, stride=2)(X, target=0)
    expected = torch.tensor([[7.0, 7, 2, 2], [7, 7, 2, 2], [3, 3, 6, 6], [3, 3, 6, 6]])
    assert o.shape == (1, 4, 4)
    torch.testing.assert_close(o[0], expected, rtol=0, atol=1e-5)


def test_occlusion_baseline_by_hand():
    o = gc.Occlusion(LinearOnPixels(W0, W1), window=2, stride=2, baseline=0.5)(X, target=0)
    expected = torch.tensor([[5.0, 5, 0, 0], [5, 5, 0, 0], [1, 1, 4, 4], [1, 1, 4, 4]])
    torch.testing.assert_close(o[0], expected, rtol=0, atol=1e-5)


def test_occlusion_overlapping_windows_and_one_flush_with_the_edge_by_hand():
    # stride 2 does not divide 4 - 3 = 1: the last window is moved flush with the edge
    o = gc.Occlusion(LinearOnPixels(W0, W1), window=3, stride=2)(X, target=1)
    expected = torch.tensor(
        [[1.0, 1.5, 1.5, 2.0], [-0.5, 1.75, 1.75, 4.0], [-0.5, 1.75, 1.75, 4.0], [-2.0, 2.0, 2.0, 6.0]]
    )
    torch.testing.assert_close(o[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("window", [4, 5, 50])
def test_a_window_as_large_as_the_image_or_larger_occludes_everything_once(window):
    # one window: every pixel gets y(X) - y(baseline image) = sum W (X - baseline)
    model = LinearOnPixels(W0, W1)
    o = gc.Occlusion(model, window=window, stride=3)(X, target=0)
    torch.testing.assert_close(o[0], torch.full((4, 4), 18.0), rtol=0, atol=1e-5)
    o = gc.Occlusion(model, window=window, stride=3, baseline=0.5)(X, target=[1])
    # class 1: sum W1 X = 1 + 2 - 2 + 4 = 5; sum W1 * 0.5 = (1 + 1 - 1 + 1) / 2 = 1 -> drop 4
    torch.testing.assert_close(o[0], torch.full((4, 4), 4.0), rtol=0, atol=1e-5)


def test_every_channel_under_the_window_is_occluded():
    # two channels: W on channel 0 is W0, on channel 1 it is 2 * W0; X on both. Window 2, stride 2:
    # each drop is the window's sum times 1 + 2 = 3: [[21, 6], [9, 18]] per quarter.
    model = LinearOnPixels(torch.stack([W0, 2 * W0]))
    x = torch.cat([X, X], dim=1)
    o = gc.Occlusion(model, window=2, stride=2)(x, target=0)
    expected = 3 * torch.tensor([[7.0, 7, 2, 2], [7, 7, 2, 2], [3, 3, 6, 6], [3, 3, 6, 6]])
    assert o.shape == (1, 4, 4)
    torch.testing.assert_close(o[0], expected, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Brute force on a CNN; edges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, window, stride",
    [((8, 8), 3, 2), ((8, 8), 4, 4), ((7, 9), 3, 3), ((7, 9), 4, 4), ((8, 8), 1, 1), ((6, 6), 8, 2)],
)
def test_occlusion_equals_brute_force_on_a_tiny_cnn(size, window, stride):
    model = make_tiny()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(sum(size) + window))
    o = gc.Occlusion(model, window=window, stride=stride, baseline=-0.25, batch_size=3)(x, target=[1, 3])
    expected = brute_force_occlusion(model, x, [1, 3], window, stride, baseline=-0.25)
    assert o.shape == (2, *size)
    assert torch.isfinite(o).all()  # every pixel is covered by some window
    torch.testing.assert_close(o, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_a_stride_larger_than_the_window_leaves_no_pixel_undefined():
    """window 2, stride 5 on 7x9: offsets 0, 5 (rows) and 0, 5, 7 (columns) leave rows 2-4 and
    columns 2-4 under no window. Their mean drop over no window is undefined: the explainer must
    either refuse such options or still give every pixel a finite value, never NaN."""
    model = make_tiny()
    x = torch.randn(1, 3, 7, 9, generator=torch.Generator().manual_seed(5))
    try:
        explainer = gc.Occlusion(model, window=2, stride=5)
    except ValueError as error:
        assert "stride" in str(error)
        return
    o = explainer(x, target=1)
    assert torch.isfinite(o).all(), f"pixels with no value: {(~torch.isfinite(o[0])).nonzero().tolist()}"


def test_forward_passes_progress_and_batch_size():
    model = make_tiny()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    # window 3, stride 2 on 8: offsets 0, 2, 4 and 5 flush -> 4 x 4 = 16 windows per image
    calls = []
    with count_calls(model) as counts:
        o = gc.Occlusion(model, window=3, stride=2, batch_size=5, progress=lambda d, t: calls.append((d, t)))(
            x, target=0
        )
    assert counts == [1 + 2 * math.ceil(16 / 5)]
    assert calls == [(5, 32), (10, 32), (15, 32), (16, 32), (21, 32), (26, 32), (31, 32), (32, 32)]
    for batch_size in (1, 16, 100):
        other = gc.Occlusion(model, window=3, stride=2, batch_size=batch_size)(x, target=0)
        # float32: another batch may round the convolutions' sums differently
        torch.testing.assert_close(other, o, rtol=1e-5, atol=1e-6)


def test_batch_item_equals_single_image(tiny, tiny_input):
    explainer = gc.Occlusion(tiny, window=4, stride=2)
    batch = explainer(tiny_input, target=[2, 0, 4])
    for i, target in enumerate([2, 0, 4]):
        torch.testing.assert_close(batch[i], explainer(tiny_input[i : i + 1], target=target)[0], rtol=1e-5, atol=1e-6)


def test_the_class_is_the_top1_by_default(tiny, tiny_input):
    with torch.no_grad():
        top1 = tiny(tiny_input).argmax(dim=1)
    explainer = gc.Occlusion(tiny, window=4, stride=4)
    torch.testing.assert_close(explainer(tiny_input), explainer(tiny_input, target=top1), rtol=0, atol=0)


def test_a_progress_callback_that_raises_cancels_and_leaves_the_model_as_it_was(tiny_input):
    model = make_tiny()
    model.train()
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    before = snapshot(model)

    def cancel(done, total):
        raise InterruptedError(f"cancelled at {done} of {total}")

    with pytest.raises(InterruptedError, match="cancelled at 4 of 27"):
        # window 4, stride 2 on 8: offsets 0, 2, 4 -> 9 windows per image, 3 images
        gc.Occlusion(model, window=4, stride=2, batch_size=4, progress=cancel)(tiny_input, target=1)
    assert_no_hooks(model)
    assert_same_state(before, model)


@pytest.mark.parametrize(
    "option, value", [("window", 0), ("stride", -2), ("window", 2.5), ("stride", True), ("batch_size", 0)]
)
def test_bad_options_are_refused(tiny, option, value):
    with pytest.raises(ValueError, match=option):
        gc.Occlusion(tiny, **{option: value})
