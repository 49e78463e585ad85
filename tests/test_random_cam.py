"""gradcam_core.explainers.random_cam: Random-CAM, uniform channel weights in [-1, 1].

The weights come from ``seed`` alone, the same for every image and drawn anew for each layer;
pytorch-grad-cam draws them from NumPy's global generator, so it is compared here given our
weights (its ``get_cam_weights`` returns them), which tests everything else it does.
"""

from __future__ import annotations

import pytest
import torch
from conftest import count_calls
from pytorch_grad_cam_reference import as_library, correlations, library_maps

import gradcam_core as gc


@pytest.fixture(scope="module")
def resnet_x() -> torch.Tensor:
    return torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))


def test_the_map_is_the_relu_of_the_weighted_sum(tiny, tiny_input):
    r = gc.RandomCAM(tiny, ["conv2", "relu2"], seed=5)(tiny_input, target=2)
    for layer in ("conv2", "relu2"):
        w, a = r.weights[layer], r.activations[layer]
        assert w.shape == (3, 6) and ((w >= -1) & (w <= 1)).all()
        assert torch.equal(w, w[:1].expand(3, 6))  # one draw for every image
        torch.testing.assert_close(r.maps[layer], torch.einsum("nk,nkhw->nhw", w, a).clamp(min=0))
    # each layer's draw comes from the seed alone: the same six numbers at both layers
    assert torch.equal(r.weights["conv2"], r.weights["relu2"])


def test_the_same_seed_gives_the_same_map_and_another_seed_another(tiny, tiny_input):
    first = gc.RandomCAM(tiny, ["conv2"], seed=1)(tiny_input, target=0)
    again = gc.RandomCAM(tiny, ["conv1", "conv2"], seed=1)(tiny_input[1:], target=4)
    other = gc.RandomCAM(tiny, ["conv2"], seed=2)(tiny_input, target=0)
    assert torch.equal(first.maps["conv2"][1:], again.maps["conv2"])  # other layers, batch and class
    assert not torch.equal(first.weights["conv2"], other.weights["conv2"])
    assert torch.equal(
        gc.RandomCAM(tiny, ["conv2"])(tiny_input).weights["conv2"],
        gc.RandomCAM(tiny, ["conv2"], seed=0)(tiny_input).weights["conv2"],
    )


def test_the_weights_are_uniform_in_minus_one_one(resnet34, resnet_x):
    w = torch.cat([gc.RandomCAM(resnet34.module, ["layer4"], seed=s)(resnet_x[:1, :, :32, :32]).weights["layer4"][0]
                   for s in range(20)])
    assert w.numel() == 20 * 512
    # mean 0 and variance 1/3 of U[-1, 1], within 4 standard errors (sd of the mean: 0.0081)
    assert abs(float(w.mean())) < 0.033
    assert abs(float(w.var()) - 1 / 3) < 0.02
    assert float(w.min()) >= -1 and float(w.max()) <= 1


def test_random_cam_takes_no_gradient(tiny, tiny_input, monkeypatch):
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(tiny) as counts:
        gc.RandomCAM(tiny, ["conv2"])(tiny_input, target=1)
    assert grads == [] and counts == [1]


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True])
def test_a_bad_seed_is_a_value_error(tiny, seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        gc.RandomCAM(tiny, ["conv2"], seed=seed)


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam, given the same weights
# --------------------------------------------------------------------------------------------


def with_our_weights(monkeypatch, weights: torch.Tensor):
    from pytorch_grad_cam import RandomCAM

    monkeypatch.setattr(RandomCAM, "get_cam_weights", lambda self, *args: weights.double().numpy())
    return RandomCAM


def test_equals_pytorch_grad_cam_given_the_weights_on_resnet34(resnet34, resnet_x, monkeypatch):
    """Measured: correlation 1.00000 at layer3 and layer4 for both images."""
    model = resnet34.module
    r = gc.RandomCAM(model, ["layer3", "layer4"], seed=7)(resnet_x)
    for layer in ("layer3", "layer4"):
        theirs = library_maps(with_our_weights(monkeypatch, r.weights[layer]), model, layer, resnet_x, r.targets)
        assert min(correlations(as_library(r.maps[layer], resnet_x.shape[-2:]), theirs)) >= 0.99


def test_equals_pytorch_grad_cam_given_the_weights_on_efficientnet_cat_dog(efficientnet, cat_dog_x, monkeypatch):
    """Measured: correlation 1.00000 at layer1 .. layer4."""
    model = efficientnet.module
    r = gc.RandomCAM(model, efficientnet.stages, seed=3)(cat_dog_x, target=243)
    for layer in efficientnet.stages:
        theirs = library_maps(with_our_weights(monkeypatch, r.weights[layer]), model, layer, cat_dog_x, 243)
        assert correlations(as_library(r.maps[layer], cat_dog_x.shape[-2:]), theirs)[0] >= 0.99, layer
