"""gradcam_core.explainers.shapley_cam: ShapleyCAM, weights ``mean(g - H A / 2)``.

After a square (``y = sum_k w_k mean(A_k^2)``) the Hessian is diagonal and everything is known:
``g = 2 w A / Z``, ``H A = 2 w A / Z``, so the weight is ``w_k mean(A_k) / Z``, half Grad-CAM's.
After a piecewise-linear network the Hessian is zero and ShapleyCAM is Grad-CAM. The reference
is pytorch-grad-cam's ``ShapleyCAM``, on a small smooth (SiLU) network where the correction
matters and on the two real networks.
"""

from __future__ import annotations

import pytest
import torch
from conftest import HAND_INPUT, OneConvGAP, count_calls
from pytorch_grad_cam_reference import as_library, correlations, library_maps
from torch import nn

import gradcam_core as gc


class SquareHead(nn.Module):
    """A "layer" that outputs the given activations, squared, averaged, then a linear layer."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 3.0]]))

    def forward(self, x):
        return self.fc(self.layer(x).square().mean(dim=(2, 3)))


class SmoothCNN(nn.Module):
    """conv -> SiLU -> conv -> SiLU -> GAP -> linear: second derivatives everywhere."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.SiLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.act2 = nn.SiLU()
        self.fc = nn.Linear(16, 5)
        self.eval()

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def resnet_x() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))


@pytest.fixture
def smooth_x() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(16))


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------


def test_shapley_cam_after_a_square_by_hand():
    a = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = SquareHead().double().eval()
    targets = [0, 1]
    r = gc.ShapleyCAM(model, ["layer"])(a, target=targets)
    w = model.fc.weight.detach()[targets]
    expected = w * a.mean(dim=(2, 3)) / 16
    torch.testing.assert_close(r.weights["layer"], expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(r.maps["layer"], torch.einsum("nk,nkhw->nhw", expected, a).clamp(min=0))
    grad_cam = gc.GradCAM(model, ["layer"])(a, target=targets)
    torch.testing.assert_close(grad_cam.weights["layer"], 2 * expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("frozen", [False, True])
def test_after_a_linear_head_it_is_grad_cam(frozen):
    """The gradient does not depend on A at all (and, frozen, does not even require a gradient)."""
    model = OneConvGAP().double()
    for p in model.parameters():
        p.requires_grad_(not frozen)
    x = HAND_INPUT.double().expand(2, 1, 3, 3)
    r = gc.ShapleyCAM(model, ["conv"])(x, target=[0, 1])
    expected = gc.GradCAM(model, ["conv"])(x, target=[0, 1])
    torch.testing.assert_close(r.weights["conv"], expected.weights["conv"], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(r.maps["conv"], expected.maps["conv"], rtol=1e-12, atol=1e-15)


def test_on_relu_networks_it_is_grad_cam(resnet34, resnet_x, efficientnet, cat_dog_x):
    """ReLU (ResNet34) and ReLU6 (EfficientNet-Lite0) networks: second derivative zero."""
    for model, layers, x in ((resnet34.module, ["layer3", "layer4"], resnet_x),
                             (efficientnet.module, ["layer3", "layer4"], cat_dog_x)):
        r = gc.ShapleyCAM(model, layers)(x, target=243)
        expected = gc.GradCAM(model, layers)(x, target=243)
        for layer in layers:
            torch.testing.assert_close(r.weights[layer], expected.weights[layer], rtol=1e-5, atol=1e-8)
            assert torch.equal(r.activations[layer], expected.activations[layer])


def test_one_forward_pass_of_its_own_and_one_backward_pass_per_layer(smooth_x, monkeypatch):
    model = SmoothCNN()
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(model) as counts:
        r = gc.ShapleyCAM(model, ["conv1", "conv2"])(smooth_x, target=1)
    # the shared pass (no gradient), then its own: one gradient with its graph, one product per layer
    assert counts == [2] and len(grads) == 3
    assert r.maps["conv1"].shape == (2, 16, 16) and r.maps["conv2"].shape == (2, 8, 8)


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def test_equals_pytorch_grad_cam_on_a_smooth_network(smooth_x):
    """Measured: correlation 1.00000 at conv1 and conv2, where the weights differ from Grad-CAM's."""
    from pytorch_grad_cam import ShapleyCAM

    model = SmoothCNN()
    targets = [1, 3]
    r = gc.ShapleyCAM(model, ["conv1", "conv2"])(smooth_x, target=targets)
    grad_cam = gc.GradCAM(model, ["conv1", "conv2"])(smooth_x, target=targets)
    for layer in ("conv1", "conv2"):
        assert not torch.allclose(r.weights[layer], grad_cam.weights[layer], rtol=0.05)
        theirs = library_maps(ShapleyCAM, model, layer, smooth_x, targets)
        assert min(correlations(as_library(r.maps[layer], smooth_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_on_resnet34(resnet34, resnet_x):
    """Measured: correlation 1.00000 at layer3 and layer4 for both images."""
    from pytorch_grad_cam import ShapleyCAM

    model = resnet34.module
    r = gc.ShapleyCAM(model, ["layer3", "layer4"])(resnet_x)
    for layer in ("layer3", "layer4"):
        theirs = library_maps(ShapleyCAM, model, layer, resnet_x, r.targets)
        assert min(correlations(as_library(r.maps[layer], resnet_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_on_efficientnet_cat_dog(efficientnet, cat_dog_x):
    """Measured: correlation 1.00000 at layer1 .. layer4."""
    from pytorch_grad_cam import ShapleyCAM

    model = efficientnet.module
    r = gc.ShapleyCAM(model, efficientnet.stages)(cat_dog_x, target=243)
    for layer in efficientnet.stages:
        theirs = library_maps(ShapleyCAM, model, layer, cat_dog_x, 243)
        assert correlations(as_library(r.maps[layer], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99, layer
