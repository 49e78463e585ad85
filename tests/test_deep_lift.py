"""gradcam_core.explainers.deep_lift: DeepLIFT's rescale rule.

The reference is captum 0.9.0's ``DeepLift``. It agrees exactly on TinyCNN, and on
EfficientNet-Lite0 once ReLU6 is in its table of non-linearities (captum leaves it out, and passes
a plain gradient through it). On torchvision's ResNet34 captum needs three corrections, each of
which breaks its summation-to-delta (the contributions add up to y(x) - y(x0)); the package keeps it:

* a BasicBlock calls its one ReLU module twice: captum refuses (the copy below gives each call its
  own module);
* a hooked module that feeds another directly (the stem's ReLU -> MaxPool) gets a wrong multiplier
  from captum's module hooks (a clone in between mends it);
* its max-pooling rule spreads the gradient with ``max_unpool2d``, which keeps one value where
  overlapping windows (3 x 3, stride 2) share a winner instead of adding them.

As captum is, the correlation with the package is 0.74 on ResNet34, and its contributions sum to
-0.43 for a change of the score of -0.48; corrected, they agree to 2e-7.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr._core import deep_lift as captum_deep_lift
from conftest import (
    CAT_DOG,
    GuidedMLP,
    assert_no_hooks,
    assert_same_state,
    make_tiny,
    snapshot,
)
from reference_adapters import captum_ready
from torch import nn

import gradcam_core as gc
from gradcam_core.explainers.deep_lift import COVERED, DeepLift
from gradcam_core.explainers.paths import black, blur


def _adding_unpool(values, indices, kernel_size, stride, padding, output_size):
    out = values.new_zeros(output_size).flatten(2)
    return out.scatter_add_(2, indices.flatten(2), values.flatten(2)).view(output_size)


def _adding_maxpool2d(module, inputs, outputs, grad_input, grad_output, eps=1e-10):
    return captum_deep_lift.maxpool(module, F.max_pool2d, _adding_unpool, inputs, outputs, grad_input,
                                    grad_output, eps=eps)


def delta(model, x, x0, targets):
    with torch.no_grad():
        index = torch.arange(len(x))
        return model(x)[index, targets] - model(x0)[index, targets]


def correlation(a, b) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_by_hand_where_a_relu_switches():
    """GuidedMLP, x = [1, 2], x0 = [1, -2]: layer 1 gives [5, 1] and [-3, -3] -> ReLU [5, 1] and
    [0, 0], secants [5/8, 1/4]; layer 2 gives [4, 7] and [0, 0], secants 1; y = -3 and 0.
    Multipliers: [1, -1] -> W2^T -> [-1, 2] -> x secants -> [-5/8, 1/2] -> W1^T -> [-9/8, -3/4];
    times x - x0 = [0, 4]: [0, -3], which adds up to -3 - 0. The gradient times x - x0 gives
    [-3, 0] . [0, 4] = 0: the gradient at x does not see the second unit switching on."""
    x = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    x0 = torch.tensor([1.0, -2.0]).view(1, 2, 1, 1)
    c = DeepLift(GuidedMLP(), baseline=x0)(x, target=0)
    torch.testing.assert_close(c.flatten(), torch.tensor([0.0, -3.0]))


def test_equals_captum_on_the_tiny_cnn(tiny_input):
    model = make_tiny()
    c = DeepLift(model)(tiny_input, [1, 2, 4])
    expected = CaptumDeepLift(copy.deepcopy(model)).attribute(
        tiny_input.clone(), baselines=torch.zeros_like(tiny_input), target=[1, 2, 4]).detach()
    torch.testing.assert_close(c, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(c.sum(dim=(1, 2, 3)), delta(model, tiny_input, 0 * tiny_input, [1, 2, 4]),
                               rtol=1e-5, atol=1e-6)


def test_equals_captum_on_resnet34_given_its_corrections(resnet34, small_batch, monkeypatch):
    """Random weights, 64 x 64, black baseline. Measured correlation 1.0 (max difference 2e-7)."""
    model = resnet34.module
    before = snapshot(model)
    x = small_batch[:2]
    x0 = black(model, x).expand(x.shape)
    c = DeepLift(model)(x, [3, 7])
    torch.testing.assert_close(c.sum(dim=(1, 2, 3)), delta(model, x, x0, [3, 7]), rtol=1e-4, atol=1e-4)
    monkeypatch.setitem(captum_deep_lift.SUPPORTED_NON_LINEAR, nn.MaxPool2d, _adding_maxpool2d)
    expected = CaptumDeepLift(captum_ready(model)).attribute(x.clone(), baselines=x0, target=[3, 7]).detach()
    for i in range(2):
        assert correlation(c[i], expected[i]) >= 0.99
    torch.testing.assert_close(c, expected, rtol=1e-3, atol=1e-5 * float(expected.abs().max()))
    assert_no_hooks(model)
    assert_same_state(before, model)


def test_equals_captum_on_efficientnet_lite0_with_relu6_rescaled(efficientnet, monkeypatch):
    """The cat and dog picture, top-1, black baseline. Measured correlation 1.0 (max difference 1e-7)."""
    model = efficientnet.module
    x = efficientnet.preprocess(CAT_DOG)
    x0 = black(model, x).expand(x.shape)
    c = DeepLift(model)(x)
    target = int(model(x).argmax())
    torch.testing.assert_close(c.sum(), delta(model, x, x0, [target])[0], rtol=1e-3, atol=1e-3)
    monkeypatch.setitem(captum_deep_lift.SUPPORTED_NON_LINEAR, nn.ReLU6, captum_deep_lift.nonlinear)
    expected = CaptumDeepLift(copy.deepcopy(model)).attribute(x.clone(), baselines=x0, target=target).detach()
    assert correlation(c[0], expected[0]) >= 0.99
    assert_no_hooks(model)


def test_the_baselines(tiny_input):
    model = make_tiny()
    for name, x0 in (("blur", blur(tiny_input)), (0.5, torch.full_like(tiny_input, 0.5))):
        c = DeepLift(model, baseline=name)(tiny_input, 2)
        torch.testing.assert_close(c.sum(dim=(1, 2, 3)), delta(model, tiny_input, x0, [2] * 3), rtol=1e-4,
                                   atol=1e-5)
    assert torch.equal(DeepLift(model, baseline=tiny_input)(tiny_input, 2), torch.zeros_like(tiny_input))


class SiLUNet(nn.Module):
    def __init__(self, functional: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.SiLU()
        self.fc = nn.Linear(4, 2)
        self.functional = functional

    def forward(self, x):
        x = F.relu(self.conv(x)) if self.functional else self.act(self.conv(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("functional, name", [(False, "Silu"), (True, "Relu")])
def test_a_non_linearity_the_rule_does_not_cover_is_refused(tiny_input, functional, name):
    model = SiLUNet(functional).eval()
    with pytest.raises(ValueError, match=f"covers {COVERED}; this network also applies {name}"):
        DeepLift(model)(tiny_input, 0)
    assert_no_hooks(model)
    assert gc.METHODS["deep_lift"].cls is DeepLift


@pytest.mark.parametrize("baseline", ["white", None, torch.zeros(3, 3, dtype=torch.long)])
def test_a_bad_baseline_is_a_value_error(tiny, baseline):
    with pytest.raises(ValueError, match="baseline"):
        DeepLift(tiny, baseline=baseline)
