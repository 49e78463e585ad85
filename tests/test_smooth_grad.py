"""gradcam_core.explainers.smooth_grad: SmoothGrad, SmoothGrad² and VarGrad around any pixel-space
gradient method.

Against captum's ``NoiseTunnel`` given the very same noise (its ``torch.normal`` draw is replaced by
the package's), by hand on a linear model, and exactly the wrapped method when there is no noise.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks, count_calls
from torch import nn

import gradcam_core as gc
from gradcam_core.maps import correlation

VARIANTS = {"mean": "smoothgrad", "squared": "smoothgrad_sq", "var": "vargrad"}


def drawn_noise(x: torch.Tensor, samples: int, noise: float, seed: int = 0) -> torch.Tensor:
    """``(N, samples, C, H, W)``: the noise SmoothGrad adds, drawn as it draws it."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((samples, *x.shape[1:]), generator=g)
    sigma = noise * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))
    return sigma.view(-1, 1, 1, 1, 1) * eps


def captum_noise_tunnel(method, x, target, samples, noise, variant="mean", monkeypatch=None, **kwargs):
    """captum's NoiseTunnel around ``method``, one image at a time, fed SmoothGrad's noise."""
    from captum.attr import NoiseTunnel

    maps = []
    for i in range(x.shape[0]):
        eps = drawn_noise(x[i:i + 1], samples, noise)[0]
        monkeypatch.setattr(torch, "normal", lambda mean, std, eps=eps: eps.clone())
        maps.append(NoiseTunnel(method).attribute(
            x[i:i + 1].clone().requires_grad_(True), nt_type=VARIANTS[variant], nt_samples=samples,
            stdevs=1.0, target=target[i], **kwargs).detach())
        monkeypatch.undo()
    return torch.cat(maps)


@pytest.fixture
def grad_calls(monkeypatch):
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


# --------------------------------------------------------------------------------------------
# By hand, and without noise
# --------------------------------------------------------------------------------------------


def test_on_a_linear_model_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    w = model[1].weight.detach()[1].view(1, 3, 4, 4)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    # the gradient is w at every copy: the mean is w, SmoothGrad² is w², VarGrad 0
    for variant, expected in (("mean", w), ("squared", w * w), ("var", 0 * w)):
        got = gc.SmoothGrad(model, samples=5, noise=0.3, variant=variant)(x, 1)
        torch.testing.assert_close(got, expected.expand_as(x), rtol=1e-5, atol=1e-6)
    # input x gradient: the mean of (x + noise) * w
    got = gc.SmoothGrad(model, method="input_x_gradient", samples=5, noise=0.3)(x, 1)
    noise = drawn_noise(x, 5, 0.3)
    torch.testing.assert_close(got, (x + noise.mean(dim=1)) * w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method, options", [
    ("saliency", {}), ("guided_backprop", {}), ("deconvnet", {}), ("input_x_gradient", {}),
    ("integrated_gradients", {"steps": 3}),
])
def test_without_noise_it_is_the_wrapped_method(tiny, tiny_input, method, options):
    wrapped = gc.METHODS[method].create(tiny, None, **options)(tiny_input, [0, 1, 2])
    for variant, expected in (("mean", wrapped), ("squared", wrapped * wrapped), ("var", 0 * wrapped)):
        got = gc.SmoothGrad(tiny, method=method, method_options=options, noise=0, variant=variant)(
            tiny_input, [0, 1, 2])
        assert torch.equal(got, expected), variant


def test_without_noise_it_reads_the_shared_pass(tiny, tiny_input, grad_calls):
    with count_calls(tiny) as counts:
        results = gc.explain(tiny, tiny_input, 1, methods=["saliency", "smooth_grad"], options={"smooth_grad": {"noise": 0}})
    assert counts == [1] and len(grad_calls) == 1
    assert torch.equal(results["smooth_grad"].maps["input"], results["saliency"].maps["input"])


def test_the_same_seed_gives_the_same_map_and_another_seed_another(tiny, tiny_input):
    first = gc.SmoothGrad(tiny, samples=4, seed=3)(tiny_input, 2)
    assert torch.equal(gc.SmoothGrad(tiny, samples=4, seed=3, batch_size=5)(tiny_input, 2), first)
    assert not torch.allclose(gc.SmoothGrad(tiny, samples=4, seed=4)(tiny_input, 2), first)


# --------------------------------------------------------------------------------------------
# Against captum's NoiseTunnel, given the same noise
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_equals_captum_around_saliency(tiny, tiny_input, variant, monkeypatch):
    from captum.attr import Saliency

    targets = [0, 3, 1]
    got = gc.SmoothGrad(tiny, samples=6, noise=0.2, variant=variant, batch_size=4)(tiny_input, targets)
    expected = captum_noise_tunnel(Saliency(tiny), tiny_input, targets, 6, 0.2, variant, monkeypatch, abs=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_equals_captum_around_input_x_gradient_and_integrated_gradients(tiny, tiny_input, variant, monkeypatch):
    from captum.attr import InputXGradient, IntegratedGradients

    targets = [2, 2, 4]
    got = gc.SmoothGrad(tiny, method="input_x_gradient", samples=5, noise=0.1, variant=variant)(tiny_input, targets)
    expected = captum_noise_tunnel(InputXGradient(tiny), tiny_input, targets, 5, 0.1, variant, monkeypatch)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
    got = gc.SmoothGrad(tiny, method="integrated_gradients", method_options={"steps": 4}, samples=3, noise=0.1,
                        variant=variant)(tiny_input, targets)
    expected = captum_noise_tunnel(IntegratedGradients(tiny), tiny_input, targets, 3, 0.1, variant, monkeypatch,
                                   n_steps=4)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


def test_equals_captum_on_efficientnet(efficientnet, cat_dog_x, monkeypatch):
    from captum.attr import Saliency

    model = efficientnet.module
    got = gc.SmoothGrad(model, samples=3)(cat_dog_x, 243)
    expected = captum_noise_tunnel(Saliency(model), cat_dog_x, [243], 3, 0.15, "mean", monkeypatch, abs=False)
    # the same noise; what is left is float32 rounding through 17 blocks, which the number of threads
    # changes (0.99987 with two threads, 1.0 with one)
    assert correlation(got, expected) >= 0.999
    assert_no_hooks(model)


def test_equals_captum_on_resnet34(resnet34, small_batch, monkeypatch):
    from captum.attr import Saliency

    model = resnet34.module
    x = small_batch[:2]
    got = gc.SmoothGrad(model, samples=4, variant="squared", batch_size=3)(x, [3, 999])
    expected = captum_noise_tunnel(Saliency(model), x, [3, 999], 4, 0.15, "squared", monkeypatch, abs=False)
    assert correlation(got, expected) >= 0.9999
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


# --------------------------------------------------------------------------------------------
# Passes, progress, sharing with Integrated Gradients
# --------------------------------------------------------------------------------------------


def test_batches_and_progress(tiny, tiny_input, grad_calls):
    calls = []
    with count_calls(tiny) as counts:
        gc.SmoothGrad(tiny, samples=3, batch_size=4, progress=lambda d, t: calls.append((d, t)))(tiny_input, 0)
    # 3 images x 3 copies in batches of 4: one forward and one backward pass each, after the
    # shared pass (a forward pass only: no gradient at x is needed)
    assert calls == [(4, 9), (8, 9), (9, 9)]
    assert counts == [1 + 3] and len(grad_calls) == 3


def test_progress_around_a_path_method_counts_its_passes(tiny, tiny_input):
    calls = []
    sg = gc.SmoothGrad(tiny, method="integrated_gradients", method_options={"steps": 4}, samples=2, batch_size=3,
                       progress=lambda d, t: calls.append((d, t)))
    sg(tiny_input, 0)
    # 3 images x 2 copies x 4 nodes = 24 gradient passes: each batch of 3 copies is 12 path
    # points, in batches of 3
    assert calls == [(3 * k, 24) for k in range(1, 9)]


def test_with_integrated_gradients_in_one_call(tiny, tiny_input, grad_calls):
    names = ["saliency", "integrated_gradients", "smooth_grad"]
    options = {"integrated_gradients": {"steps": 4, "rule": "trapezoid", "batch_size": 100},
               "smooth_grad": {"samples": 3, "batch_size": 100}}
    with count_calls(tiny) as counts:
        results = gc.explain(tiny, tiny_input, 2, methods=names, options=options)
    # one shared forward and backward pass (saliency, and the trapezoid's node at x), one batch of
    # the other 3 nodes, one of the 9 noisy copies, one forward pass of the baselines
    assert len(grad_calls) == 3 and counts == [4]
    for name in names:
        alone = gc.METHODS[name].create(tiny, None, **options.get(name, {}))(tiny_input, 2)
        assert torch.equal(results[name].maps["input"], alone), name


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"method": "grad_cam"}, "method must be a pixel-space gradient method: saliency, guided_backprop"),
    ({"method": "occlusion"}, "method must be a pixel-space gradient method"),
    ({"method": "smooth_grad"}, "method must be a pixel-space gradient method"),
    ({"method": "nothing"}, "got 'nothing'"),
    ({"method_options": {"steps": 2}}, "takes no option steps"),
    ({"method": "integrated_gradients", "method_options": {"steps": 0}}, "steps must be"),
    ({"method_options": [("steps", 2)]}, "method_options must be a mapping"),
    ({"samples": 0}, "samples must be an integer of at least 1"),
    ({"samples": 2.0}, "samples"),
    ({"noise": -0.1}, "noise must be a number of at least 0"),
    ({"noise": float("inf")}, "noise"),
    ({"noise": "0.1"}, "noise"),
    ({"variant": "sq"}, "variant must be 'mean', 'squared', 'var'"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"seed": 1.5}, "seed"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_options_are_value_errors(tiny, options, message):
    with pytest.raises(ValueError, match=message):
        gc.SmoothGrad(tiny, **options)
