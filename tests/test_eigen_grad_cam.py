"""gradcam_core.explainers.eigen_grad_cam: the first principal component of ``g * A``.

A principal component has no sign of its own; ours correlates positively with ``sum_k g^k A^k``
(HiResCAM's map before its ReLU). pytorch-grad-cam keeps the sign LAPACK returns, so the
comparison gives the library's projection our sign (and nothing else changes in its pipeline).
"""

from __future__ import annotations

import pytest
import torch
from pytorch_grad_cam_reference import as_library, correlations, library_maps
from reference_adapters import signed_like_ours
from torch import nn

import gradcam_core as gc


class Given(nn.Module):
    """A "layer" that outputs the given activations, then global average pooling and a linear layer."""

    def __init__(self, weight: list[list[float]]):
        super().__init__()
        self.layer = nn.Identity()
        self.fc = nn.Linear(len(weight[0]), len(weight))
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.layer(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def resnet_x() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))


@pytest.fixture
def our_sign(monkeypatch):
    """pytorch-grad-cam's EigenGradCAM with each projection signed as ours."""
    import pytorch_grad_cam.eigen_grad_cam as module

    monkeypatch.setattr(module, "get_2d_projection", signed_like_ours(module.get_2d_projection))
    return module.EigenGradCAM


# --------------------------------------------------------------------------------------------
# By hand: a rank-one layer
# --------------------------------------------------------------------------------------------


def test_eigen_grad_cam_by_hand_on_rank_one_activations():
    """A = u_k s_ij + c_k at a GAP head (Z = 4): g^k = w_k / 4, so g * A = (w u / 4) s + const, rank
    one. Centred, every position is (s_ij - mean s) w u / 4; the projection on the first component is
    +-|w u| / 4 (s - mean s). With u = (3, 4), s = [[0, 1], [2, 5]] (mean 2):
      class 0, w = (1, 1):   |w u| = 5; sum_k g A = 7/4 s + const rises with s: sign +,
                             map = ReLU(1.25 [[-2, -1], [0, 3]]) = [[0, 0], [0, 3.75]]
      class 1, w = (-1, -1): the same |w u|, but sum_k g A = -7/4 s + const: sign -,
                             map = ReLU(1.25 [[2, 1], [0, -3]]) = [[2.5, 1.25], [0, 0]]
    Eigen-CAM, with no gradient, gives class 0's picture for both classes.
    """
    s = torch.tensor([[0.0, 1.0], [2.0, 5.0]], dtype=torch.float64)
    u = torch.tensor([3.0, 4.0], dtype=torch.float64)
    a = u[:, None, None] * s + torch.tensor([1.0, -2.0], dtype=torch.float64)[:, None, None]
    model = Given([[1.0, 1.0], [-1.0, -1.0]]).double().eval()
    r = gc.EigenGradCAM(model, ["layer"])(a[None].expand(2, 2, 2, 2), target=[0, 1])
    expected = torch.tensor([[[0.0, 0.0], [0.0, 3.75]], [[2.5, 1.25], [0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["layer"], expected, rtol=1e-12, atol=1e-12)
    assert r.weights == {}
    eigen = gc.EigenCAM(model, ["layer"])(a[None].expand(2, 2, 2, 2), target=[0, 1]).maps["layer"]
    assert torch.equal(eigen[0], eigen[1])


def test_the_sign_follows_the_channel_sum_of_gradient_times_activation(resnet34, resnet_x):
    model = resnet34.module
    r = gc.EigenGradCAM(model, ["layer3"])(resnet_x)
    hires = gc.HiResCAM(model, ["layer3"])(resnet_x)
    for ours, theirs in zip(r.maps["layer3"], hires.maps["layer3"]):
        assert gc.maps.correlation(ours, theirs) > 0


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def test_equals_pytorch_grad_cam_on_resnet34(resnet34, resnet_x, our_sign):
    """Measured: correlation 1.00000 at layer3 and layer4 for both images."""
    model = resnet34.module
    r = gc.EigenGradCAM(model, ["layer3", "layer4"])(resnet_x)
    for layer in ("layer3", "layer4"):
        theirs = library_maps(our_sign, model, layer, resnet_x, r.targets)
        assert min(correlations(as_library(r.maps[layer], resnet_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_on_efficientnet_cat_dog(efficientnet, cat_dog_x, our_sign):
    """Measured: correlation 1.00000 at layer1 .. layer4."""
    model = efficientnet.module
    r = gc.EigenGradCAM(model, efficientnet.stages)(cat_dog_x, target=243)
    for layer in efficientnet.stages:
        theirs = library_maps(our_sign, model, layer, cat_dog_x, 243)
        assert correlations(as_library(r.maps[layer], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99, layer
