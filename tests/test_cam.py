"""gradcam_core.explainers.cam: CAM, its head check, and its agreement with Grad-CAM."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    HAND_INPUT,
    FlattenHead,
    OneConvFlatten,
    OneConvGAP,
    SequentialHead,
    TwoLinearHead,
    assert_no_hooks,
)

import gradcam_core as gc

# OneConvGAP on HAND_INPUT: A0 = [[2, 5], [0, 2]], A1 = [[2, -1], [-1, 3]], fc W = [[1, -2], [0.5, 1]].
# class 0: w = [1, -2]  -> A0 - 2 A1 = [[-2, 7], [2, -4]]    -> CAM = [[0, 7], [2, 0]]
# class 1: w = [0.5, 1] -> 0.5 A0 + A1 = [[3, 1.5], [-1, 4]] -> CAM = [[3, 1.5], [0, 4]]


def test_cam_by_hand():
    r = gc.CAM(OneConvGAP(), layer="conv", fc="fc")(HAND_INPUT.repeat(2, 1, 1, 1), target=[0, 1])
    assert torch.equal(r.weights["conv"], torch.tensor([[1.0, -2.0], [0.5, 1.0]]))
    assert torch.equal(r.maps["conv"][0], torch.tensor([[0.0, 7.0], [2.0, 0.0]]))
    assert torch.equal(r.maps["conv"][1], torch.tensor([[3.0, 1.5], [0.0, 4.0]]))
    assert torch.allclose(r.logits, torch.tensor([[0.85, 1.575]] * 2), atol=1e-6)
    assert r.targets.tolist() == [0, 1]


def test_cam_is_grad_cam_times_the_number_of_cells_on_a_gap_head():
    # alpha = w / Z with Z = 2 * 2 cells, so CAM = 4 * Grad-CAM before any normalization
    model = OneConvGAP()
    for target in (0, 1):
        cam = gc.CAM(model, "conv", "fc")(HAND_INPUT, target=target)
        grad_cam = gc.GradCAM(model, "conv")(HAND_INPUT, target=target)
        assert torch.allclose(cam.maps["conv"], 4 * grad_cam.maps["conv"], atol=1e-6)
        assert torch.allclose(cam.weights["conv"], 4 * grad_cam.weights["conv"], atol=1e-7)


@pytest.fixture(scope="module")
def resnet_x96() -> torch.Tensor:
    g = torch.Generator().manual_seed(96)
    return torch.randn(2, 3, 96, 96, generator=g)


def test_cam_equals_grad_cam_after_normalize_on_resnet34(resnet34, resnet_x96):
    model = resnet34.module
    cam = gc.CAM(model, resnet34.cam_layer, resnet34.fc)
    grad_cam = gc.GradCAM(model, [resnet34.cam_layer])
    lit = 0
    for classes in ([0, 5], [11, 999], [500, 3]):
        c = cam(resnet_x96, target=classes)
        g = grad_cam(resnet_x96, target=classes)
        assert c.maps["layer4"].shape == (2, 3, 3)
        assert torch.equal(c.weights["layer4"], model.fc.weight[classes].detach())
        assert torch.allclose(gc.normalize(c.maps["layer4"]), gc.normalize(g.maps["layer4"]), atol=1e-5)
        assert torch.allclose(c.logits, g.logits, rtol=1e-5, atol=1e-5)
        lit += int((c.maps["layer4"].flatten(1).max(dim=1).values > 0).sum())
    assert lit >= 4, "too few non-zero maps for the comparison to mean anything"


def test_cam_equals_grad_cam_after_normalize_on_efficientnet(efficientnet, cat_dog_x):
    x = cat_dog_x.expand(2, -1, -1, -1)
    c = gc.CAM(efficientnet.module, "layer4", "fc")(x, target=[243, 282])
    g = gc.GradCAM(efficientnet.module, "layer4")(x, target=[243, 282])
    assert torch.allclose(gc.normalize(c.maps["layer4"]), gc.normalize(g.maps["layer4"]), atol=1e-5)


@pytest.mark.parametrize("target", [None, 5, "list"])
def test_a_batch_gives_what_each_image_alone_gives(resnet34, resnet_x96, target):
    cam = gc.CAM(resnet34.module, "layer4", "fc")
    per_sample = [999, 0]
    batch = cam(resnet_x96, target=per_sample if target == "list" else target)
    for i in range(2):
        alone = cam(resnet_x96[i : i + 1], target=per_sample[i] if target == "list" else target)
        assert batch.targets[i] == alone.targets[0]
        scale = batch.maps["layer4"].max()
        assert scale > 0
        assert torch.allclose(batch.maps["layer4"][i], alone.maps["layer4"][0], rtol=1e-4, atol=1e-5 * scale)
        assert torch.equal(batch.weights["layer4"][i], alone.weights["layer4"][0])


# --------------------------------------------------------------------------------------------
# Heads CAM does not apply to
# --------------------------------------------------------------------------------------------


def test_cam_refuses_a_flatten_head():
    model = FlattenHead()
    with pytest.raises(ValueError, match="flattens the feature maps") as info:
        gc.CAM(model, "conv", "fc")(torch.randn(1, 3, 4, 4), target=0)
    assert "GradCAM" in str(info.value)
    assert_no_hooks(model)
    with pytest.raises(ValueError, match="GradCAM"):
        gc.CAM(OneConvFlatten(), "conv", "fc")(HAND_INPUT)
    # Grad-CAM, which the message points to, does work on it
    assert gc.GradCAM(model, "conv")(torch.randn(1, 3, 4, 4), target=0).maps["conv"].shape == (1, 4, 4)


def test_cam_refuses_two_linear_layers():
    model = TwoLinearHead()
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(ValueError, match="other layers between 'conv' and the output") as info:
        gc.CAM(model, "conv", "fc")(x, target=1)
    assert "GradCAM" in str(info.value)
    # naming the first of the two linear layers: its outputs are not the logits
    with pytest.raises(ValueError, match="GradCAM"):
        gc.CAM(model, "conv", "hidden")(x, target=1)
    assert_no_hooks(model)


def test_cam_refuses_a_head_that_is_not_one_linear_layer():
    with pytest.raises(ValueError, match="found Sequential") as info:
        gc.CAM(SequentialHead(), "conv", "fc")
    assert "GradCAM" in str(info.value)
    with pytest.raises(ValueError, match="found nothing") as info:
        gc.CAM(OneConvGAP(), "conv", "classifier")
    assert "GradCAM" in str(info.value)


def test_cam_refuses_a_layer_before_the_last_stage(resnet34, resnet_x96):
    with pytest.raises(ValueError, match="GradCAM"):
        gc.CAM(resnet34.module, "layer3", "fc")(resnet_x96, target=0)
    assert_no_hooks(resnet34.module)


def test_cam_targets_out_of_range(tiny, tiny_input):
    for target in (5, -1, [0, 1, 7]):
        with pytest.raises(ValueError, match="out of range"):
            gc.CAM(tiny, "relu2", "fc")(tiny_input, target=target)
    with pytest.raises(ValueError, match="Got 2 targets for a batch of 3"):
        gc.CAM(tiny, "relu2", "fc")(tiny_input, target=[0, 1])
    assert_no_hooks(tiny)


def test_cam_builds_no_graph(tiny, tiny_input):
    # CAM needs no gradient: nothing it returns is attached to a graph, even outside no_grad
    r = gc.CAM(tiny, "relu2", "fc")(tiny_input, target=1)
    assert r.logits.grad_fn is None and r.maps["relu2"].grad_fn is None
    assert torch.is_grad_enabled()


class OneConvGMP(OneConvGAP):
    """OneConvGAP with global MAX pooling: logits = fc(max A) = [5 - 6 + 0.1, 2.5 + 3 - 0.3] on HAND_INPUT."""

    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveMaxPool2d(1)


class OneConvSumPool(OneConvGAP):
    """OneConvGAP summing each map instead of averaging: neither GAP nor GMP, so CAM must refuse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).sum(dim=(2, 3)))


def test_cam_applies_to_a_global_max_pooling_head_with_the_same_weighted_sum():
    r = gc.CAM(OneConvGMP(), layer="conv", fc="fc")(HAND_INPUT.repeat(2, 1, 1, 1), target=[0, 1])
    assert torch.allclose(r.logits, torch.tensor([[-0.9, 5.2]] * 2), atol=1e-6)
    assert torch.equal(r.maps["conv"][0], torch.tensor([[0.0, 7.0], [2.0, 0.0]]))
    assert torch.equal(r.maps["conv"][1], torch.tensor([[3.0, 1.5], [0.0, 4.0]]))


def test_cam_refuses_a_pooling_that_is_neither_average_nor_max():
    with pytest.raises(ValueError, match="differ from it by up to"):
        gc.CAM(OneConvSumPool(), layer="conv", fc="fc")(HAND_INPUT)
