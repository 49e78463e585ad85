"""gradcam_core.explainers.layer_cam: LayerCAM, ``ReLU(sum_k ReLU(g^k) * A^k)``.

At a layer followed by global average pooling and one linear layer ``g^k = w_k / Z`` on every
cell, so the map is ``ReLU(sum_k ReLU(w_k) A^k) / Z``.
"""

from __future__ import annotations

import torch
from conftest import HAND_INPUT, OneConvFlatten, OneConvGAP, gap_head

import gradcam_core as gc

# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT: A0 = [[2, 5], [0, 2]], A1 = [[2, -1], [-1, 3]], Z = 4
#   class 0: ReLU(w) = [1, 0]   -> A0 / 4 = [[0.5, 1.25], [0, 0.5]]
#            (Grad-CAM, which keeps the negative weight, gives [[0, 1.75], [0.5, 0]])
#   class 1: ReLU(w) = [0.5, 1] -> (0.5 A0 + A1) / 4 = [[3, 1.5], [-1, 4]] / 4 -> [[0.75, 0.375], [0, 1]]


def test_layer_cam_one_conv_gap_by_hand():
    r = gc.LayerCAM(OneConvGAP().double(), ["conv"])(HAND_INPUT.double().expand(2, 1, 3, 3), target=[0, 1])
    expected = torch.tensor([[[0.5, 1.25], [0.0, 0.5]], [[0.75, 0.375], [0.0, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["conv"], expected, rtol=1e-12, atol=1e-15)
    assert r.weights == {}  # no channel weights
    assert r.maps["conv"].shape == (2, 2, 2)


def test_layer_cam_flatten_head_by_hand():
    # class 0: g = [[1, 2], [3, 4]] on A0, [[-1, 0], [1, 0]] on A1; ReLU(g) = [[0, 0], [1, 0]] on A1
    # sum = [[2, 10], [0, 8]] + [[0, 0], [-1, 0]] = [[2, 10], [-1, 8]] -> map [[2, 10], [0, 8]]
    r = gc.LayerCAM(OneConvFlatten(), ["conv"])(HAND_INPUT, target=0)
    assert torch.equal(r.maps["conv"], torch.tensor([[[2.0, 10.0], [0.0, 8.0]]]))


def test_layer_cam_closed_form_at_the_gap_head_of_shapes_gap(shapes_gap, shapes_gap64, shapes_images):
    """float64 copy: ReLU(sum_k ReLU(w_k) A_k) / Z to ~1e-13."""
    x, labels = shapes_images
    x = x.double()
    targets = [1, int(labels[1]), 4, 0]
    layer = shapes_gap.cam_layer
    a, w, _, _ = gap_head(shapes_gap64, layer, shapes_gap.fc, x, targets)
    z = a.shape[2] * a.shape[3]
    assert z == 64
    expected = torch.einsum("nk,nkhw->nhw", w.clamp(min=0), a).clamp(min=0) / z
    r = gc.LayerCAM(shapes_gap64, [layer])(x, target=targets)
    assert (expected > 0).any()
    torch.testing.assert_close(r.maps[layer], expected, rtol=1e-10, atol=1e-13)


def test_layer_cam_on_early_layers_of_resnet34_against_autograd(resnet34, small_batch):
    model = resnet34.module
    x = small_batch[:1]
    captured = {}
    handles = [
        model.layer1.register_forward_hook(lambda m, i, o: captured.setdefault("layer1", o)),
        model.layer2.register_forward_hook(lambda m, i, o: captured.setdefault("layer2", o)),
    ]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    grads = torch.autograd.grad(logits[0, 42], [captured["layer1"], captured["layer2"]])
    r = gc.LayerCAM(model, ["layer1", "layer2"])(x, target=42)
    for (layer, a), g in zip(captured.items(), grads, strict=True):
        expected = (g.clamp(min=0) * a).sum(dim=1).clamp(min=0).detach()
        scale = expected.max()
        assert scale > 0
        torch.testing.assert_close(r.maps[layer], expected, rtol=1e-4, atol=1e-5 * scale)
    assert r.maps["layer1"].shape == (1, 16, 16) and r.maps["layer2"].shape == (1, 8, 8)
