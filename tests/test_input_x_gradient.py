"""gradcam_core.explainers.input_x_gradient: the input times the input gradient of the class logit."""

from __future__ import annotations

import pytest
import torch
from conftest import HAND_INPUT, GuidedMLP, OneConvGAP, assert_no_hooks, count_calls
from torch import nn

import gradcam_core as gc
from gradcam_core.maps import correlation

# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def test_input_x_gradient_by_hand_on_the_guided_mlp():
    # GuidedMLP on x = [1, 2]: dy/dx = [-3, 0] (test_guided.py), so x * dy/dx = [-3, 0]
    m = gc.InputXGradient(GuidedMLP())(torch.tensor([1.0, 2.0]).view(1, 2, 1, 1), target=0)
    assert m.shape == (1, 2, 1, 1)
    assert torch.equal(m.flatten(), torch.tensor([-3.0, 0.0]))


def test_input_x_gradient_by_hand_on_one_conv_gap():
    # the gradient of test_saliency.py, times HAND_INPUT = [[1, 2, 0], [0, 1, 3], [2, 0, 1]]
    m = gc.InputXGradient(OneConvGAP())(HAND_INPUT, target=0)
    expected = torch.tensor([[0.25, -0.5, 0.0], [0.0, 0.5, -0.75], [1.0, 0.0, 0.25]])
    torch.testing.assert_close(m[0, 0], expected, rtol=0, atol=1e-7)


def test_on_a_linear_model_it_is_the_weights_times_the_input_and_adds_up_to_the_score():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2, bias=False)).eval()
    x = torch.randn(2, 3, 4, 4)
    m = gc.InputXGradient(model)(x, target=1)
    torch.testing.assert_close(m, x * model[1].weight[1].view(1, 3, 4, 4), rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(m.sum(dim=(1, 2, 3)), model(x)[:, 1], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Against captum, and the shared pass
# --------------------------------------------------------------------------------------------


def captum_input_x_gradient(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(x.clone().requires_grad_(True), target=target).detach()


def test_equals_captum_on_efficientnet(efficientnet, cat_dog_x):
    model = efficientnet.module
    m = gc.InputXGradient(model)(cat_dog_x, target=243)
    expected = captum_input_x_gradient(model, cat_dog_x, 243)
    assert correlation(m, expected) >= 0.9999  # measured: 1.0
    torch.testing.assert_close(m, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
    assert_no_hooks(model)


def test_equals_captum_on_resnet34(resnet34, small_batch):
    model = resnet34.module
    m = gc.InputXGradient(model)(small_batch[:2], target=[3, 999])
    expected = captum_input_x_gradient(model, small_batch[:2], [3, 999])
    assert correlation(m, expected) >= 0.9999
    torch.testing.assert_close(m, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


@pytest.fixture
def grad_calls(monkeypatch):
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


def test_with_saliency_one_forward_and_one_backward_pass(tiny, tiny_input, grad_calls):
    with count_calls(tiny) as counts:
        results = gc.explain(tiny, tiny_input, [0, 1, 2], methods=["saliency", "input_x_gradient"])
    assert counts == [1] and len(grad_calls) == 1
    saliency, product = results["saliency"].maps["input"], results["input_x_gradient"].maps["input"]
    assert torch.equal(product, tiny_input * saliency)
