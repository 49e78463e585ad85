"""gradcam_core.explainers.ss_cam: SS-CAM, Score-CAM with noisy masks.

The reference is torchcam 0.5.0's ``SSCAM``, given the same noise. torchcam weighs the channels by
``softmax_k(mean_s y^c(x * (M_k + delta_s)))``, a softmax over the channels of the logits; the
package (like its Score-CAM, following the authors' code) takes ``mean_s softmax(f(...))_c``, the
class probability. Run on a model that returns its probabilities, torchcam's weights are then
``exp(w_k) / sum_j exp(w_j)``: their logarithm equals the package's weights up to a constant.
torchcam also normalizes the map before upsampling it, the package after; where the layer has
the input's resolution the masks are the same and so are the weights.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CAT_DOG, assert_no_hooks, count_calls, make_tiny
from torch import nn
from torchcam.methods import SSCAM as TorchcamSSCAM

import gradcam_core as gc
from gradcam_core.explainers.ss_cam import SSCAM


class Probabilities(nn.Module):
    """``model`` with a softmax at the end: torchcam's logits are then the package's probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(dim=1)


class Given:
    """Stands in for torchcam's noise distribution: hands out the given noise pictures in turn."""

    def __init__(self, deltas):
        self.deltas = list(deltas)

    def sample(self, size):
        return self.deltas.pop(0).expand(size)


def package_noise(samples: int, sigma: float, seed: int, size) -> list[torch.Tensor]:
    """The noise pictures SS-CAM adds to every mask: ``samples`` draws from ``seed``, in turn."""
    g = torch.Generator().manual_seed(seed)
    return [sigma * torch.randn(size, generator=g) for _ in range(samples)]


def torchcam_weights(model, layer, x, target, samples, sigma, seed):
    wrapped = Probabilities(model)
    extractor = TorchcamSSCAM(wrapped, f"model.{layer}", batch_size=64, num_samples=samples, std=sigma,
                              input_shape=tuple(x.shape[1:]))
    extractor._distrib = Given(package_noise(samples, sigma, seed, x.shape[-2:]))
    try:
        with torch.no_grad():
            wrapped(x)
        (weights,) = extractor._get_weights(target)
    finally:
        extractor.remove_hooks()
    return weights[0]


def centred(w: torch.Tensor) -> torch.Tensor:
    return w - w.mean()


def test_equals_torchcam_given_the_same_noise_where_the_masks_are_the_same(tiny_input):
    model = make_tiny()
    x = tiny_input[:1]
    r = SSCAM(model, ["conv2"], samples=3, noise=0.7, seed=5)(x, target=2)
    a = r.activations["conv2"]
    assert (a.amax(dim=(2, 3)) > a.amin(dim=(2, 3))).all()  # no constant channel: torchcam scores them too
    assert a.shape[-2:] == x.shape[-2:]  # the layer has the input's resolution: the same masks
    expected = torchcam_weights(model, "conv2", x, 2, 3, 0.7, 5).log()
    torch.testing.assert_close(centred(r.weights["conv2"][0]), centred(expected), rtol=0, atol=1e-6)
    assert r.weights["conv2"].std() > 1e-4  # the weights differ from channel to channel far beyond atol
    assert_no_hooks(model)


def log_weight_correlation(model, layer, x, target, samples, sigma, seed):
    r = SSCAM(model, [layer], samples=samples, noise=sigma, seed=seed, batch_size=64)(x, target)
    target = int(r.targets[0])
    a = r.activations[layer]
    varying = (a.amax(dim=(2, 3)) > a.amin(dim=(2, 3)))[0]
    expected = torchcam_weights(model, layer, x, target, samples, sigma, seed).log()[varying]
    return torch.corrcoef(torch.stack([r.weights[layer][0, varying], expected]))[0, 1]


def test_agrees_with_torchcam_on_resnet34(resnet34):
    """7 x 7 -> 32 x 32: the masks differ by the order of upsampling and scaling. Measured 0.997."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert log_weight_correlation(resnet34.module, "layer2", x, 7, 2, 0.5, 3) >= 0.99


@pytest.mark.slow
def test_agrees_with_torchcam_on_efficientnet_lite0(efficientnet):
    """The cat and dog picture, layer3 (112 channels, 14 x 14), top-1 class. Measured 0.998."""
    x = efficientnet.preprocess(CAT_DOG)
    assert log_weight_correlation(efficientnet.module, "layer3", x, None, 2, 0.5, 3) >= 0.99


def test_weights_are_the_mean_probability_through_the_noisy_masks(tiny_input):
    """By brute force, with the noise pictures the docstring promises (the same for every channel)."""
    model = make_tiny()
    x = tiny_input[1:2]
    r = SSCAM(model, ["relu1"], samples=4, noise=0.3, seed=9, batch_size=3)(x, target=4)
    a = r.activations["relu1"][0]
    deltas = package_noise(4, 0.3, 9, (8, 8))
    for k in range(a.shape[0]):
        if a[k].max() == a[k].min():
            assert r.weights["relu1"][0, k] == 0
            continue
        mask = (a[k] - a[k].min()) / (a[k].max() - a[k].min())
        with torch.no_grad():
            p = [model(x * (mask + d)).softmax(dim=1)[0, 4] for d in deltas]
        torch.testing.assert_close(r.weights["relu1"][0, k], torch.stack(p).mean(), rtol=1e-5, atol=1e-7)


def test_without_noise_it_is_score_cam(tiny_input):
    model = make_tiny()
    smooth = SSCAM(model, ["conv2", "relu2"], samples=2, noise=0.0)(tiny_input, target=[0, 1, 2])
    plain = gc.ScoreCAM(model, ["conv2", "relu2"])(tiny_input, target=[0, 1, 2])
    for layer in ("conv2", "relu2"):
        torch.testing.assert_close(smooth.weights[layer], plain.weights[layer], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(smooth.maps[layer], plain.maps[layer], rtol=1e-6, atol=1e-7)


def test_the_seed_decides_the_noise(tiny_input):
    model = make_tiny()
    first, again, other = (SSCAM(model, ["conv2"], samples=2, seed=s)(tiny_input, 1) for s in (0, 0, 1))
    assert torch.equal(first.maps["conv2"], again.maps["conv2"])
    assert not torch.equal(first.weights["conv2"], other.weights["conv2"])


def test_batch_size_does_not_change_the_result(tiny_input):
    model = make_tiny()
    results = [SSCAM(model, ["conv2"], samples=3, batch_size=b)(tiny_input, 3).weights["conv2"] for b in (1, 4, 64)]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-6, atol=1e-7)


def test_one_forward_pass_per_sample_and_varying_channel_in_batches(tiny_input):
    model = make_tiny()
    calls = []
    with count_calls(model) as counts:
        SSCAM(model, ["conv2"], samples=3, batch_size=4, progress=lambda d, t: calls.append((d, t)))(tiny_input, 0)
    # 6 varying channels an image: batches of 4 and 2, each scored 3 times
    assert counts == [1 + 3 * 2 * 3]
    assert calls[:3] == [(4, 54), (8, 54), (12, 54)] and calls[-1] == (54, 54) and len(calls) == 18
    assert gc.METHODS["ss_cam"].cls is SSCAM and gc.METHODS["ss_cam"].stochastic


@pytest.mark.parametrize(
    "options, match",
    [({"samples": 0}, "samples"), ({"samples": 2.5}, "samples"), ({"noise": -1.0}, "noise"),
     ({"noise": "big"}, "noise"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_options_are_value_errors(options, match, tiny):
    with pytest.raises(ValueError, match=match):
        SSCAM(tiny, ["conv2"], **options)
