"""gradcam_core.explainers.grad_cam_element_wise: ``sum_k ReLU(g^k * A^k)``.

At a layer followed by global average pooling and one linear layer ``g^k = w_k / Z`` on every
cell, so the map is ``sum_k ReLU(w_k A^k) / Z`` where HiResCAM gives ``ReLU(sum_k w_k A^k) / Z``.
The reference is pytorch-grad-cam's ``GradCAMElementWise``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import HAND_INPUT, OneConvGAP, count_calls, gap_head
from pytorch_grad_cam_reference import as_library, correlations, library_maps

import gradcam_core as gc
from gradcam_core.explainers import run


@pytest.fixture(scope="module")
def resnet_x() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT: A0 = [[2, 5], [0, 2]], A1 = [[2, -1], [-1, 3]], Z = 4
#   class 0, w = [1, -2]:  (ReLU(A0) + ReLU(-2 A1)) / 4 = ([[2, 5], [0, 2]] + [[0, 2], [2, 0]]) / 4
#                          = [[0.5, 1.75], [0.5, 0.5]]   (HiResCAM: ReLU(A0 - 2 A1) / 4 = [[0, 1.75], [0.5, 0]])
#   class 1, w = [0.5, 1]: ([[1, 2.5], [0, 1]] + [[2, 0], [0, 3]]) / 4 = [[0.75, 0.625], [0, 1]]


def test_element_wise_grad_cam_one_conv_gap_by_hand():
    model = OneConvGAP().double()
    x = HAND_INPUT.double().expand(2, 1, 3, 3)
    r = gc.GradCAMElementWise(model, ["conv"])(x, target=[0, 1])
    expected = torch.tensor([[[0.5, 1.75], [0.5, 0.5]], [[0.75, 0.625], [0.0, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["conv"], expected, rtol=1e-12, atol=1e-15)
    assert r.weights == {}
    hires = gc.HiResCAM(model, ["conv"])(x, target=[0, 1]).maps["conv"]
    assert torch.equal(hires[0], torch.tensor([[0.0, 1.75], [0.5, 0.0]], dtype=torch.float64))


def test_closed_form_at_the_gap_head_of_shapes_gap(shapes_gap, shapes_gap64, shapes_images):
    x, labels = shapes_images
    x = x.double()
    targets = [1, int(labels[1]), 4, 0]
    layer = shapes_gap.cam_layer
    a, w, _, _ = gap_head(shapes_gap64, layer, shapes_gap.fc, x, targets)
    z = a.shape[2] * a.shape[3]
    expected = (w[:, :, None, None] * a).clamp(min=0).sum(dim=1) / z
    r = gc.GradCAMElementWise(shapes_gap64, [layer])(x, target=targets)
    assert (expected > 0).any()
    torch.testing.assert_close(r.maps[layer], expected, rtol=1e-10, atol=1e-13)
    # never below HiResCAM: a sum of positive parts is at least the positive part of the sum
    hires = gc.HiResCAM(shapes_gap64, [layer])(x, target=targets).maps[layer]
    assert (r.maps[layer] >= hires - 1e-12).all()


def test_it_shares_the_one_forward_and_backward_pass(tiny, tiny_input, monkeypatch):
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(tiny) as counts:
        _, outputs = run(tiny, tiny_input, 1, [cls(tiny, ["conv2"]) for cls in (gc.GradCAM, gc.GradCAMElementWise)])
    assert counts == [1] and grads == [1]
    assert outputs[1].value.maps["conv2"].shape == (3, 8, 8)


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def test_equals_pytorch_grad_cam_on_resnet34(resnet34, resnet_x):
    """Measured: correlation 1.00000 at layer3 and layer4 for both images."""
    from pytorch_grad_cam import GradCAMElementWise

    model = resnet34.module
    r = gc.GradCAMElementWise(model, ["layer3", "layer4"])(resnet_x)
    for layer in ("layer3", "layer4"):
        theirs = library_maps(GradCAMElementWise, model, layer, resnet_x, r.targets)
        assert min(correlations(as_library(r.maps[layer], resnet_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_on_efficientnet_cat_dog(efficientnet, cat_dog_x):
    """Measured: correlation 1.00000 at layer1 .. layer4."""
    from pytorch_grad_cam import GradCAMElementWise

    model = efficientnet.module
    r = gc.GradCAMElementWise(model, efficientnet.stages)(cat_dog_x, target=243)
    for layer in efficientnet.stages:
        theirs = library_maps(GradCAMElementWise, model, layer, cat_dog_x, 243)
        assert correlations(as_library(r.maps[layer], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99, layer
