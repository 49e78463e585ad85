"""gradcam_core.explainers.gradient_shap: GradientShap, Integrated Gradients by sampling.

Against captum's ``GradientShap`` given the very same draws (its numpy baseline choice and path
points, and its ``torch.normal`` noise, replaced by the package's), by hand where the gradient is
known, and complete in expectation on the tiny CNN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_no_hooks, count_calls
from torch import nn

import gradcam_core as gc
from gradcam_core.explainers.paths import black, blur
from gradcam_core.maps import correlation


def draws(x: torch.Tensor, samples: int, baselines: int, noise: float = 0.0, seed: int = 0):
    """What GradientShap draws from ``seed``: baseline indices, path points, noise ``(N, S, C, H, W)``."""
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(baselines, (samples,), generator=g)
    alphas = torch.rand(samples, generator=g)
    eps = torch.randn((samples, *x.shape[1:]), generator=g)
    sigma = noise * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))
    return which, alphas, sigma.view(-1, 1, 1, 1, 1) * eps


def captum_gradient_shap(model, x, target, starts, samples, noise=0.0, monkeypatch=None):
    """captum's GradientShap, one image at a time, fed GradientShap's draws."""
    from captum.attr import GradientShap

    maps = []
    for i in range(x.shape[0]):
        which, alphas, eps = draws(x[i:i + 1], samples, starts.shape[0], noise)
        monkeypatch.setattr(np.random, "choice", lambda n, size, which=which: which.numpy())
        monkeypatch.setattr(np.random, "uniform", lambda low, high, size, alphas=alphas: alphas.double().numpy())
        monkeypatch.setattr(torch, "normal", lambda mean, std, eps=eps: eps[0].clone())
        maps.append(GradientShap(model).attribute(
            x[i:i + 1].clone().requires_grad_(True), starts, n_samples=samples, stdevs=1.0, target=target[i]).detach())
        monkeypatch.undo()
    return torch.cat(maps)


class SquaredLinear(nn.Module):
    """``y = (w . x)^2``: the gradient at ``alpha x`` is ``2 alpha (w . x) w``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.w = nn.Parameter(torch.randn(3, 4, 4))

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2, 3))[:, None] ** 2


@pytest.fixture
def x4() -> torch.Tensor:
    return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def test_on_a_linear_model_it_is_the_way_times_the_weights(x4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    w = model[1].weight.detach()[0].view(1, 3, 4, 4)
    starts = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    got = gc.GradientShap(model, samples=7, baselines=starts)(x4, 0)
    which, _, _ = draws(x4, 7, 3)
    torch.testing.assert_close(got, (x4 - starts[which].mean(dim=0)) * w, rtol=1e-5, atol=1e-6)
    # one baseline, no noise: Integrated Gradients exactly
    torch.testing.assert_close(gc.GradientShap(model, samples=3, baselines=starts[0])(x4, 0), (x4 - starts[0]) * w,
                               rtol=1e-5, atol=1e-6)


def test_a_squared_linear_model_by_hand(x4):
    # from the baseline 0 the sampled gradient is 2 alpha_j (w . x) w: the map is
    # 2 mean(alpha) (w . x) x * w, whose expectation is Integrated Gradients' (w . x) x * w
    model = SquaredLinear()
    w = model.w.detach()
    dot = (x4 * w).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    got = gc.GradientShap(model, samples=6, baselines=torch.zeros(3, 4, 4))(x4, 0)
    _, alphas, _ = draws(x4, 6, 1)
    torch.testing.assert_close(got, 2 * alphas.mean() * dot * x4 * w, rtol=1e-5, atol=1e-5)


def test_complete_in_expectation_on_the_tiny_cnn(tiny, tiny_input):
    # the map's sum tends to y(x) - E[y(x')] over the baselines (black and blur, equally likely)
    targets = [0, 3, 1]
    with torch.no_grad():
        expected = tiny(tiny_input)[range(3), targets] - 0.5 * (
            tiny(black(tiny, tiny_input).expand_as(tiny_input)) + tiny(blur(tiny_input)))[range(3), targets]
    got = gc.GradientShap(tiny, samples=4000, batch_size=2000)(tiny_input, targets).sum(dim=(1, 2, 3))
    # 4000 samples: measured within 0.8 % of the largest rise
    torch.testing.assert_close(got, expected, rtol=0, atol=0.05 * expected.abs().max())


def test_the_named_baselines(tiny, tiny_input):
    x = tiny_input[:1]
    assert torch.equal(gc.GradientShap(tiny, samples=3, baselines=("black",))(x, 1),
                       gc.GradientShap(tiny, samples=3, baselines=torch.zeros(3, 8, 8))(x, 1))
    torch.testing.assert_close(gc.GradientShap(tiny, samples=3, baselines=["blur"])(x, 1),
                               gc.GradientShap(tiny, samples=3, baselines=blur(x))(x, 1), rtol=1e-6, atol=1e-9)
    # the default: black and blur
    assert torch.equal(gc.GradientShap(tiny, samples=3)(x, 1),
                       gc.GradientShap(tiny, samples=3, baselines=torch.cat([torch.zeros_like(x), blur(x)]))(x, 1))


def test_the_same_seed_gives_the_same_map_and_another_seed_another(tiny, tiny_input):
    first = gc.GradientShap(tiny, samples=4, seed=3, noise=0.1)(tiny_input, 2)
    assert torch.equal(gc.GradientShap(tiny, samples=4, seed=3, noise=0.1, batch_size=5)(tiny_input, 2), first)
    assert not torch.allclose(gc.GradientShap(tiny, samples=4, seed=4, noise=0.1)(tiny_input, 2), first)


# --------------------------------------------------------------------------------------------
# Against captum, given the same draws
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_equals_captum_on_the_tiny_cnn(tiny, tiny_input, noise, monkeypatch):
    starts = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    targets = [0, 3, 1]
    got = gc.GradientShap(tiny, samples=6, baselines=starts, noise=noise, batch_size=4)(tiny_input, targets)
    expected = captum_gradient_shap(tiny, tiny_input, targets, starts, 6, noise, monkeypatch)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


def test_equals_captum_on_efficientnet(efficientnet, cat_dog_x, monkeypatch):
    model = efficientnet.module
    got = gc.GradientShap(model, samples=3)(cat_dog_x, 243)
    starts = torch.cat([black(model, cat_dog_x).expand_as(cat_dog_x), blur(cat_dog_x)])
    expected = captum_gradient_shap(model, cat_dog_x, [243], starts, 3, 0.0, monkeypatch)
    assert correlation(got, expected) >= 0.9999  # measured: 1.0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
    assert_no_hooks(model)


def test_equals_captum_on_resnet34(resnet34, small_batch, monkeypatch):
    model = resnet34.module
    x = small_batch[:2]
    starts = small_batch[2:] * 0.5
    got = gc.GradientShap(model, samples=4, baselines=starts, noise=0.1, batch_size=3)(x, [3, 999])
    expected = captum_gradient_shap(model, x, [3, 999], starts, 4, 0.1, monkeypatch)
    assert correlation(got, expected) >= 0.9999
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


# --------------------------------------------------------------------------------------------
# Passes, progress, options
# --------------------------------------------------------------------------------------------


def test_batches_and_progress(tiny, tiny_input):
    calls = []
    with count_calls(tiny) as counts:
        gc.GradientShap(tiny, samples=3, batch_size=4, progress=lambda d, t: calls.append((d, t)))(tiny_input, 0)
    assert calls == [(4, 9), (8, 9), (9, 9)]
    assert counts == [1 + 3]  # the shared pass (forward only), then one pass a batch


@pytest.mark.parametrize("options, message", [
    ({"samples": 0}, "samples must be an integer of at least 1"),
    ({"baselines": "black"}, "baselines must be a sequence of 'black' and 'blur', or a tensor"),
    ({"baselines": ()}, "baselines must be a sequence"),
    ({"baselines": ("black", "white")}, "baselines must be a sequence"),
    ({"baselines": torch.zeros(8, 8)}, r"baselines must be a tensor \(B, C, H, W\)"),
    ({"baselines": torch.zeros(2, 3, 8, 8, dtype=torch.long)}, "baselines must be a floating-point tensor"),
    ({"noise": -1}, "noise must be a number of at least 0"),
    ({"seed": "1"}, "seed must be a non-negative integer"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_options_are_value_errors(tiny, options, message):
    with pytest.raises(ValueError, match=message):
        gc.GradientShap(tiny, **options)


def test_baselines_of_another_size_are_a_value_error(tiny, tiny_input):
    with pytest.raises(ValueError, match=r"baselines of shape \(2, 3, 4, 4\) do not broadcast"):
        gc.GradientShap(tiny, samples=2, baselines=torch.zeros(2, 3, 4, 4))(tiny_input, 0)
    assert_no_hooks(tiny)
