"""gradcam_core.explainers.contrastive_grad_cam: Grad-CAM of ``y^c - y^b``.

At a layer followed by global average pooling and one linear layer, ``d(y^c - y^b)/dA^k_ij`` is
``(w^c_k - w^b_k) / Z`` at every cell: the weights are that, and the map is
``ReLU(sum_k (w^c_k - w^b_k) / Z A^k)``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks, gap_head, make_tiny

import gradcam_core as gc
from gradcam_core.explainers.contrastive_grad_cam import ContrastiveGradCAM


def test_closed_form_at_the_gap_head_of_shapes_gap(shapes_gap64, shapes_images):
    x, labels = shapes_images
    x = x.double()
    targets, versus = [int(labels[0]), 0, 2, int(labels[3])], [1, 2, 0, (int(labels[3]) + 1) % 3]
    a, w, _, _ = gap_head(shapes_gap64, "layer4", "fc", x, targets)
    w_b = shapes_gap64.fc.weight.detach()[versus]
    r = ContrastiveGradCAM(shapes_gap64, ["layer4"], versus=versus)(x, target=targets)
    expected = (w - w_b) / (a.shape[2] * a.shape[3])
    torch.testing.assert_close(r.weights["layer4"], expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(r.maps["layer4"], torch.einsum("nk,nkhw->nhw", expected, a).clamp(min=0),
                               rtol=1e-10, atol=1e-12)
    assert_no_hooks(shapes_gap64)


def test_the_runner_up_by_default_and_the_contrast_reversed_is_negated(tiny_input):
    model = make_tiny()
    with torch.no_grad():
        logits = model(tiny_input)
    top2 = logits.topk(2, dim=1).indices
    default = ContrastiveGradCAM(model, ["conv1", "conv2"])(tiny_input)
    named = ContrastiveGradCAM(model, ["conv1", "conv2"], versus=top2[:, 1].tolist())(tiny_input, top2[:, 0])
    reverse = ContrastiveGradCAM(model, ["conv1", "conv2"], versus=top2[:, 0].tolist())(tiny_input, top2[:, 1])
    for layer in ("conv1", "conv2"):
        assert torch.equal(default.weights[layer], named.weights[layer])
        torch.testing.assert_close(reverse.weights[layer], -named.weights[layer], rtol=1e-5, atol=1e-7)


def test_equals_grad_cam_of_c_minus_grad_cam_of_b_before_the_relu(tiny_input):
    """The gradient is linear: alpha(c - b) = alpha(c) - alpha(b), Grad-CAM's weights."""
    model = make_tiny()
    r = ContrastiveGradCAM(model, ["conv2"], versus=3)(tiny_input, 1)
    g1 = gc.GradCAM(model, ["conv2"])(tiny_input, 1).weights["conv2"]
    g3 = gc.GradCAM(model, ["conv2"])(tiny_input, 3).weights["conv2"]
    torch.testing.assert_close(r.weights["conv2"], g1 - g3, rtol=1e-5, atol=1e-7)
    assert gc.METHODS["contrastive_grad_cam"].cls is ContrastiveGradCAM


@pytest.mark.parametrize("versus, match", [(5, "out of range"), (-1, "out of range"), (1, "differ"),
                                           ([0, 2], "2 classes for a batch of 3")])
def test_a_bad_class_to_contrast_with_is_a_value_error(tiny, tiny_input, versus, match):
    with pytest.raises(ValueError, match=match):
        ContrastiveGradCAM(tiny, ["conv2"], versus=versus)(tiny_input, 1)
    assert_no_hooks(tiny)


@pytest.mark.parametrize("versus", [1.5, "cat", True, [[1, 2]]])
def test_versus_that_is_not_a_class_is_a_value_error(tiny, versus):
    with pytest.raises(ValueError, match="versus"):
        ContrastiveGradCAM(tiny, ["conv2"], versus=versus)
