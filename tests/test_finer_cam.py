"""gradcam_core.explainers.finer_cam: Finer-CAM, Grad-CAM against the most similar classes.

The reference is pytorch-grad-cam 1.5.7's ``FinerCAM`` (the authors' code), read at the layer's
resolution (its maps are scaled to [0, 1] and resized to the input; here to the layer's size).
"""

from __future__ import annotations

import pytest
import torch
from conftest import CAT_DOG, assert_no_hooks, count_calls, make_tiny
from pytorch_grad_cam import FinerCAM as ReferenceFinerCAM

import gradcam_core as gc
from gradcam_core.explainers.finer_cam import FinerCAM


def reference_maps(model, layer: str, x: torch.Tensor, target: int | None, alpha: float = 1.0) -> torch.Tensor:
    module = dict(model.named_modules())[layer]
    with ReferenceFinerCAM(model, [module]) as cam:
        cam.base_cam.get_target_width_height = lambda t: None  # no resize: the layer's own cells
        return torch.from_numpy(cam(x, alpha=alpha, target_idx=target))


def correlation(a, b) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
def test_agrees_with_pytorch_grad_cam_on_resnet34(resnet34, small_batch, layer):
    """Top-1 of each of two images (random weights, 64 x 64). Measured correlation 1.0000."""
    model = resnet34.module
    r = FinerCAM(model, [layer])(small_batch[:2])
    expected = reference_maps(model, layer, small_batch[:2], None)
    assert expected.shape == r.maps[layer].shape
    for i in range(2):
        assert correlation(r.maps[layer][i], expected[i]) >= 0.99
    assert_no_hooks(model)


@pytest.mark.parametrize("layer, target", [("layer3", None), ("layer4", 281)])
def test_agrees_with_pytorch_grad_cam_on_efficientnet_lite0(efficientnet, layer, target):
    """The cat and dog picture; its top-1, and 281 (tabby cat). Measured 0.9999998 and 0.9999998."""
    model = efficientnet.module
    x = efficientnet.preprocess(CAT_DOG)
    r = FinerCAM(model, [layer], alpha=1.0)(x, target)
    expected = reference_maps(model, layer, x, int(r.targets[0]))
    assert correlation(r.maps[layer][0], expected[0]) >= 0.99
    assert_no_hooks(model)


def test_the_score_by_hand(tiny_input):
    """The mean gradient of S = sum_j p_j (y_c - alpha y_j) / sum_j p_j, the 2 nearest classes."""
    model = make_tiny()
    x = tiny_input[:1]
    r = FinerCAM(model, ["conv2"], comparisons=2, alpha=0.7)(x, target=1)
    seen = {}
    handle = model.conv2.register_forward_hook(lambda m, i, o: seen.update(a=o))  # returns None
    try:
        logits = model(x)[0]
    finally:
        handle.remove()
    distance = (logits - logits[1]).abs().detach()
    distance[1] = torch.inf
    nearest = distance.argsort()[:2]
    p = logits.softmax(dim=0)[nearest]
    score = (p * (logits[1] - 0.7 * logits[nearest])).sum() / (p.sum() + 1e-9)
    (g,) = torch.autograd.grad(score, seen["a"])
    torch.testing.assert_close(r.weights["conv2"], g.mean(dim=(2, 3)), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(r.maps["conv2"], torch.einsum("nk,nkhw->nhw", g.mean(dim=(2, 3)),
                                                            seen["a"].detach()).clamp(min=0), rtol=1e-5, atol=1e-6)


def test_alpha_zero_is_grad_cam(tiny_input):
    model = make_tiny()
    finer = FinerCAM(model, ["conv1", "conv2"], alpha=0.0)(tiny_input, [0, 2, 4])
    plain = gc.GradCAM(model, ["conv1", "conv2"])(tiny_input, [0, 2, 4])
    for layer in ("conv1", "conv2"):
        torch.testing.assert_close(finer.weights[layer], plain.weights[layer], rtol=1e-5, atol=1e-7)


def test_against_one_class_at_the_top_1_it_is_contrastive_grad_cam_against_the_runner_up(tiny_input):
    """For the top-1 class the nearest logit is the runner-up's; one weight p_d / p_d is 1."""
    model = make_tiny()
    finer = FinerCAM(model, ["conv2"], comparisons=1)(tiny_input)
    contrast = gc.ContrastiveGradCAM(model, ["conv2"])(tiny_input)
    torch.testing.assert_close(finer.weights["conv2"], contrast.weights["conv2"], rtol=1e-5, atol=1e-7)


def test_one_forward_and_one_backward_pass_of_its_own(tiny_input, monkeypatch):
    model = make_tiny()
    grad_calls, real = [], torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grad_calls.append(1) or real(*a, **k))
    with count_calls(model) as counts:
        gc.explain(model, tiny_input, None, ["conv2"], ["grad_cam", "finer_cam", "contrastive_grad_cam"])
    assert counts == [3] and len(grad_calls) == 3
    grad_calls.clear()
    with count_calls(model) as counts:
        FinerCAM(model, ["conv1", "conv2"])(tiny_input)
    assert counts == [2] and len(grad_calls) == 1  # the shared pass needs no gradient
    assert gc.METHODS["finer_cam"].cls is FinerCAM


def test_more_comparisons_than_classes_compares_with_every_other_class(tiny_input):
    model = make_tiny()
    every = FinerCAM(model, ["conv2"], comparisons=4)(tiny_input, 0)
    torch.testing.assert_close(FinerCAM(model, ["conv2"], comparisons=40)(tiny_input, 0).maps["conv2"],
                               every.maps["conv2"], rtol=0, atol=0)


@pytest.mark.parametrize("options", [{"comparisons": 0}, {"comparisons": 1.5}, {"alpha": "one"},
                                     {"alpha": float("nan")}])
def test_bad_options_are_value_errors(options, tiny):
    with pytest.raises(ValueError, match=next(iter(options))):
        FinerCAM(tiny, ["conv2"], **options)
