"""gradcam_core.explainers.is_cam: IS-CAM, Score-CAM integrated over growing masks.

The reference is torchcam 0.5.0's ``ISCAM``. As for SS-CAM (see tests/test_ss_cam.py), torchcam
weighs the channels by a softmax over them of the mean logit, the package by the mean class
probability; on a model that returns its probabilities the logarithm of torchcam's weights equals
the package's weights up to a constant, exactly where the layer has the input's resolution.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CAT_DOG, count_calls, make_tiny
from test_ss_cam import Probabilities, centred
from torchcam.methods import ISCAM as TorchcamISCAM

import gradcam_core as gc
from gradcam_core.explainers.is_cam import ISCAM


def torchcam_weights(model, layer, x, target, samples):
    wrapped = Probabilities(model)
    extractor = TorchcamISCAM(wrapped, f"model.{layer}", batch_size=64, num_samples=samples,
                              input_shape=tuple(x.shape[1:]))
    try:
        with torch.no_grad():
            wrapped(x)
        (weights,) = extractor._get_weights(target)
    finally:
        extractor.remove_hooks()
    return weights[0]


def test_equals_torchcam_where_the_masks_are_the_same(tiny_input):
    model = make_tiny()
    x = tiny_input[2:]
    r = ISCAM(model, ["conv2"], samples=4)(x, target=3)
    a = r.activations["conv2"]
    assert (a.amax(dim=(2, 3)) > a.amin(dim=(2, 3))).all() and a.shape[-2:] == x.shape[-2:]
    expected = torchcam_weights(model, "conv2", x, 3, 4).log()
    torch.testing.assert_close(centred(r.weights["conv2"][0]), centred(expected), rtol=0, atol=1e-6)
    assert r.weights["conv2"].std() > 5e-5  # the weights differ from channel to channel far beyond atol


def log_weight_correlation(model, layer, x, target, samples):
    r = ISCAM(model, [layer], samples=samples, batch_size=64)(x, target)
    target = int(r.targets[0])
    a = r.activations[layer]
    varying = (a.amax(dim=(2, 3)) > a.amin(dim=(2, 3)))[0]
    expected = torchcam_weights(model, layer, x, target, samples).log()[varying]
    return torch.corrcoef(torch.stack([r.weights[layer][0, varying], expected]))[0, 1]


def test_agrees_with_torchcam_on_resnet34(resnet34):
    """4 x 4 -> 32 x 32: the masks differ by the order of upsampling and scaling. Measured 0.999."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert log_weight_correlation(resnet34.module, "layer2", x, 7, 3) >= 0.99


@pytest.mark.slow
def test_agrees_with_torchcam_on_efficientnet_lite0(efficientnet):
    x = efficientnet.preprocess(CAT_DOG)
    assert log_weight_correlation(efficientnet.module, "layer3", x, None, 2) >= 0.99


def test_weights_by_brute_force(tiny_input):
    """Coefficients 1/3, 1/3 + 2/3 = 1, 1 + 3/3 = 2 for three samples."""
    model = make_tiny()
    x = tiny_input[:1]
    r = ISCAM(model, ["relu1"], samples=3, batch_size=2)(x, target=1)
    a = r.activations["relu1"][0]
    for k in range(a.shape[0]):
        if a[k].max() == a[k].min():
            assert r.weights["relu1"][0, k] == 0
            continue
        mask = (a[k] - a[k].min()) / (a[k].max() - a[k].min())
        with torch.no_grad():
            p = [model(x * (c * mask)).softmax(dim=1)[0, 1] for c in (1 / 3, 1.0, 2.0)]
        torch.testing.assert_close(r.weights["relu1"][0, k], torch.stack(p).mean(), rtol=1e-5, atol=1e-7)


def test_with_one_sample_it_is_score_cam(tiny_input):
    model = make_tiny()
    integrated = ISCAM(model, ["conv2", "relu2"], samples=1)(tiny_input, target=[4, 1, 0])
    plain = gc.ScoreCAM(model, ["conv2", "relu2"])(tiny_input, target=[4, 1, 0])
    for layer in ("conv2", "relu2"):
        assert torch.equal(integrated.weights[layer], plain.weights[layer])
        assert torch.equal(integrated.maps[layer], plain.maps[layer])


def test_one_forward_pass_per_step_and_varying_channel_in_batches(tiny_input):
    model = make_tiny()
    calls = []
    with count_calls(model) as counts:
        ISCAM(model, ["conv2"], samples=2, batch_size=6, progress=lambda d, t: calls.append((d, t)))(tiny_input, 0)
    assert counts == [1 + 3 * 2]
    assert calls == [(6 * i, 36) for i in range(1, 7)]
    assert gc.METHODS["is_cam"].cls is ISCAM and not gc.METHODS["is_cam"].stochastic


@pytest.mark.parametrize("options", [{"samples": 0}, {"samples": "ten"}, {"batch_size": -2}])
def test_bad_options_are_value_errors(options, tiny):
    with pytest.raises(ValueError, match=next(iter(options))):
        ISCAM(tiny, ["conv2"], **options)
