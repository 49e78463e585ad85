"""gradcam_core.explainers.hires_cam: HiResCAM, ``ReLU(sum_k g^k * A^k)`` element by element.

At a layer followed by global average pooling and one linear layer the gradient is constant over
each channel, so HiResCAM equals Grad-CAM; behind a flatten head it is each cell's own
contribution to the score.
"""

from __future__ import annotations

import torch
from conftest import HAND_INPUT, OneConvFlatten, OneConvGAP, gap_head

import gradcam_core as gc

# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP: g = W[c] / 4, so the maps are Grad-CAM's (test_grad_cam.py):
#   class 0: [[0, 1.75], [0.5, 0]];  class 1: [[0.75, 0.375], [0, 1.0]]
# OneConvFlatten, class 0: g = [[1, 2], [3, 4]] on A0 = [[2, 5], [0, 2]], [[-1, 0], [1, 0]] on
# A1 = [[2, -1], [-1, 3]]: g * A summed over channels = [[2 - 2, 10 + 0], [0 - 1, 8 + 0]]
#   map = [[0, 10], [0, 8]]; its sum before the ReLU, 0 + 10 - 1 + 8 = 17, is the logit (no bias).


def test_hires_cam_one_conv_gap_by_hand():
    r = gc.HiResCAM(OneConvGAP().double(), ["conv"])(HAND_INPUT.double().expand(2, 1, 3, 3), target=[0, 1])
    expected = torch.tensor([[[0.0, 1.75], [0.5, 0.0]], [[0.75, 0.375], [0.0, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["conv"], expected, rtol=1e-12, atol=1e-15)
    assert r.weights == {}  # element-wise: no channel weights


def test_hires_cam_flatten_head_is_each_cells_contribution():
    r = gc.HiResCAM(OneConvFlatten(), ["conv"])(HAND_INPUT, target=0)
    assert torch.equal(r.maps["conv"], torch.tensor([[[0.0, 10.0], [0.0, 8.0]]]))
    assert r.logits[0, 0] == 17.0


def test_hires_cam_equals_grad_cam_at_the_gap_head_of_shapes_gap(shapes_gap, shapes_gap64, shapes_images):
    """float64 copy: sum_k (w_k / Z) A_k is the same sum either way to ~1e-13."""
    x, labels = shapes_images
    x = x.double()
    layer = shapes_gap.cam_layer
    a, w, _, _ = gap_head(shapes_gap64, layer, shapes_gap.fc, x, labels)
    hires = gc.HiResCAM(shapes_gap64, [layer])(x, target=labels)
    grad = gc.GradCAM(shapes_gap64, [layer])(x, target=labels)
    xgrad = gc.XGradCAM(shapes_gap64, [layer])(x, target=labels)
    z = a.shape[2] * a.shape[3]
    expected = torch.einsum("nk,nkhw->nhw", w / z, a).clamp(min=0)
    assert (expected > 0).any()
    for r in (hires, grad, xgrad):
        torch.testing.assert_close(r.maps[layer], expected, rtol=1e-10, atol=1e-13)


def test_hires_cam_is_gradient_times_activation_on_resnet34(resnet34, small_batch):
    """Against autograd run by the test itself at layer3, where the gradient varies."""
    model = resnet34.module
    x = small_batch[:2]
    captured = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = captured["a"]
    (g,) = torch.autograd.grad(logits[0, 4] + logits[1, 8], a)
    expected = (g * a).sum(dim=1).clamp(min=0).detach()
    r = gc.HiResCAM(model, ["layer3"])(x, target=[4, 8])
    scale = expected.max()
    assert scale > 0
    torch.testing.assert_close(r.maps["layer3"], expected, rtol=1e-4, atol=1e-5 * scale)
