"""gradcam_core.explainers.lrp: layer-wise relevance propagation with zennit's rules.

The reference is zennit 0.5.1 used directly, with its own ResNet canonizer, on a copy of the model.
The package works on a canonical copy too (BatchNorm merged, skip connections as sums); the
caller's model must come out exactly as it went in.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    CAT_DOG,
    GuidedMLP,
    assert_no_hooks,
    assert_same_state,
    make_tiny,
    snapshot,
)
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.rules import Epsilon
from zennit.torchvision import ResNetCanonizer
from zennit.types import Linear

import gradcam_core as gc
from gradcam_core.explainers.lrp import LRP, RULES, _Residual, canonical_copy


class SkipBlock(nn.Module):
    """A timm-style block: ``relu(conv(x)) + x`` when ``has_skip``, the addition in ``forward``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.drop_path = nn.Identity()
        self.has_skip = True

    def forward(self, x):
        shortcut = x
        x = F.relu(self.conv(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class BiasFreeCNN(nn.Module):
    """conv -> ReLU -> skip block -> GAP -> linear, no bias anywhere: LRP-0 conserves the score."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.block = SkipBlock()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5, bias=False)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.relu(self.conv(x)))), 1))


def test_by_hand_on_the_mlp():
    """GuidedMLP, x = [1, 2] (see conftest): relevances [4, -7] after l3, [-5, 2] after l2,
    [-1 - 2, -4 + 4] = [-3, 0] at the input; they add up to the score -3 at every layer."""
    r = LRP(GuidedMLP(), epsilon=1e-12)(torch.tensor([1.0, 2.0]).view(1, 2, 1, 1), target=0)
    torch.testing.assert_close(r.flatten(), torch.tensor([-3.0, 0.0]))


def test_the_relevance_adds_up_to_the_score_without_biases_as_epsilon_goes_to_0(tiny_input):
    model = BiasFreeCNN().double()
    x = tiny_input.double().abs()
    targets = [0, 3, 4]
    r = LRP(model, epsilon=1e-12)(x, targets)
    with torch.no_grad():
        y = model(x)[torch.arange(3), targets]
    torch.testing.assert_close(r.sum(dim=(1, 2, 3)), y, rtol=1e-9, atol=1e-12)
    # without the skip connection's Sum, its addition would hand the same relevance to both branches
    assert isinstance(canonical_copy(model).block, _Residual)
    # LRP-0 of a bias-free ReLU network is the gradient times the input
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(leaf)[torch.arange(3), targets].sum(), leaf)
    torch.testing.assert_close(r, g * x, rtol=1e-7, atol=1e-10)


def test_the_canonical_copy_computes_what_the_model_computes(tiny_input):
    model = make_tiny()
    before = snapshot(model)
    canonical = canonical_copy(model)
    with torch.no_grad():
        torch.testing.assert_close(canonical(tiny_input), model(tiny_input), rtol=1e-5, atol=1e-6)
    assert torch.equal(canonical.bn.running_mean, torch.zeros(6))  # merged into conv2
    assert_same_state(before, model)


def test_a_batch_norm_after_no_convolution_is_a_value_error(tiny_input):
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.raises(ValueError, match="follows none"):
        LRP(model)(tiny_input, 0)
    assert_no_hooks(model)


def reference(model, x, targets, rule):
    canonizers = [ResNetCanonizer()]
    composite = {
        "epsilon": LayerMapComposite(layer_map=layer_map_base() + [(Linear, Epsilon())], canonizers=canonizers),
        "alpha_beta": EpsilonAlpha2Beta1(canonizers=canonizers),
        "epsilon_plus_flat": EpsilonPlusFlat(canonizers=canonizers),
    }[rule]
    chosen = F.one_hot(torch.as_tensor(targets), 1000)
    with Gradient(copy.deepcopy(model), composite) as attributor:
        _, relevance = attributor(x.clone(), lambda out: out * chosen)
    return relevance


@pytest.mark.parametrize("rule", RULES)
def test_agrees_with_zennit_on_resnet34(resnet34, small_batch, rule):
    """Random weights, 64 x 64. Measured correlation 0.999995 (epsilon), 1.0, 1.0."""
    model = resnet34.module
    before = snapshot(model)
    r = LRP(model, rule=rule)(small_batch[:2], [3, 7])
    expected = reference(model, small_batch[:2], [3, 7], rule)
    for i in range(2):
        assert torch.corrcoef(torch.stack([r[i].flatten(), expected[i].flatten()]))[0, 1] >= 0.99
    torch.testing.assert_close(r.sum(dim=(1, 2, 3)), expected.sum(dim=(1, 2, 3)), rtol=1e-3, atol=1e-3)
    assert_no_hooks(model)
    assert_same_state(before, model)


def test_runs_on_efficientnet_lite0_and_leaves_it_as_it_was(efficientnet):
    model = efficientnet.module
    x = efficientnet.preprocess(CAT_DOG)
    before = snapshot(model)
    canonical = canonical_copy(model)
    with torch.no_grad():
        torch.testing.assert_close(canonical(x), model(x), rtol=1e-4, atol=1e-4)
    skips = sum(bool(getattr(m, "has_skip", False)) for m in model.modules())
    assert skips > 0 and sum(isinstance(m, _Residual) for m in canonical.modules()) == skips
    for rule in RULES:
        r = LRP(model, rule=rule)(x)
        assert r.shape == x.shape and torch.isfinite(r).all() and r.abs().sum() > 0
    assert_no_hooks(model)
    assert_same_state(before, model)


def test_the_model_is_never_changed_while_another_thread_uses_it(tiny_input):
    """A forward pass in another thread (without the model's lock) sees the model unchanged."""
    model = make_tiny()
    with torch.no_grad():
        expected = model(tiny_input)
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            with torch.no_grad():
                seen.append(torch.equal(model(tiny_input), expected))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for rule in RULES * 3:
            LRP(model, rule=rule)(tiny_input, 1)
    finally:
        stop.set()
        watcher.join()
    assert seen and all(seen)
    assert gc.METHODS["lrp"].cls is LRP


@pytest.mark.parametrize("options, match", [({"rule": "z_plus"}, "rule"), ({"epsilon": -1.0}, "epsilon"),
                                            ({"epsilon": 0}, "epsilon"), ({"epsilon": "small"}, "epsilon")])
def test_bad_options_are_value_errors(tiny, options, match):
    with pytest.raises(ValueError, match=match):
        LRP(tiny, **options)
