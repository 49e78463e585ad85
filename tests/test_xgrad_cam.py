"""gradcam_core.explainers.xgrad_cam: XGrad-CAM.

At a layer followed by global average pooling and one linear layer the gradient is the constant
``w_k / Z`` over each channel, so ``sum_ij A_ij g / sum_ij A_ij = w_k / Z``: XGrad-CAM's weights are
Grad-CAM's, and so are its maps.
"""

from __future__ import annotations

import torch
from conftest import HAND_INPUT, OneConvFlatten, OneConvGAP, gap_head

import gradcam_core as gc

# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT (see test_grad_cam.py): g = W[c] / 4 on every cell.
#   class 0: w = [0.25, -0.5], map [[0, 1.75], [0.5, 0]]
#   class 1: w = [0.125, 0.25], map [[0.75, 0.375], [0, 1.0]]


def test_xgrad_cam_one_conv_gap_by_hand():
    model = OneConvGAP().double()
    r = gc.XGradCAM(model, ["conv"])(HAND_INPUT.double().expand(2, 1, 3, 3), target=[0, 1])
    expected_w = torch.tensor([[0.25, -0.5], [0.125, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(r.weights["conv"], expected_w, rtol=1e-12, atol=0)
    expected = torch.tensor([[[0.0, 1.75], [0.5, 0.0]], [[0.75, 0.375], [0.0, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["conv"], expected, rtol=1e-12, atol=1e-15)


def test_xgrad_cam_flatten_head_by_hand():
    # conv -> flatten -> linear: class 0's gradient is [[1, 2], [3, 4]] on A0 = [[2, 5], [0, 2]]
    # and [[-1, 0], [1, 0]] on A1 = [[2, -1], [-1, 3]]:
    #   w_0 = (2 + 10 + 0 + 8) / 9 = 20/9;   w_1 = (-2 + 0 - 1 + 0) / 3 = -1
    #   map = ReLU(20/9 A0 - A1) = ReLU([[40/9 - 2, 100/9 + 1], [1, 40/9 - 3]])
    # (Grad-CAM would give [2.5, 0]: the two differ once the gradient varies over the map.)
    r = gc.XGradCAM(OneConvFlatten().double(), ["conv"])(HAND_INPUT.double(), target=0)
    torch.testing.assert_close(r.weights["conv"], torch.tensor([[20 / 9, -1.0]], dtype=torch.float64))
    expected = torch.tensor([[[40 / 9 - 2, 100 / 9 + 1], [1.0, 40 / 9 - 3]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["conv"], expected, rtol=1e-12, atol=1e-15)


def test_a_channel_whose_activations_sum_to_zero_gets_weight_zero():
    # A zero-weight conv channel: A1 = 0 everywhere, so sum A1 = 0 and the weight is 0, not NaN.
    model = OneConvGAP()
    with torch.no_grad():
        model.conv.weight[1].zero_()
    r = gc.XGradCAM(model, ["conv"])(HAND_INPUT, target=1)
    assert r.weights["conv"][0, 1] == 0
    assert torch.isfinite(r.maps["conv"]).all()
    torch.testing.assert_close(r.weights["conv"][0, 0], torch.tensor(0.125))


def test_xgrad_cam_equals_grad_cam_at_the_gap_head_of_shapes_gap(shapes_gap, shapes_gap64, shapes_images):
    """float64 copy: the weighted average of a constant gradient is that constant to ~1e-15."""
    x, labels = shapes_images
    x = x.double()
    layer = shapes_gap.cam_layer
    a, w, _, _ = gap_head(shapes_gap64, layer, shapes_gap.fc, x, labels)
    xgrad = gc.XGradCAM(shapes_gap64, [layer])(x, target=labels)
    grad = gc.GradCAM(shapes_gap64, [layer])(x, target=labels)
    z = a.shape[2] * a.shape[3]
    # channels that are 0 everywhere get XGrad-CAM weight 0 (and contribute nothing to either map)
    active = a.sum(dim=(2, 3)) != 0
    torch.testing.assert_close(xgrad.weights[layer][active], (w / z)[active], rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(xgrad.weights[layer][active], grad.weights[layer][active], rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(xgrad.maps[layer], grad.maps[layer], rtol=1e-10, atol=1e-13)
    assert xgrad.maps[layer].shape == (4, 8, 8) and (xgrad.maps[layer] > 0).any()


def test_xgrad_cam_differs_from_grad_cam_inside_resnet34(resnet34, small_batch):
    """layer3 is followed by layer4, not pooling: the gradient varies, the weights differ."""
    x = small_batch[:1]
    xgrad = gc.XGradCAM(resnet34.module, ["layer3"])(x, target=7)
    grad = gc.GradCAM(resnet34.module, ["layer3"])(x, target=7)
    assert not torch.allclose(xgrad.weights["layer3"], grad.weights["layer3"], rtol=1e-2, atol=0)
    assert xgrad.maps["layer3"].shape == (1, 4, 4)
    assert (xgrad.maps["layer3"] >= 0).all()
