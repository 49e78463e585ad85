"""gradcam_core.explainers.fem: FEM, channels weighed by their share of cells above ``k`` sigma.

The reference is pytorch-grad-cam's ``FEM``; the hand-built case puts the activations straight
into a GAP head.
"""

from __future__ import annotations

import pytest
import torch
from conftest import count_calls
from pytorch_grad_cam_reference import as_library, correlations, library_maps
from torch import nn

import gradcam_core as gc


class Given(nn.Module):
    """A "layer" that outputs the given activations, then global average pooling and a linear layer."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.layer = nn.Identity()
        self.fc = nn.Linear(channels, 2)

    def forward(self, x):
        return self.fc(self.layer(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def resnet_x() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# Three 3x3 channels (Z = 9):
#   A0: eight 0 and one 9      mean 1, std sqrt((8 * 1 + 64) / 9) = sqrt(8) = 2.83
#   A1: rows [1, 2, 3]         mean 2, std sqrt(2/3) = 0.82
#   A2: constant 5             std 0: nothing exceeds the mean
# k = 2: thresholds 6.66, 3.63, 5: only A0's 9 exceeds      -> w = [1/9, 0, 0],   map = A0 / 9
# k = 0.5: thresholds 2.41, 2.41, 5: A0's 9, A1's three 3s  -> w = [1/9, 1/3, 0], map = A0 / 9 + A1 / 3

A0 = torch.tensor([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
A1 = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64).expand(3, 3)
A2 = torch.full((3, 3), 5.0, dtype=torch.float64)


@pytest.mark.parametrize(("k", "weights"), [(2, [1 / 9, 0, 0]), (0.5, [1 / 9, 1 / 3, 0])])
def test_fem_by_hand(k, weights):
    model = Given().double().eval()
    a = torch.stack([A0, A1, A2])[None]
    r = gc.FEM(model, ["layer"], k=k)(a, target=1)
    w = torch.tensor([weights], dtype=torch.float64)
    torch.testing.assert_close(r.weights["layer"], w, rtol=1e-12, atol=0)
    torch.testing.assert_close(r.maps["layer"][0], weights[0] * A0 + weights[1] * A1, rtol=1e-12, atol=1e-12)


def test_fem_takes_no_gradient_and_no_class(tiny, tiny_input, monkeypatch):
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(tiny) as counts:
        one = gc.FEM(tiny, ["conv2"])(tiny_input, target=1)
    two = gc.FEM(tiny, ["conv2"])(tiny_input, target=4)
    assert grads == [] and counts == [1]
    assert torch.equal(one.maps["conv2"], two.maps["conv2"])
    assert ((one.weights["conv2"] >= 0) & (one.weights["conv2"] < 1)).all()


@pytest.mark.parametrize("k", [float("nan"), float("inf"), "2", None, True])
def test_a_bad_k_is_a_value_error(tiny, k):
    with pytest.raises(ValueError, match="k must be a finite number"):
        gc.FEM(tiny, ["conv2"], k=k)


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def test_equals_pytorch_grad_cam_on_resnet34(resnet34, resnet_x):
    """Measured: correlation 1.00000 at layer3 and layer4 for both images."""
    from pytorch_grad_cam import FEM

    model = resnet34.module
    r = gc.FEM(model, ["layer3", "layer4"])(resnet_x)
    for layer in ("layer3", "layer4"):
        theirs = library_maps(FEM, model, layer, resnet_x, r.targets)
        assert min(correlations(as_library(r.maps[layer], resnet_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_on_efficientnet_cat_dog(efficientnet, cat_dog_x):
    """Measured: correlation 1.00000 at layer1 .. layer4 (k = 2, and k = 1 at layer4)."""
    from pytorch_grad_cam import FEM

    model = efficientnet.module
    r = gc.FEM(model, efficientnet.stages)(cat_dog_x, target=243)
    for layer in efficientnet.stages:
        theirs = library_maps(FEM, model, layer, cat_dog_x, 243)
        assert correlations(as_library(r.maps[layer], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99, layer
    r = gc.FEM(model, ["layer4"], k=1)(cat_dog_x, target=243)
    theirs = library_maps(FEM, model, "layer4", cat_dog_x, 243, k=1)
    assert correlations(as_library(r.maps["layer4"], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99
