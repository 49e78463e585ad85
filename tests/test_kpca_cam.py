"""gradcam_core.explainers.kpca_cam: KPCA-CAM, the first kernel principal component of a layer.

With the linear kernel it is Eigen-CAM's projection (with scikit-learn's sign: the cell of
largest magnitude is positive); with the others it is scikit-learn's ``KernelPCA``, which
pytorch-grad-cam's ``KPCA_CAM`` calls, compared before the ReLU on the same activations and
through the library's whole pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import count_calls
from pytorch_grad_cam_reference import as_library, correlations, library_maps

import gradcam_core as gc


@pytest.fixture(scope="module")
def resnet_x() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))


def pca_projection(a: torch.Tensor) -> torch.Tensor:
    """``(K, h, w)`` -> ``(h, w)``: the centred positions on the first principal component, signed so
    that the cell of largest magnitude is positive."""
    k, h, w = a.shape
    points = a.double().reshape(k, h * w).T
    centred = points - points.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = centred @ vh[0]
    return (projection * projection[projection.abs().argmax()].sign()).reshape(h, w)


def test_the_linear_kernel_is_principal_component_analysis(resnet34, resnet_x):
    r = gc.KPCACAM(resnet34.module, ["layer2", "layer3"], kernel="linear")(resnet_x)
    for layer in ("layer2", "layer3"):
        for ours, a in zip(r.maps[layer], r.activations[layer]):
            expected = pca_projection(a).clamp(min=0).float()
            torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_the_sign_makes_the_strongest_cell_positive():
    """Points on a line, one far out: the component's largest entry is that point, so it is positive
    and the map is zero everywhere else it is below the mean."""

    class Given(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Identity()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(self.layer(x).mean(dim=(2, 3)))

    s = torch.tensor([[0.0, 1.0], [2.0, -9.0]], dtype=torch.float64)  # mean -1.5, far point -9
    a = torch.stack([3 * s, 4 * s])[None]
    r = gc.KPCACAM(Given().double().eval(), ["layer"], kernel="linear")(a)
    # PCA projection 5 (s - mean s) = [[7.5, 12.5], [17.5, -37.5]]; the -37.5 must come out positive
    torch.testing.assert_close(r.maps["layer"][0], torch.tensor([[0.0, 0.0], [0.0, 37.5]], dtype=torch.float64))


@pytest.mark.parametrize(("kernel", "gamma"), [
    ("sigmoid", None), ("sigmoid", 1e-3), ("poly", None), ("poly", 1e-3), ("rbf", 1e-5), ("linear", None),
    ("cosine", None),
])
def test_equals_scikit_learns_kernel_pca(kernel, gamma, resnet34, resnet_x):
    """pytorch-grad-cam's projection (scikit-learn's KernelPCA, dense solver at 8x8 = 64 cells)
    before the ReLU. (The RBF kernel with its default gamma = 1/256 is the identity matrix on these
    activations, squared distances up to 3.5e5: every direction is a first component there.)"""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    r = gc.KPCACAM(resnet34.module, ["layer3"], kernel=kernel, gamma=gamma)(resnet_x)
    a = r.activations["layer3"]
    theirs = torch.from_numpy(get_2d_projection_kernel(a.numpy(), kernel, gamma)).clamp(min=0)
    assert theirs.max() > 0
    torch.testing.assert_close(r.maps["layer3"], theirs, rtol=2e-3, atol=2e-3 * float(theirs.max()))


def test_takes_no_gradient_and_no_class(tiny, tiny_input, monkeypatch):
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(tiny) as counts:
        one = gc.KPCACAM(tiny, ["conv2"])(tiny_input, target=1)
    assert grads == [] and counts == [1]
    assert torch.equal(one.maps["conv2"], gc.KPCACAM(tiny, ["conv2"])(tiny_input, target=3).maps["conv2"])


@pytest.mark.parametrize("side", [4, 40])  # 16 cells: dense solver; 1600: LOBPCG
def test_a_constant_layer_gives_a_zero_map_not_nan(side):
    class Given(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Identity()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.layer(x).mean(dim=(2, 3)))

    r = gc.KPCACAM(Given().eval(), ["layer"])(torch.full((1, 3, side, side), 0.7))
    assert torch.isfinite(r.maps["layer"]).all()
    assert float(r.maps["layer"].abs().max()) < 1e-6


@pytest.mark.parametrize(("options", "match"), [
    ({"kernel": "laplacian"}, "kernel must be one of sigmoid, rbf, poly, linear, cosine"),
    ({"gamma": 0}, "gamma must be a positive number"),
    ({"gamma": "auto"}, "gamma must be a positive number"),
    ({"gamma": float("inf")}, "gamma must be a positive number"),
])
def test_bad_options_are_value_errors(tiny, options, match):
    with pytest.raises(ValueError, match=match):
        gc.KPCACAM(tiny, ["conv2"], **options)


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def test_equals_pytorch_grad_cam_on_resnet34(resnet34, resnet_x):
    """Measured: correlation 1.00000 at layer3 and layer4 for both images."""
    from pytorch_grad_cam import KPCA_CAM

    model = resnet34.module
    r = gc.KPCACAM(model, ["layer3", "layer4"])(resnet_x)
    for layer in ("layer3", "layer4"):
        theirs = library_maps(KPCA_CAM, model, layer, resnet_x, r.targets)
        assert min(correlations(as_library(r.maps[layer], resnet_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_on_efficientnet_cat_dog(efficientnet, cat_dog_x):
    """Measured: correlation 1.00000 at layer1 (56x56 = 3136 cells: LOBPCG here, ARPACK there)
    .. layer4."""
    from pytorch_grad_cam import KPCA_CAM

    model = efficientnet.module
    r = gc.KPCACAM(model, efficientnet.stages)(cat_dog_x, target=243)
    for layer in efficientnet.stages:
        theirs = library_maps(KPCA_CAM, model, layer, cat_dog_x, 243)
        assert correlations(as_library(r.maps[layer], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99, layer
    assert np.isfinite(r.maps["layer1"].numpy()).all()
