"""gradcam_core.explainers.grad_cam (and the LayerExplainer base it stands on)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import HAND_INPUT, OneConvFlatten, OneConvGAP, assert_no_hooks, make_tiny
from torch import nn

import gradcam_core as gc

# --------------------------------------------------------------------------------------------
# Values worked out by hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT: A0 = [[2, 5], [0, 2]], A1 = [[2, -1], [-1, 3]];
# GAP = [2.25, 0.75]; fc W = [[1, -2], [0.5, 1]], b = [0.1, -0.3]
# logits = [2.25 - 1.5 + 0.1, 1.125 + 0.75 - 0.3] = [0.85, 1.575]   (top-1: class 1)
# d y^c / d A^k_ij = W[c, k] / 4, so alpha^c = W[c] / 4:
#   class 0: alpha = [0.25, -0.5]  -> 0.25 A0 - 0.5 A1 = [[-0.5, 1.75], [0.5, -1.0]]
#            map = [[0, 1.75], [0.5, 0]]
#   class 1: alpha = [0.125, 0.25] -> 0.125 A0 + 0.25 A1 = [[0.75, 0.375], [-0.25, 1.0]]
#            map = [[0.75, 0.375], [0, 1.0]]
#   class 0, counterfactual: alpha = [-0.25, 0.5] -> [[0.5, -1.75], [-0.5, 1.0]]
#            map = [[0.5, 0], [0, 1.0]]

A0 = [[2.0, 5.0], [0.0, 2.0]]
A1 = [[2.0, -1.0], [-1.0, 3.0]]


def test_grad_cam_one_conv_gap_by_hand():
    r = gc.GradCAM(OneConvGAP(), "conv")(HAND_INPUT, target=0)
    assert torch.equal(r.targets, torch.tensor([0]))
    assert torch.allclose(r.logits, torch.tensor([[0.85, 1.575]]), atol=1e-6)
    assert torch.equal(r.activations["conv"], torch.tensor([[A0, A1]]))
    assert torch.allclose(r.weights["conv"], torch.tensor([[0.25, -0.5]]), atol=1e-7)
    assert torch.allclose(r.maps["conv"], torch.tensor([[[0.0, 1.75], [0.5, 0.0]]]), atol=1e-6)
    assert r.maps["conv"].shape == (1, 2, 2)


def test_grad_cam_top1_by_hand():
    r = gc.GradCAM(OneConvGAP(), ["conv"])(HAND_INPUT)  # target None: class 1 scores 1.575
    assert torch.equal(r.targets, torch.tensor([1]))
    assert torch.allclose(r.weights["conv"], torch.tensor([[0.125, 0.25]]), atol=1e-7)
    assert torch.allclose(r.maps["conv"], torch.tensor([[[0.75, 0.375], [0.0, 1.0]]]), atol=1e-6)


def test_grad_cam_counterfactual_by_hand():
    r = gc.GradCAM(OneConvGAP(), ["conv"], counterfactual=True)(HAND_INPUT, target=0)
    assert torch.allclose(r.weights["conv"], torch.tensor([[-0.25, 0.5]]), atol=1e-7)
    assert torch.allclose(r.maps["conv"], torch.tensor([[[0.5, 0.0], [0.0, 1.0]]]), atol=1e-6)


def test_grad_cam_flatten_head_by_hand():
    # conv -> flatten -> linear(8 -> 2). Class 0's weights on A0 cells are [1, 2, 3, 4], on A1
    # cells [-1, 0, 1, 0]: alpha = [10 / 4, 0 / 4] = [2.5, 0]; map = ReLU(2.5 A0) = [[5, 12.5], [0, 5]].
    # Class 1 weighs only A1, by 1 per cell: alpha = [0, 1]; map = ReLU(A1) = [[2, 0], [0, 3]].
    # logits: class 0 = 2 + 10 + 0 + 8 - 2 + 0 - 1 + 0 = 17; class 1 = 2 - 1 - 1 + 3 = 3.
    r = gc.GradCAM(OneConvFlatten(), ["conv"])(HAND_INPUT.expand(2, 1, 3, 3), target=[0, 1])
    assert torch.allclose(r.logits, torch.tensor([[17.0, 3.0], [17.0, 3.0]]))
    assert torch.allclose(r.weights["conv"], torch.tensor([[2.5, 0.0], [0.0, 1.0]]))
    assert torch.allclose(r.maps["conv"][0], torch.tensor([[5.0, 12.5], [0.0, 5.0]]))
    assert torch.allclose(r.maps["conv"][1], torch.tensor([[2.0, 0.0], [0.0, 3.0]]))


def test_grad_cam_maps_are_nonnegative_and_at_layer_resolution(resnet34, small_batch):
    r = gc.GradCAM(resnet34.module, ["layer2", "layer3", "layer4"])(small_batch, target=5)
    # 64x64 input: strides 8, 16, 32
    assert r.maps["layer2"].shape == (3, 8, 8)
    assert r.maps["layer3"].shape == (3, 4, 4)
    assert r.maps["layer4"].shape == (3, 2, 2)
    assert r.weights["layer4"].shape == (3, 512)
    assert r.activations["layer3"].shape == (3, 256, 4, 4)
    for m in r.maps.values():
        assert (m >= 0).all()
    assert list(r.maps) == ["layer2", "layer3", "layer4"]


def test_several_layers_in_one_pass_equal_one_layer_at_a_time(resnet34, small_batch):
    x = small_batch[:2]
    together = gc.GradCAM(resnet34.module, ["layer3", "layer4"])(x, target=[1, 2])
    for layer in ("layer3", "layer4"):
        alone = gc.GradCAM(resnet34.module, layer)(x, target=[1, 2])
        assert torch.allclose(together.maps[layer], alone.maps[layer], rtol=1e-5, atol=1e-7)
        assert torch.allclose(together.weights[layer], alone.weights[layer], rtol=1e-5, atol=1e-9)


def test_alpha_is_the_spatial_mean_of_the_plain_gradient(resnet34, small_batch):
    """Against autograd run by the test itself on a copy of layer4's output."""
    model = resnet34.module
    x = small_batch[:1]
    captured = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, 9], captured["a"])
    r = gc.GradCAM(model, "layer4")(x, target=9)
    assert torch.allclose(r.weights["layer4"][0], grad[0].mean(dim=(1, 2)), rtol=1e-4, atol=1e-8)
    model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------
# Counterfactual
# --------------------------------------------------------------------------------------------


def test_counterfactual_weights_are_exactly_the_negated_alphas(resnet34, small_batch):
    x = small_batch
    plain = gc.GradCAM(resnet34.module, ["layer3", "layer4"])(x, target=[3, 4, 5])
    counter = gc.GradCAM(resnet34.module, ["layer3", "layer4"], counterfactual=True)(x, target=[3, 4, 5])
    for layer in ("layer3", "layer4"):
        assert torch.equal(counter.weights[layer], -plain.weights[layer])
        a = plain.activations[layer]
        alpha = plain.weights[layer]
        expected = torch.clamp(-(alpha[:, :, None, None] * a).sum(dim=1), min=0)
        assert torch.allclose(counter.maps[layer], expected, rtol=1e-5, atol=1e-6)
        # the two maps never light up the same cell
        assert ((counter.maps[layer] > 0) & (plain.maps[layer] > 0)).sum() == 0
    assert torch.equal(counter.logits, plain.logits)


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [None, 5, "list"])
def test_a_batch_gives_what_each_image_alone_gives(resnet34, small_batch, target):
    explainer = gc.GradCAM(resnet34.module, ["layer3", "layer4"])
    per_sample = [11, 0, 999]
    batch = explainer(small_batch, target=per_sample if target == "list" else target)
    for i in range(small_batch.shape[0]):
        t = per_sample[i] if target == "list" else target
        alone = explainer(small_batch[i : i + 1], target=t)
        assert batch.targets[i] == alone.targets[0]
        for layer in ("layer3", "layer4"):
            scale = batch.maps[layer].max()
            assert scale > 0
            assert torch.allclose(batch.maps[layer][i], alone.maps[layer][0], rtol=1e-4, atol=1e-5 * scale)
    if target == "list":
        assert batch.targets.tolist() == per_sample
    if target is None:
        assert torch.equal(batch.targets, batch.logits.argmax(dim=1))


def test_targets_accept_ints_numpy_scalars_and_one_class_per_image(tiny, tiny_input):
    explainer = gc.GradCAM(tiny, "conv2")
    expected = explainer(tiny_input, target=[2, 2, 2]).maps["conv2"]
    for target in (2, np.int64(2), torch.tensor(2), (2, 2, 2), np.array([2, 2, 2]), torch.tensor([2, 2, 2])):
        r = explainer(tiny_input, target=target)
        assert r.targets.tolist() == [2, 2, 2]
        assert torch.equal(r.maps["conv2"], expected)
    # a (C, H, W) image is a batch of one
    assert explainer(tiny_input[0], target=2).maps["conv2"].shape == (1, 8, 8)


@pytest.mark.parametrize("target", [[2], torch.tensor([2]), [1, 2], [[1, 2, 3]]])
def test_a_sequence_needs_one_class_per_image(tiny, tiny_input, target):
    with pytest.raises(ValueError, match="targets for a batch of 3 images"):
        gc.GradCAM(tiny, "conv2")(tiny_input, target=target)
    assert_no_hooks(tiny)


@pytest.mark.parametrize("target", [2.7, [1.0, 2.0, 3.0], torch.tensor([True, False, True])])
def test_a_target_that_is_not_an_integer_is_a_type_error(tiny, tiny_input, target):
    with pytest.raises(TypeError, match="class ind"):
        gc.GradCAM(tiny, "conv2")(tiny_input, target=target)
    assert_no_hooks(tiny)


@pytest.mark.parametrize("target", [5, 1000, -1, -5, [0, 5, 1], torch.tensor([0, 1, -1])])
def test_a_class_out_of_range_is_a_value_error(tiny, tiny_input, target):
    with pytest.raises(ValueError, match=r"out of range: this model has 5 classes \(0 to 4\)"):
        gc.GradCAM(tiny, "conv2")(tiny_input, target=target)
    assert_no_hooks(tiny)


@pytest.mark.parametrize("target", [[0, 1], [0, 1, 2, 3], []])
def test_a_wrong_length_target_list_is_a_value_error(tiny, tiny_input, target):
    with pytest.raises(ValueError, match=f"Got {len(target)} targets for a batch of 3 images"):
        gc.GradCAM(tiny, "conv2")(tiny_input, target=target)
    assert_no_hooks(tiny)


def test_bad_inputs_are_refused(tiny):
    explainer = gc.GradCAM(tiny, "conv2")
    with pytest.raises(TypeError, match="bool"):
        explainer(torch.zeros(1, 3, 8, 8), target=True)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        explainer(torch.zeros(8, 8))
    with pytest.raises(TypeError, match="preprocess"):
        explainer(np.zeros((1, 3, 8, 8), np.float32))
    assert_no_hooks(tiny)


def test_a_layer_without_spatial_maps_is_a_value_error(tiny, tiny_input):
    for explainer in (gc.GradCAM(tiny, ["conv2", "fc"]), gc.GuidedGradCAM(tiny, ["fc"])):
        with pytest.raises(ValueError, match=r"convolutional layer .* 'fc' gives \(3, 5\)"):
            explainer(tiny_input, target=0)
    assert_no_hooks(tiny)


def test_a_layer_that_never_runs_is_a_value_error(tiny_input):
    model = make_tiny()
    model.unused = nn.Conv2d(3, 3, 1)  # held by the model, never called in forward
    for explainer in (
        gc.GradCAM(model, ["conv2", "unused"]),
        gc.GuidedGradCAM(model, ["unused"]),
        gc.CAM(model, "unused", "fc"),
        gc.FeatureMaps(model, ["unused"]),
    ):
        with pytest.raises(ValueError, match="'unused' did not run in the forward pass"):
            explainer(tiny_input) if isinstance(explainer, gc.FeatureMaps) else explainer(tiny_input, 0)
    assert_no_hooks(model)


# --------------------------------------------------------------------------------------------
# Thread safety
# --------------------------------------------------------------------------------------------


def test_eight_threads_on_one_model_get_the_sequential_maps(resnet34, small_batch):
    model = resnet34.module
    x = small_batch[1:2]
    classes = [0, 2, 3, 5, 9, 11, 500, 999]
    layers = ["layer3", "layer4"]
    sequential = [gc.GradCAM(model, layers)(x, target=c) for c in classes]
    barrier = threading.Barrier(len(classes))
    results: list = [None] * len(classes)
    errors: list = []

    def worker(i):
        try:
            explainer = gc.GradCAM(model, layers)
            barrier.wait()
            results[i] = explainer(x, target=classes[i])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(classes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for c, got, expected in zip(classes, results, sequential):
        assert got.targets.tolist() == [c]
        for layer in layers:
            assert torch.equal(got.maps[layer], expected.maps[layer]), (c, layer)
            assert torch.equal(got.weights[layer], expected.weights[layer]), (c, layer)
    # the classes really differ, so a swapped result would be caught
    assert not torch.equal(sequential[0].weights["layer4"], sequential[1].weights["layer4"])
    assert_no_hooks(model)


# --------------------------------------------------------------------------------------------
# The real model: class discrimination on the cat-and-dog picture
# --------------------------------------------------------------------------------------------


def test_grad_cam_separates_the_dog_from_the_cat(efficientnet, cat_dog_x):
    """cat_dog.png: the bulldog sits in the upper part (rows ~0-140 of 224), the tabby lies across
    the lower part (rows ~115-224). Grad-CAM at layer4 (7x7) for 'bull mastiff' must put its peak
    and most of its mass in the upper half, 'tiger cat' in the lower half."""
    assert efficientnet.categories[243] == "bull mastiff"
    assert efficientnet.categories[282] == "tiger cat"
    r = gc.GradCAM(efficientnet.module, ["layer4"])(cat_dog_x.expand(2, -1, -1, -1), target=[243, 282])
    dog, cat = r.maps["layer4"]
    assert dog.shape == cat.shape == (7, 7)

    def peak_row(m):
        return int(torch.argmax(m).item()) // m.shape[1]

    assert peak_row(dog) <= 2, dog
    assert peak_row(cat) >= 4, cat
    assert dog[:3].sum() > 2 * dog[4:].sum()
    assert cat[4:].sum() > 2 * cat[:3].sum()
    # and the model itself prefers the dog
    assert int(r.logits[0].argmax()) == 243
