"""gradcam_core.explainers.deconvnet: the deconvnet's backward rule, ``max(grad, 0)`` at each ReLU.

Backpropagation passes a ReLU's gradient where its forward input was positive; guided
backpropagation passes its positive part there only; the deconvnet passes its positive part
wherever it arrives, whatever the forward input was.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import GuidedMLP, assert_no_hooks, assert_same_state, snapshot
from torch import nn

import gradcam_core as gc


class LinearReLULinear(nn.Module):
    """x (2) -> identity linear -> ReLU -> linear v (2 -> 1): the simplest net where it matters."""

    def __init__(self, v):
        super().__init__()
        self.flatten = nn.Flatten()
        self.l1 = nn.Linear(2, 2, bias=False)
        self.relu = nn.ReLU()
        self.l2 = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(torch.eye(2))
            self.l2.weight.copy_(torch.tensor([v]))
        self.eval()

    def forward(self, x):
        return self.l2(self.relu(self.l1(self.flatten(x))))


def column(*values):
    return torch.tensor(values).view(1, len(values), 1, 1)


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# y = v . ReLU(x); the gradient arriving at the ReLU is v.
#   v = [1, 2], x = [3, -1]: plain relu'(x) v = [1, 0]; guided relu'(x) max(v, 0) = [1, 0];
#                            deconvnet max(v, 0) = [1, 2]: the 2 passes where the input was -1.
#   v = [1, -2], x = [3, 1]: plain [1, -2]; guided [1, 0]; deconvnet [1, 0].


def test_deconvnet_passes_the_positive_gradient_where_the_forward_input_was_negative():
    model = LinearReLULinear([1.0, 2.0])
    x = column(3.0, -1.0)
    assert torch.equal(gc.Deconvnet(model)(x, target=0).flatten(), torch.tensor([1.0, 2.0]))
    assert torch.equal(gc.GuidedBackprop(model)(x, target=0).flatten(), torch.tensor([1.0, 0.0]))
    assert torch.equal(gc.Saliency(model)(x, target=0).flatten(), torch.tensor([1.0, 0.0]))


def test_deconvnet_cuts_the_negative_gradient_where_the_input_was_positive():
    model = LinearReLULinear([1.0, -2.0])
    x = column(3.0, 1.0)
    assert torch.equal(gc.Deconvnet(model)(x, target=0).flatten(), torch.tensor([1.0, 0.0]))
    assert torch.equal(gc.GuidedBackprop(model)(x, target=0).flatten(), torch.tensor([1.0, 0.0]))
    assert torch.equal(gc.Saliency(model)(x, target=0).flatten(), torch.tensor([1.0, -2.0]))


# GuidedMLP (W1 = [[1, 2], [-1, 1]], W2 = [[1, -1], [2, -3]], W3 = [[1, -1]]):
#   deconvnet: dy/dh2 = W3^T = [1, -1] -> max(., 0) = [1, 0]; W2^T [1, 0] = [1, -1] -> [1, 0];
#              W1^T [1, 0] = [1, 2]. No forward value enters: [1, 2] for every x.
#   x = [1, 2]:  pre-activations [5, 1], [4, 7]: all open, guided = [1, 2] as well.
#   x = [-1, 1]: pre-activations [1, 2], then [1 - 2, 2 - 6] = [-1, -4]: the second ReLUs are
#                closed, so plain and guided are [0, 0]; the deconvnet still gives [1, 2].
#   x = [1, -1]: pre-activations [-1, -2]: every gate closed; plain = guided = [0, 0].


@pytest.mark.parametrize(
    "x, guided",
    [((1.0, 2.0), (1.0, 2.0)), ((-1.0, 1.0), (0.0, 0.0)), ((1.0, -1.0), (0.0, 0.0)), ((-3.0, 5.0), None)],
)
def test_deconvnet_on_the_guided_mlp_is_the_same_for_every_input(x, guided):
    model = GuidedMLP()
    d = gc.Deconvnet(model)(column(*x), target=0)
    assert d.shape == (1, 2, 1, 1)
    assert torch.equal(d.flatten(), torch.tensor([1.0, 2.0]))
    if guided is not None:
        assert torch.equal(gc.GuidedBackprop(model)(column(*x), target=0).flatten(), torch.tensor(guided))


@pytest.mark.parametrize("inplace", [False, True])
def test_deconvnet_ignores_relu6_saturation_and_sign(inplace):
    # x = [7, 2, -3] through ReLU6, y = 2 a - b + 3 c:
    #   plain relu6' = [0, 1, 0] -> [0, -1, 0]; guided [0, 0, 0]; deconvnet max([2, -1, 3], 0) = [2, 0, 3]
    # In place, the ReLU6 changes the view that Flatten returns (as in test_guided.py's ReLU6 test).
    model = nn.Sequential(nn.Flatten(), nn.ReLU6(inplace=inplace), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[2.0, -1.0, 3.0]]))
    x = column(7.0, 2.0, -3.0)
    assert torch.equal(gc.GuidedBackprop(model)(x, target=0).flatten(), torch.tensor([0.0, 0.0, 0.0]))
    if inplace:
        # Applied in place to Flatten's view, the activation's own backward step hides inside the
        # view's: the deconvnet cannot rewrite it, and says so rather than give a guided answer.
        with pytest.raises(ValueError, match="in-place activation on a view"):
            gc.Deconvnet(model)(x, target=0)
        assert_no_hooks(model)
    else:
        assert torch.equal(gc.Deconvnet(model)(x, target=0).flatten(), torch.tensor([2.0, 0.0, 3.0]))


def test_after_the_deconvnet_the_model_gives_the_plain_gradient_again():
    model = GuidedMLP()
    gc.Deconvnet(model)(column(-1.0, 1.0), target=0)
    x = column(1.0, 2.0).requires_grad_(True)
    (plain,) = torch.autograd.grad(model(x)[0, 0], x)
    assert torch.equal(plain.flatten(), torch.tensor([-3.0, 0.0]))
    assert_no_hooks(model)


# --------------------------------------------------------------------------------------------
# ResNet34 against a module-swapping reference
# --------------------------------------------------------------------------------------------


class _DeconvReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


class _DeconvReLU(nn.Module):
    def forward(self, x):
        return _DeconvReLUFunction.apply(x)


def test_deconvnet_on_resnet34_matches_the_module_swapping_reference(resnet34, small_batch):
    """Every ReLU call (each BasicBlock calls its in-place ReLU twice) gets the rule."""
    ref = copy.deepcopy(resnet34.module)
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, _DeconvReLU())
    x = small_batch[:2]
    xr = x.clone().requires_grad_(True)
    logits = ref(xr)
    (expected,) = torch.autograd.grad(logits[0, 5] + logits[1, 600], xr)
    before = snapshot(resnet34.module)
    d = gc.Deconvnet(resnet34.module)(x, target=[5, 600])
    assert_same_state(before, resnet34.module)
    assert_no_hooks(resnet34.module)
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-6 * scale)
    guided = gc.GuidedBackprop(resnet34.module)(x, target=[5, 600])
    assert not torch.allclose(d, guided, rtol=0.1, atol=0.1 * scale)


def test_deconvnet_batch_item_equals_single_image(resnet34, small_batch):
    explainer = gc.Deconvnet(resnet34.module)
    batch = explainer(small_batch, target=[1, 2, 3])
    for i in range(3):
        alone = explainer(small_batch[i : i + 1], target=i + 1)
        scale = alone.abs().max()
        assert scale > 0
        torch.testing.assert_close(batch[i], alone[0], rtol=1e-4, atol=1e-5 * scale)


def test_without_max_pooling_every_image_gets_the_same_picture(efficientnet):
    """EfficientNet-Lite0 has no max pooling: convolutions, BatchNorm (an affine map in eval mode)
    and average pooling are linear, and the rule ignores each ReLU6's input, so nothing on the way
    back depends on the image."""
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    d = gc.Deconvnet(efficientnet.module)(x, target=[281, 281])
    scale = d.abs().max()
    assert scale > 0
    torch.testing.assert_close(d[0], d[1], rtol=1e-5, atol=1e-6 * scale)
    # guided backpropagation keeps the forward gates, so it does depend on the image
    g = gc.GuidedBackprop(efficientnet.module)(x, target=[281, 281])
    assert not torch.allclose(g[0], g[1], rtol=0.1, atol=0.1 * g.abs().max())
