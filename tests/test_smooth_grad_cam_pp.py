"""gradcam_core.explainers.smooth_grad_cam_pp: Grad-CAM++ averaged over noisy copies.

The reference is torchcam 0.5.0's ``SmoothGradCAMpp``, given the same noise. It agrees at a layer
followed by global average pooling, where both are Grad-CAM++. Inside the network it departs
from the paper's formula, which the package follows: its denominator is
``2 mean(g^2)_ij + sum_ab A_ab mean(g^3)_ab`` (not ``sum_ab A_ab * mean(g^3)_ij``, as Grad-CAM++'s
paper and this package's :class:`GradCAMPlusPlus` have it) and it multiplies by ``ReLU`` of the
*last* copy's gradient rather than of the mean gradient; the weights then differ (correlation
0.09 on ResNet34's layer3). There the package is checked against the formula by brute force.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CAT_DOG, assert_no_hooks, count_calls, make_tiny
from torchcam.methods import SmoothGradCAMpp

import gradcam_core as gc
from gradcam_core.explainers.smooth_grad_cam_pp import SmoothGradCAMPlusPlus


def package_noise(x: torch.Tensor, samples: int, share: float, seed: int) -> torch.Tensor:
    """``(samples, C, H, W)``: the noise the package adds to the one image ``x``, as documented."""
    g = torch.Generator().manual_seed(seed)
    return share * (x.max() - x.min()) * torch.randn((samples, *x.shape[1:]), generator=g)


class Given:
    """Stands in for torchcam's noise distribution: hands out the given noise in turn."""

    def __init__(self, noise):
        self.noise = list(noise)

    def sample(self, size):
        return self.noise.pop(0)[None].expand(size)


def torchcam_weights(model, layer, x, target, samples, share, seed):
    extractor = SmoothGradCAMpp(model, layer, num_samples=samples, std=1.0, input_shape=tuple(x.shape[1:]))
    extractor._distrib = Given(package_noise(x, samples, share, seed))
    try:
        model(x)
        (weights,) = extractor._get_weights(target)
    finally:
        extractor.remove_hooks()
    return weights[0]


def correlation(a, b):
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]


@pytest.mark.parametrize("fixture", ["resnet34", "efficientnet"])
def test_equals_torchcam_at_the_gap_head(fixture, request):
    """Measured: weights correlation 0.9999998 (ResNet34, random weights, 64 x 64) and 0.99993
    (Lite0, the cat and dog picture)."""
    clf = request.getfixturevalue(fixture)
    model = clf.module
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) if fixture == "resnet34" \
        else clf.preprocess(CAT_DOG)
    r = SmoothGradCAMPlusPlus(model, ["layer4"], samples=3, noise=0.2, seed=4)(x, None)
    expected = torchcam_weights(model, "layer4", x, int(r.targets[0]), 3, 0.2, 4)
    assert correlation(r.weights["layer4"][0], expected) >= 0.999
    assert_no_hooks(model)


def test_equals_the_formula_inside_the_network(resnet34):
    model = resnet34.module
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    r = SmoothGradCAMPlusPlus(model, ["layer2", "layer3"], samples=3, noise=0.1, seed=6, batch_size=2)(x, 11)
    noise = package_noise(x, 3, 0.1, 6)
    seen = {}
    handles = [dict(model.named_modules())[name].register_forward_hook(
        lambda m, i, o, name=name: seen.update({name: o})) for name in ("layer2", "layer3")]  # returns None
    try:
        grads = []
        for s in range(3):
            y = model(x + noise[s][None])[0, 11]
            grads.append(torch.autograd.grad(y, [seen["layer2"], seen["layer3"]]))
    finally:
        for handle in handles:
            handle.remove()
    for i, layer in enumerate(["layer2", "layer3"]):
        g = torch.stack([grad[i] for grad in grads])
        g1, g2, g3 = g.mean(0), g.pow(2).mean(0), g.pow(3).mean(0)
        a = r.activations[layer]
        alpha = torch.where(2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3 != 0,
                            g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3), 0.0)
        expected = (alpha * g1.clamp(min=0)).sum(dim=(2, 3))
        torch.testing.assert_close(r.weights[layer], expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
        torch.testing.assert_close(r.maps[layer], torch.einsum("nk,nkhw->nhw", expected, a).clamp(min=0),
                                   rtol=1e-4, atol=1e-5 * r.maps[layer].abs().max())


def test_without_noise_it_is_grad_cam_plus_plus(tiny_input):
    model = make_tiny()
    smooth = SmoothGradCAMPlusPlus(model, ["conv1", "conv2"], samples=3, noise=0.0)(tiny_input, [1, 2, 3])
    plain = gc.GradCAMPlusPlus(model, ["conv1", "conv2"])(tiny_input, [1, 2, 3])
    for layer in ("conv1", "conv2"):
        torch.testing.assert_close(smooth.weights[layer], plain.weights[layer], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(smooth.maps[layer], plain.maps[layer], rtol=1e-5, atol=1e-6)


def test_the_seed_decides_the_noise_and_the_batch_size_does_not(tiny_input):
    model = make_tiny()
    first = SmoothGradCAMPlusPlus(model, ["conv1"], samples=3, seed=2, batch_size=1)(tiny_input, 0)
    again = SmoothGradCAMPlusPlus(model, ["conv1"], samples=3, seed=2, batch_size=9)(tiny_input, 0)
    other = SmoothGradCAMPlusPlus(model, ["conv1"], samples=3, seed=3)(tiny_input, 0)
    torch.testing.assert_close(again.weights["conv1"], first.weights["conv1"], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(other.weights["conv1"], first.weights["conv1"])


def test_one_forward_and_one_backward_pass_per_batch_of_copies(tiny_input, monkeypatch):
    model = make_tiny()
    grad_calls, real = [], torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grad_calls.append(1) or real(*a, **k))
    calls = []
    with count_calls(model) as counts:
        SmoothGradCAMPlusPlus(model, ["conv2", "relu2"], samples=5, batch_size=4,
                              progress=lambda d, t: calls.append((d, t)))(tiny_input, 0)
    batches = math.ceil(3 * 5 / 4)
    assert counts == [1 + batches]  # the shared pass records the clean activations only
    assert len(grad_calls) == batches
    assert calls == [(4, 15), (8, 15), (12, 15), (15, 15)]
    assert gc.METHODS["smooth_grad_cam_pp"].cls is SmoothGradCAMPlusPlus


@pytest.mark.parametrize("options", [{"samples": 0}, {"noise": -0.1}, {"seed": "one"}, {"batch_size": 0}])
def test_bad_options_are_value_errors(options, tiny):
    with pytest.raises(ValueError, match=next(iter(options))):
        SmoothGradCAMPlusPlus(tiny, ["conv2"], **options)
