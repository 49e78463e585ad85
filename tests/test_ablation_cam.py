"""gradcam_core.explainers.ablation_cam: Ablation-CAM, ``w_k = (y^c - y^c_k) / y^c``.

``y^c_k`` is the class score with channel ``k`` of the layer zeroed. At a layer followed by global
average pooling and one linear layer, zeroing channel ``k`` removes exactly ``w_k * mean(A_k)``
from the logit, so ``w_k^c = w_k * mean(A_k) / y^c``. The references here zero the channel with a
forward hook and run the whole model again, the slow way the package avoids.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import (
    HAND_INPUT,
    OneConvGAP,
    assert_no_hooks,
    assert_same_state,
    count_calls,
    gap_head,
    make_tiny,
    snapshot,
)
from torch import nn

import gradcam_core as gc


def brute_force_ablation(model: nn.Module, layer: str, x: torch.Tensor, target: int, channels) -> torch.Tensor:
    """``(y - y_k) / y`` for one image ``x`` (1, C, H, W), each channel of ``channels`` zeroed in the
    full model by a forward hook on ``layer`` (one copy of the image per channel)."""
    channels = torch.as_tensor(channels)
    module = dict(model.named_modules())[layer]

    def zero(m, inputs, output):
        output = output.clone()
        output[torch.arange(len(channels)), channels] = 0
        return output

    with torch.no_grad():
        y = model(x)[0, target]
        handle = module.register_forward_hook(zero)
        try:
            ablated = model(x.expand(len(channels), -1, -1, -1))[:, target]
        finally:
            handle.remove()
    return (y - ablated) / y


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT: mean(A) = [2.25, 0.75], W = [[1, -2], [0.5, 1]], logits [0.85, 1.575]
#   class 0: w_k mean(A_k) = [2.25, -1.5]  -> weights [2.25, -1.5] / 0.85 = [45/17, -30/17]
#            map = ReLU(45/17 A0 - 30/17 A1) = ReLU([[30, 255], [30, 0]]) / 17
#   class 1: w_k mean(A_k) = [1.125, 0.75] -> weights [1.125, 0.75] / 1.575 = [5/7, 10/21]
#            map = ReLU(15 A0 + 10 A1) / 21 = ReLU([[50, 65], [-10, 60]]) / 21


def test_ablation_cam_one_conv_gap_by_hand():
    model = OneConvGAP().double()
    with torch.no_grad():  # the bias exactly, not its float32 rounding: y^c is a denominator here
        model.fc.bias.copy_(torch.tensor([0.1, -0.3], dtype=torch.float64))
    r = gc.AblationCAM(model, ["conv"])(HAND_INPUT.double().expand(2, 1, 3, 3), target=[0, 1])
    expected_w = torch.tensor([[45 / 17, -30 / 17], [5 / 7, 10 / 21]], dtype=torch.float64)
    torch.testing.assert_close(r.weights["conv"], expected_w, rtol=1e-12, atol=0)
    expected = torch.tensor(
        [[[30 / 17, 255 / 17], [30 / 17, 0.0]], [[50 / 21, 65 / 21], [0.0, 60 / 21]]], dtype=torch.float64
    )
    torch.testing.assert_close(r.maps["conv"], expected, rtol=1e-12, atol=1e-14)


def test_a_zero_score_gives_zero_weights_not_nan():
    # fc bias 0 for class 0 set to -0.75: y^0 = 2.25 - 1.5 - 0.75 = 0 exactly (all binary fractions)
    model = OneConvGAP()
    with torch.no_grad():
        model.fc.bias[0] = -0.75
    r = gc.AblationCAM(model, ["conv"])(HAND_INPUT, target=0)
    assert r.logits[0, 0] == 0
    assert torch.equal(r.weights["conv"], torch.zeros(1, 2))
    assert torch.equal(r.maps["conv"], torch.zeros(1, 2, 2))


def test_ablation_cam_closed_form_at_the_gap_head_of_shapes_gap(shapes_gap, shapes_gap64, shapes_images):
    """float64 copy: the drop of the logit is w_k mean(A_k) to ~1e-13 (in float32 the difference of
    two nearly equal logits would carry ~1e-6 of rounding)."""
    x, labels = shapes_images
    x = x.double()
    layer = shapes_gap.cam_layer
    a, w, mean, y = gap_head(shapes_gap64, layer, shapes_gap.fc, x, labels)
    r = gc.AblationCAM(shapes_gap64, [layer], batch_size=50)(x, target=labels)
    expected = w * mean / y[:, None]
    assert (expected != 0).any()
    torch.testing.assert_close(r.weights[layer], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        r.maps[layer], torch.einsum("nk,nkhw->nhw", expected, a).clamp(min=0), rtol=1e-9, atol=1e-12
    )


# --------------------------------------------------------------------------------------------
# Against zeroing each channel in the full model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["conv1", "conv2", "bn"])
def test_ablation_cam_equals_brute_force_on_a_tiny_cnn(layer, tiny_input):
    # conv1 is followed by an in-place ReLU: the ablated copies go through it without harm.
    model = make_tiny()
    r = gc.AblationCAM(model, [layer], batch_size=4)(tiny_input, target=[0, 3, 4])
    k = r.activations[layer].shape[1]
    for i, target in enumerate([0, 3, 4]):
        expected = brute_force_ablation(model, layer, tiny_input[i : i + 1], target, range(k))
        torch.testing.assert_close(r.weights[layer][i], expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
    assert_no_hooks(model)


@pytest.mark.parametrize("layer", ["layer4", "layer4.0.conv1", "layer4.1.bn2"])
def test_ablation_cam_equals_brute_force_on_resnet34(layer, resnet34, small_batch):
    """At a stage boundary and inside residual blocks, whose rest needs the block's input (the
    skip connection) as well as the layer's output. 24 channels checked, spread over all of them,
    and the one with the largest weight."""
    model = resnet34.module
    x = small_batch[1:2]
    with count_calls(model.conv1, dict(model.named_modules())[layer]) as counts:
        r = gc.AblationCAM(model, [layer], batch_size=128)(x, target=7)
    w = r.weights[layer][0]
    channels = list(range(0, w.numel(), w.numel() // 24))[:24] + [int(w.abs().argmax())]
    expected = brute_force_ablation(model, layer, x, 7, channels)
    scale = expected.abs().max()
    assert scale > 0
    # float32: y - y_k is a difference of two logits, each rounded; the tolerance is on that scale
    torch.testing.assert_close(w[channels], expected, rtol=1e-3, atol=1e-4 * scale)
    assert_no_hooks(model)
    # The ablated layer runs in the shared pass only. The stem runs there too, and inside a block
    # at most once more (the rest's skip connection needs the block's input: computed once for
    # the call, never once per ablated channel).
    stem, ablated = counts
    assert ablated == 1
    assert stem == 1 if layer == "layer4" else stem <= 2


# --------------------------------------------------------------------------------------------
# The layers before are not computed again
# --------------------------------------------------------------------------------------------


def test_at_a_stage_boundary_the_layers_before_run_once(resnet34, small_batch):
    model = resnet34.module
    with count_calls(model, model.conv1, model.layer3, model.layer4, model.fc) as counts:
        r = gc.AblationCAM(model, ["layer4"], batch_size=100)(small_batch[:2], target=[1, 2])
    top, stem, layer3, layer4, fc = counts
    # one shared pass; the 512 ablated copies of each image run pooling and fc only, 100 at a time
    assert (top, stem, layer3, layer4) == (1, 1, 1, 1)
    assert fc == 1 + 2 * math.ceil(512 / 100)
    assert r.weights["layer4"].shape == (2, 512)


def test_on_a_tiny_cnn_the_layers_before_run_once():
    model = make_tiny()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with count_calls(model, model.conv1, model.conv2, model.bn, model.fc) as counts:
        gc.AblationCAM(model, ["conv2"], batch_size=4)(x, target=1)
    # conv2 has 6 channels: chunks of 4 and 2 for each of the 3 images through bn ... fc
    assert counts == [1, 1, 1, 1 + 3 * 2, 1 + 3 * 2]


# --------------------------------------------------------------------------------------------
# Batches, progress, cancelling
# --------------------------------------------------------------------------------------------


def test_batch_size_does_not_change_the_result(tiny, tiny_input):
    results = [gc.AblationCAM(tiny, ["conv2", "relu1"], batch_size=b)(tiny_input, target=2) for b in (1, 4, 64)]
    for other in results[1:]:
        for layer in ("conv2", "relu1"):
            # float32: a different batch of copies may round the rest's sums differently
            torch.testing.assert_close(other.weights[layer], results[0].weights[layer], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(other.maps[layer], results[0].maps[layer], rtol=1e-5, atol=1e-6)


def test_batch_item_equals_single_image(tiny, tiny_input):
    explainer = gc.AblationCAM(tiny, ["conv2"], batch_size=5)
    batch = explainer(tiny_input, target=[4, 0, 2])
    for i, target in enumerate([4, 0, 2]):
        alone = explainer(tiny_input[i : i + 1], target=target)
        torch.testing.assert_close(batch.weights["conv2"][i], alone.weights["conv2"][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batch.maps["conv2"][i], alone.maps["conv2"][0], rtol=1e-5, atol=1e-6)


def test_progress_counts_single_image_passes(tiny, tiny_input):
    calls = []
    gc.AblationCAM(tiny, ["conv2"], batch_size=4, progress=lambda done, total: calls.append((done, total)))(
        tiny_input[:2], target=0
    )
    # 6 channels per image, 4 at a time: 4, 2 for the first image, 4, 2 for the second
    assert calls == [(4, 12), (6, 12), (10, 12), (12, 12)]


def test_a_progress_callback_that_raises_cancels_and_leaves_the_model_as_it_was(tiny_input):
    model = make_tiny()
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 0.5)
    before = snapshot(model)
    calls = []

    def cancel(done, total):
        calls.append(done)
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        gc.AblationCAM(model, ["conv2"], batch_size=2, progress=cancel)(tiny_input, target=1)
    assert calls == [2]  # stopped after the first batch
    assert_no_hooks(model)
    assert_same_state(before, model)


def test_bad_batch_sizes_are_refused(tiny):
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            gc.AblationCAM(tiny, ["conv2"], batch_size=bad)


def test_a_layer_called_twice_is_refused_when_the_explainer_is_built(resnet34):
    # torchvision's BasicBlock calls its one ReLU module twice
    with pytest.raises(ValueError, match="'layer1.0.relu' is called 2 times"):
        gc.AblationCAM(resnet34.module, ["layer1.0.relu"])
    assert_no_hooks(resnet34.module)
