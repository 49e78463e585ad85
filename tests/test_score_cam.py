"""gradcam_core.explainers.score_cam: Score-CAM.

Channel ``k``, upsampled bilinearly to the input and scaled to [0, 1], masks the input; its weight
is the softmax probability of the class for the masked input. A constant channel masks nothing:
weight 0, and no forward pass spent on it. The references here are brute force: one masked
forward pass per channel, computed by the test with ``F.interpolate``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    HAND_INPUT,
    OneConvGAP,
    assert_no_hooks,
    assert_same_state,
    count_calls,
    snapshot,
)
from torch import nn

import gradcam_core as gc


class StridedCNN(nn.Module):
    """conv(3 -> 4, stride 2) -> ReLU -> conv2(4 -> 5) -> ReLU -> GAP -> linear(5 -> 4).

    conv2's channel 0 is the constant 0.3 and channel 1 the constant -0.2 (zero kernels, a bias
    only), so on an 8x8 input ``conv2`` gives 5 maps of 4x4 of which 3 vary.
    """

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 4)
        with torch.no_grad():
            self.conv2.weight[:2] = 0
            self.conv2.bias[:2] = torch.tensor([0.3, -0.2])
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))), 1))


def brute_force_score_cam(model: nn.Module, layer: str, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """``(N, K)``: softmax(model(x_i * M_k))[c_i], one masked copy of the image per varying channel."""
    captured = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, i, o: captured.update(a=o.clone())
    )  # returns None: the model goes on with its own tensor
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    a = captured["a"]
    weights = torch.zeros(a.shape[:2])
    for i, target in enumerate(targets):
        varying = [k for k in range(a.shape[1]) if a[i, k].max() > a[i, k].min()]  # constant: weight 0
        up = F.interpolate(a[i, varying][:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        low, high = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
        masks = (up - low) / (high - low)  # (len(varying), 1, H, W)
        with torch.no_grad():
            weights[i, varying] = model(x[i : i + 1] * masks).softmax(dim=1)[:, target]
    return weights


@pytest.fixture
def strided_input() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(8))


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT: A0 = [[2, 5], [0, 2]], A1 = [[2, -1], [-1, 3]] upsampled 2x2 -> 3x3
# (bilinear, align_corners=False): output rows/columns sample the source at -1/6, 1/2, 7/6,
# clamped to 0, 1/2, 1, so row 1 and column 1 are averages of their neighbours:
#   U(A0) = [[2, 3.5, 5], [1, 2.25, 3.5], [0, 1, 2]]       min 0, max 5
#   M0 = U(A0) / 5 = [[0.4, 0.7, 1], [0.2, 0.45, 0.7], [0, 0.2, 0.4]]
#   U(A1) = [[2, 0.5, -1], [0.5, 0.75, 1], [-1, 1, 3]]     min -1, max 3
#   M1 = (U(A1) + 1) / 4 = [[0.75, 0.375, 0], [0.375, 0.4375, 0.5], [0, 0.5, 1]]
# w_k^c = softmax(model(HAND_INPUT * M_k))_c

M0 = torch.tensor([[0.4, 0.7, 1.0], [0.2, 0.45, 0.7], [0.0, 0.2, 0.4]])
M1 = torch.tensor([[0.75, 0.375, 0.0], [0.375, 0.4375, 0.5], [0.0, 0.5, 1.0]])


@pytest.mark.parametrize("target", [0, 1])
def test_score_cam_one_conv_gap_by_hand(target):
    model = OneConvGAP()
    r = gc.ScoreCAM(model, ["conv"])(HAND_INPUT, target=target)
    with torch.no_grad():
        p0 = model(HAND_INPUT * M0).softmax(dim=1)[0, target]
        p1 = model(HAND_INPUT * M1).softmax(dim=1)[0, target]
    torch.testing.assert_close(r.weights["conv"], torch.stack([p0, p1])[None], rtol=1e-6, atol=1e-7)
    a0 = torch.tensor([[2.0, 5.0], [0.0, 2.0]])
    a1 = torch.tensor([[2.0, -1.0], [-1.0, 3.0]])
    torch.testing.assert_close(r.maps["conv"][0], (p0 * a0 + p1 * a1).clamp(min=0), rtol=1e-6, atol=1e-6)
    # the two probabilities of the two classes for one mask add up to 1
    other = gc.ScoreCAM(model, ["conv"])(HAND_INPUT, target=1 - target)
    torch.testing.assert_close(r.weights["conv"] + other.weights["conv"], torch.ones(1, 2))


# --------------------------------------------------------------------------------------------
# Brute force; constant channels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["conv2", "relu2", "conv1"])
def test_score_cam_equals_brute_force(layer, strided_input):
    model = StridedCNN()
    targets = [3, 1]
    r = gc.ScoreCAM(model, [layer], batch_size=3)(strided_input, target=targets)
    expected = brute_force_score_cam(model, layer, strided_input, targets)
    torch.testing.assert_close(r.weights[layer], expected, rtol=1e-5, atol=1e-7)
    a = r.activations[layer]
    torch.testing.assert_close(
        r.maps[layer], torch.einsum("nk,nkhw->nhw", expected, a).clamp(min=0), rtol=1e-5, atol=1e-6
    )
    assert r.maps[layer].shape == (2, *a.shape[2:])
    assert_no_hooks(model)


def test_constant_channels_get_weight_zero_and_cost_no_forward_pass(strided_input):
    model = StridedCNN()
    calls = []
    with count_calls(model, model.conv1) as counts:
        r = gc.ScoreCAM(model, ["conv2"], batch_size=2, progress=lambda d, t: calls.append((d, t)))(
            strided_input, target=0
        )
    a = r.activations["conv2"]
    assert torch.equal(a[:, 0], torch.full_like(a[:, 0], 0.3))  # the two constant channels
    assert torch.equal(a[:, 1], torch.full_like(a[:, 1], -0.2))
    assert torch.equal(r.weights["conv2"][:, :2], torch.zeros(2, 2))
    assert (r.weights["conv2"][:, 2:] > 0).all()  # probabilities
    # 3 varying channels per image, 2 at a time: 2 batches per image, plus the shared pass
    assert counts == [1 + 2 * 2, 1 + 2 * 2]
    assert calls == [(2, 6), (3, 6), (5, 6), (6, 6)]


def test_a_layer_of_constant_channels_costs_only_the_shared_pass(strided_input):
    model = StridedCNN()
    with torch.no_grad():
        model.conv2.weight.zero_()
    calls = []
    with count_calls(model) as counts:
        r = gc.ScoreCAM(model, ["conv2"], progress=lambda d, t: calls.append((d, t)))(strided_input, target=2)
    assert counts == [1]
    assert calls == []
    assert torch.equal(r.weights["conv2"], torch.zeros(2, 5))
    assert torch.equal(r.maps["conv2"], torch.zeros(2, 4, 4))


def test_forward_passes_on_shapes_gap_are_one_per_varying_channel_in_batches(shapes_gap, shapes_images):
    model = shapes_gap.module
    x, labels = shapes_images
    calls = []
    with count_calls(model, model.layer1) as counts:
        r = gc.ScoreCAM(model, ["layer4"], batch_size=50, progress=lambda d, t: calls.append((d, t)))(
            x[1:3], target=labels[1:3]
        )
    a = r.activations["layer4"]
    constant = a.amax(dim=(2, 3)) == a.amin(dim=(2, 3))
    varying = (~constant).sum(dim=1).tolist()
    assert all(0 < v <= 128 for v in varying)
    batches = sum(math.ceil(v / 50) for v in varying)
    assert counts == [1 + batches, 1 + batches]
    assert calls[-1] == (sum(varying), sum(varying))
    assert len(calls) == batches
    assert torch.equal(r.weights["layer4"][constant], torch.zeros(int(constant.sum())))
    # and the weights are the brute-force ones
    expected = brute_force_score_cam(model, "layer4", x[1:3], labels[1:3].tolist())
    torch.testing.assert_close(r.weights["layer4"], expected, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Batches, cancelling
# --------------------------------------------------------------------------------------------


def test_batch_size_does_not_change_the_result(strided_input):
    model = StridedCNN()
    results = [gc.ScoreCAM(model, ["conv1", "conv2"], batch_size=b)(strided_input, target=[1, 2]) for b in (1, 2, 64)]
    for other in results[1:]:
        for layer in ("conv1", "conv2"):
            # float32: a batch of 1 and a batch of 64 may round the convolutions' sums differently
            torch.testing.assert_close(other.weights[layer], results[0].weights[layer], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(other.maps[layer], results[0].maps[layer], rtol=1e-6, atol=1e-7)


def test_batch_item_equals_single_image(strided_input):
    model = StridedCNN()
    x = torch.cat([strided_input, strided_input[:1].flip(-1)])
    explainer = gc.ScoreCAM(model, ["conv2"], batch_size=2)
    batch = explainer(x, target=[0, 3, 2])
    for i, target in enumerate([0, 3, 2]):
        alone = explainer(x[i : i + 1], target=target)
        torch.testing.assert_close(batch.weights["conv2"][i], alone.weights["conv2"][0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(batch.maps["conv2"][i], alone.maps["conv2"][0], rtol=1e-6, atol=1e-7)


def test_a_progress_callback_that_raises_cancels_and_leaves_the_model_as_it_was(strided_input):
    model = StridedCNN()
    model.train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = snapshot(model)
    seen = []

    def cancel(done, total):
        seen.append((done, total))
        raise RuntimeError("cancelled by the user")

    with count_calls(model) as counts:
        with pytest.raises(RuntimeError, match="cancelled by the user"):
            gc.ScoreCAM(model, ["conv2"], batch_size=1, progress=cancel)(strided_input, target=0)
    assert seen == [(1, 6)]
    assert counts == [2]  # the shared pass and the first masked pass, then it stopped
    assert_no_hooks(model)
    assert_same_state(before, model)
    assert all(m.training for m in model.modules())
