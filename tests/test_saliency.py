"""gradcam_core.explainers.saliency: the plain gradient of the class logit at the input."""

from __future__ import annotations

import pytest
import torch
from conftest import HAND_INPUT, GuidedMLP, OneConvGAP, assert_no_hooks
from torch import nn

import gradcam_core as gc


def autograd_saliency(model: nn.Module, x: torch.Tensor, targets) -> torch.Tensor:
    """d y^c / d x by torch.autograd.grad, one image at a time."""
    grads = []
    for i, target in enumerate(targets):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0, target], xi)
        grads.append(g[0])
    return torch.stack(grads)


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def test_saliency_by_hand_on_the_guided_mlp():
    # GuidedMLP on x = [1, 2]: every ReLU open, dy/dx = W1^T W2^T W3^T = [-3, 0] (test_guided.py)
    g = gc.Saliency(GuidedMLP())(torch.tensor([1.0, 2.0]).view(1, 2, 1, 1), target=0)
    assert g.shape == (1, 2, 1, 1)
    assert torch.equal(g.flatten(), torch.tensor([-3.0, 0.0]))


def test_saliency_by_hand_on_one_conv_gap():
    # y^0 = sum_k W[0, k] / 4 * sum_positions (kernel_k . patch): the same gradient as Guided
    # Grad-CAM's (no ReLU): [[0.25, -0.25, -0.5], [0.75, 0.5, -0.25], [0.5, 0.75, 0.25]]
    g = gc.Saliency(OneConvGAP())(HAND_INPUT, target=0)
    expected = torch.tensor([[0.25, -0.25, -0.5], [0.75, 0.5, -0.25], [0.5, 0.75, 0.25]])
    torch.testing.assert_close(g[0, 0], expected, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Against autograd
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [None, 9, "list"])
def test_saliency_equals_autograd_on_resnet34(resnet34, small_batch, target):
    model = resnet34.module
    x = small_batch[:2]
    given = [3, 999] if target == "list" else target
    g = gc.Saliency(model)(x, target=given)
    with torch.no_grad():
        top1 = model(x).argmax(dim=1).tolist()
    targets = top1 if target is None else [9, 9] if target == 9 else [3, 999]
    expected = autograd_saliency(model, x, targets)
    assert g.shape == x.shape
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-6 * scale)
    assert_no_hooks(model)


def test_saliency_equals_autograd_on_a_tiny_cnn(tiny, tiny_input):
    g = gc.Saliency(tiny)(tiny_input, target=[0, 4, 2])
    torch.testing.assert_close(g, autograd_saliency(tiny, tiny_input, [0, 4, 2]), rtol=1e-6, atol=1e-8)


def test_saliency_writes_no_parameter_grad_and_works_on_a_frozen_model(tiny_input):
    from conftest import make_tiny

    model = make_tiny()
    expected = gc.Saliency(model)(tiny_input, target=1)
    assert all(p.grad is None for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    torch.testing.assert_close(gc.Saliency(model)(tiny_input, target=1), expected, rtol=0, atol=0)


def test_strength_is_the_largest_absolute_channel():
    g = torch.tensor([[[[1.0, -5.0]], [[-2.0, 3.0]], [[0.5, 4.0]]]])  # (1, 3, 1, 2)
    assert torch.equal(gc.Saliency.strength(g), torch.tensor([[[2.0, 5.0]]]))
    assert torch.equal(gc.Saliency.strength(g[0]), torch.tensor([[2.0, 5.0]]))
