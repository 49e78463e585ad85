"""gradcam_core.explainers.grad_cam_plus_plus: Grad-CAM++.

At a layer followed by global average pooling and one linear layer the gradient is the constant
``g = w_k / Z`` over channel ``k``'s map, and the paper's weights collapse to a closed form:

    alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3) = 1 / (2 + w_k * mean(A_k))
    w_k^c    = sum_ij alpha_ij ReLU(g) = Z * ReLU(w_k) / Z / (2 + w_k mean(A_k))
             = ReLU(w_k) / (2 + w_k * mean(A_k))
"""

from __future__ import annotations

import torch
from conftest import HAND_INPUT, OneConvFlatten, OneConvGAP, gap_head

import gradcam_core as gc

# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# OneConvGAP on HAND_INPUT: A0 = [[2, 5], [0, 2]] (mean 2.25), A1 = [[2, -1], [-1, 3]] (mean 0.75);
# fc W = [[1, -2], [0.5, 1]].
#   class 0: w = [1, -2]  -> [1 / (2 + 2.25), 0 / (2 - 1.5)] = [4/17, 0]
#            map = ReLU(4/17 A0) = [[8/17, 20/17], [0, 8/17]]
#   class 1: w = [0.5, 1] -> [0.5 / (2 + 1.125), 1 / (2 + 0.75)] = [0.16, 4/11]
#            0.16 A0 + 4/11 A1 = [[0.32 + 8/11, 0.8 - 4/11], [-4/11, 0.32 + 12/11]]
#            map = [[1.0472727, 0.4363636], [0, 1.4109091]]


def test_grad_cam_plus_plus_one_conv_gap_by_hand():
    model = OneConvGAP().double()
    x = HAND_INPUT.double().expand(2, 1, 3, 3)
    r = gc.GradCAMPlusPlus(model, ["conv"])(x, target=[0, 1])
    expected_w = torch.tensor([[4 / 17, 0.0], [0.16, 4 / 11]], dtype=torch.float64)
    torch.testing.assert_close(r.weights["conv"], expected_w, rtol=1e-12, atol=1e-15)
    expected_maps = torch.tensor(
        [[[8 / 17, 20 / 17], [0.0, 8 / 17]], [[0.32 + 8 / 11, 0.8 - 4 / 11], [0.0, 0.32 + 12 / 11]]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(r.maps["conv"], expected_maps, rtol=1e-12, atol=1e-15)
    assert r.maps["conv"].shape == (2, 2, 2)
    assert r.weights["conv"].shape == (2, 2)


def test_grad_cam_plus_plus_closed_form_at_the_gap_head_of_shapes_gap(shapes_gap, shapes_gap64, shapes_images):
    """float64 copy: the closed form and the package's sums then agree to ~1e-12."""
    x, labels = shapes_images
    x = x.double()
    targets = [int(labels[0]), 0, 2, int(labels[3])]
    layer, fc = shapes_gap.cam_layer, shapes_gap.fc
    assert (layer, fc) == ("layer4", "fc")
    a, w, mean, _ = gap_head(shapes_gap64, layer, fc, x, targets)
    r = gc.GradCAMPlusPlus(shapes_gap64, [layer])(x, target=targets)
    expected = w.clamp(min=0) / (2 + w * mean)
    assert (expected > 0).any() and (w < 0).any()  # both branches of the ReLU are exercised
    torch.testing.assert_close(r.weights[layer], expected, rtol=1e-10, atol=1e-14)
    expected_map = torch.einsum("nk,nkhw->nhw", expected, a).clamp(min=0)
    torch.testing.assert_close(r.maps[layer], expected_map, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r.activations[layer], a, rtol=0, atol=0)
    assert r.maps[layer].shape == (4, 8, 8)


def test_grad_cam_plus_plus_equals_the_paper_formula_where_the_gradient_varies():
    """conv -> flatten -> linear: the gradient differs from cell to cell, so the per-position
    alphas matter. Class 0's gradient at A0 is [[1, 2], [3, 4]], at A1 [[-1, 0], [1, 0]]:
      A0: sum A = 9; alpha_ij = g^2 / (2 g^2 + 9 g^3) = 1 / (2 + 9 g):
          g = 1, 2, 3, 4 -> 1/11, 1/20, 1/29, 1/38; w_0 = 1/11 + 2/20 + 3/29 + 4/38
      A1: sum A = 3; g = -1 -> alpha 1 / (2 - 3) = -1, but ReLU(g) = 0; g = 0 -> alpha 0;
          g = 1 -> 1/5, times ReLU(1) = 1/5. w_1 = 1/5
    """
    model = OneConvFlatten().double()
    r = gc.GradCAMPlusPlus(model, ["conv"])(HAND_INPUT.double(), target=0)
    w0 = 1 / 11 + 2 / 20 + 3 / 29 + 4 / 38
    torch.testing.assert_close(r.weights["conv"], torch.tensor([[w0, 0.2]], dtype=torch.float64), rtol=1e-12, atol=0)
    a0 = torch.tensor([[2.0, 5.0], [0.0, 2.0]], dtype=torch.float64)
    a1 = torch.tensor([[2.0, -1.0], [-1.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["conv"][0], (w0 * a0 + 0.2 * a1).clamp(min=0), rtol=1e-12, atol=1e-15)


def test_a_zero_gradient_gives_a_zero_weight_not_nan():
    # class 1 of OneConvFlatten has gradient 0 on every A0 cell: 0 / 0 is taken as alpha = 0.
    r = gc.GradCAMPlusPlus(OneConvFlatten(), ["conv"])(HAND_INPUT, target=1)
    assert torch.isfinite(r.weights["conv"]).all() and torch.isfinite(r.maps["conv"]).all()
    assert r.weights["conv"][0, 0] == 0
    # A1: sum 3, g = 1 everywhere -> alpha = 1 / (2 + 3) per cell, w_1 = 4 * 1/5 = 0.8
    assert torch.allclose(r.weights["conv"][0, 1], torch.tensor(0.8))


def test_grad_cam_plus_plus_batch_gives_what_each_image_alone_gives(resnet34, small_batch):
    explainer = gc.GradCAMPlusPlus(resnet34.module, ["layer3", "layer4"])
    targets = [3, 500, 999]
    batch = explainer(small_batch, target=targets)
    for i in range(3):
        alone = explainer(small_batch[i : i + 1], target=targets[i])
        for layer in ("layer3", "layer4"):
            scale = batch.maps[layer].max()
            assert scale > 0
            torch.testing.assert_close(batch.maps[layer][i], alone.maps[layer][0], rtol=1e-4, atol=1e-5 * scale)
    assert batch.maps["layer4"].shape == (3, 2, 2) and batch.weights["layer4"].shape == (3, 512)
