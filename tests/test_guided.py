"""gradcam_core.explainers.guided: Guided Backpropagation and Guided Grad-CAM."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import GuidedMLP, assert_no_hooks, assert_same_state, snapshot
from torch import nn

import gradcam_core as gc

# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------
# GuidedMLP on x = [1, 2]:
#   l1: W1 = [[1, 2], [-1, 1]]  -> pre [5, 1], both ReLUs open, h1 = [5, 1]
#   l2: W2 = [[1, -1], [2, -3]] -> pre [4, 7], both open,       h2 = [4, 7]
#   l3: W3 = [[1, -1]]          -> y = 4 - 7 = -3
# plain:  dy/dh2 = [1, -1]; dy/dh1 = W2^T [1, -1] = [-1, 2]; dy/dx = W1^T [-1, 2] = [-3, 0]
# guided: [1, -1] -> clamp [1, 0]; W2^T [1, 0] = [1, -1] -> clamp [1, 0]; W1^T [1, 0] = [1, 2]

X_MLP = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)


def test_guided_backprop_by_hand():
    model = GuidedMLP()
    g = gc.GuidedBackprop(model)(X_MLP, target=0)
    assert g.shape == (1, 2, 1, 1)
    assert torch.equal(g.flatten(), torch.tensor([1.0, 2.0]))


def test_guided_backprop_differs_from_the_plain_gradient_where_it_clamps():
    model = GuidedMLP()
    x = X_MLP.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(x)[0, 0], x)
    assert torch.equal(plain.flatten(), torch.tensor([-3.0, 0.0]))
    guided = gc.GuidedBackprop(model)(X_MLP, target=0)
    assert not torch.allclose(plain, guided)
    # after the guided call, the same model gives the plain gradient again (no module changed)
    x2 = X_MLP.clone().requires_grad_(True)
    (again,) = torch.autograd.grad(model(x2)[0, 0], x2)
    assert torch.equal(again, plain)


def test_guided_backprop_applies_to_relu6_and_its_saturation():
    # x = [7, 2, 3] -> ReLU6 = [6, 2, 3]; y = 2*6 - 1*2 + 3*3.
    # plain: relu6' = [0 (saturated), 1, 1] * [2, -1, 3] = [0, -1, 3]; guided clamps -1: [0, 0, 3]
    model = nn.Sequential(nn.Flatten(), nn.ReLU6(inplace=True), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[2.0, -1.0, 3.0]]))
    x = torch.tensor([7.0, 2.0, 3.0]).view(1, 3, 1, 1)
    g = gc.GuidedBackprop(model)(x, target=0)
    assert torch.equal(g.flatten(), torch.tensor([0.0, 0.0, 3.0]))


# --------------------------------------------------------------------------------------------
# ResNet34: one in-place ReLU module called twice per block
# --------------------------------------------------------------------------------------------


class _GuidedReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


class _GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFunction.apply(x)


@pytest.fixture(scope="module")
def reference_guided(resnet34):
    """A copy of the ResNet34 whose ReLU modules are swapped for a guided autograd Function:
    the textbook implementation, independent of the package's tensor hooks."""
    ref = copy.deepcopy(resnet34.module)
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, _GuidedReLU())

    def guided(x, targets):
        x = x.clone().requires_grad_(True)
        logits = ref(x)
        (grad,) = torch.autograd.grad(logits.gather(1, torch.tensor(targets)[:, None]).sum(), x)
        return grad

    return guided


@pytest.mark.parametrize("batch", [1, 3])
def test_guided_backprop_on_resnet34_matches_the_module_swapping_reference(
    resnet34, small_batch, reference_guided, batch
):
    model = resnet34.module
    x = small_batch[:batch]
    targets = [4, 200, 999][:batch]
    before = snapshot(model)
    g = gc.GuidedBackprop(model)(x, target=targets)
    assert_same_state(before, model)  # the same module objects, parameters and flags
    assert_no_hooks(model)
    assert g.shape == x.shape
    expected = reference_guided(x, targets)
    assert torch.allclose(g, expected, rtol=1e-5, atol=1e-6 * expected.abs().max())
    # and it is not the plain gradient
    xp = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(xp).gather(1, torch.tensor(targets)[:, None]).sum(), xp)
    assert not torch.allclose(g, plain, rtol=0.1, atol=0.1 * plain.abs().max())


class _GuidedReLU6Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * ((x > 0) & (x < 6)).to(grad.dtype)


class _GuidedReLU6(nn.Module):
    def forward(self, x):
        return _GuidedReLU6Function.apply(x)


def test_guided_backprop_on_efficientnet_matches_the_module_swapping_reference(efficientnet):
    """timm's blocks call their in-place ReLU6 inside BatchNormAct2d; the rule must reach all 33."""
    ref = copy.deepcopy(efficientnet.module)
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, name, _GuidedReLU6())
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    xr = x.clone().requires_grad_(True)
    logits = ref(xr)
    (expected,) = torch.autograd.grad(logits[0, 243] + logits[1, 282], xr)
    g = gc.GuidedBackprop(efficientnet.module)(x, target=[243, 282])
    assert torch.allclose(g, expected, rtol=1e-5, atol=1e-6 * expected.abs().max())
    assert_no_hooks(efficientnet.module)


@pytest.mark.parametrize("target", [None, 5, "list"])
def test_guided_backprop_batch_gives_what_each_image_alone_gives(resnet34, small_batch, target):
    explainer = gc.GuidedBackprop(resnet34.module)
    per_sample = [17, 999]
    batch = explainer(small_batch[:2], target=per_sample if target == "list" else target)
    for i in range(2):
        alone = explainer(small_batch[i : i + 1], target=per_sample[i] if target == "list" else target)
        scale = alone.abs().max()
        assert scale > 0
        assert torch.allclose(batch[i], alone[0], rtol=1e-4, atol=1e-5 * scale)


def test_guided_backprop_refuses_classes_out_of_range(tiny, tiny_input):
    for target in (5, -1, [0, 1, 5]):
        with pytest.raises(ValueError, match="out of range"):
            gc.GuidedBackprop(tiny)(tiny_input, target=target)
    with pytest.raises(ValueError, match="Got 4 targets for a batch of 3"):
        gc.GuidedBackprop(tiny)(tiny_input, target=[0, 1, 2, 3])
    assert_no_hooks(tiny)


# --------------------------------------------------------------------------------------------
# Guided Grad-CAM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("counterfactual", [False, True])
def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam(resnet34, small_batch, counterfactual):
    model = resnet34.module
    layers = ["layer3", "layer4"]
    targets = [3, 11, 999]
    r = gc.GuidedGradCAM(model, layers, counterfactual=counterfactual)(small_batch, target=targets)
    guided = gc.GuidedBackprop(model)(small_batch, target=targets)
    cams = gc.GradCAM(model, layers, counterfactual=counterfactual)(small_batch, target=targets)
    assert torch.allclose(r.guided, guided, rtol=1e-5, atol=1e-6 * guided.abs().max())
    assert r.targets.tolist() == targets
    for layer in layers:
        assert torch.allclose(r.cams[layer], cams.maps[layer], rtol=1e-5, atol=1e-6)
        assert torch.allclose(r.weights[layer], cams.weights[layer], rtol=1e-5, atol=1e-9)
        up = gc.upsample(cams.maps[layer], (64, 64))  # (N, 64, 64)
        expected = guided * up[:, None]
        assert r.maps[layer].shape == (3, 3, 64, 64)
        scale = expected.abs().max()
        assert scale > 0
        assert torch.allclose(r.maps[layer], expected, rtol=1e-4, atol=1e-5 * scale)
        # and the result is consistent with its own two factors
        own = r.guided * gc.upsample(r.cams[layer], (64, 64))[:, None]
        assert torch.allclose(r.maps[layer], own, rtol=1e-6, atol=1e-7 * scale)


def test_guided_grad_cam_by_hand():
    # One image, one conv layer whose map is known: x (1, 1, 3, 3) = HAND_INPUT through
    # OneConvGAP-like conv; there is no ReLU, so the guided gradient is the plain one:
    # d y^0 / d x = sum_k W[0, k] / 4 * (conv_k kernel placed at each of the 4 positions).
    from conftest import HAND_INPUT, OneConvGAP

    model = OneConvGAP()
    r = gc.GuidedGradCAM(model, ["conv"])(HAND_INPUT, target=0)
    # kernel_0 = [[1, 0], [0, 1]] with weight 0.25, kernel_1 = [[0, 1], [-1, 0]] with weight -0.5:
    # per position 0.25*k0 - 0.5*k1 = [[0.25, -0.5], [0.5, 0.25]], summed over the 4 positions:
    expected_guided = torch.tensor([[0.25, -0.25, -0.5], [0.75, 0.5, -0.25], [0.5, 0.75, 0.25]])
    assert torch.allclose(r.guided[0, 0], expected_guided, atol=1e-7)
    # Grad-CAM map [[0, 1.75], [0.5, 0]] upsampled bilinearly (align_corners=False) to 3x3:
    # source coords for 3 outputs from 2 inputs: -1/6 -> 0, 0.5, 7/6 -> 1, so the grid is
    # [[0, 0.875, 1.75], [0.25, 0.5625, 0.875], [0.5, 0.25, 0]]
    up = torch.tensor([[0.0, 0.875, 1.75], [0.25, 0.5625, 0.875], [0.5, 0.25, 0.0]])
    assert torch.allclose(r.maps["conv"][0, 0], expected_guided * up, atol=1e-6)


@pytest.mark.parametrize("target", [None, 5, "list"])
def test_guided_grad_cam_batch_gives_what_each_image_alone_gives(resnet34, small_batch, target):
    explainer = gc.GuidedGradCAM(resnet34.module, ["layer4"])
    per_sample = [17, 999]
    batch = explainer(small_batch[:2], target=per_sample if target == "list" else target)
    scale = batch.maps["layer4"].abs().max()
    assert scale > 0
    for i in range(2):
        alone = explainer(small_batch[i : i + 1], target=per_sample[i] if target == "list" else target)
        assert torch.allclose(batch.maps["layer4"][i], alone.maps["layer4"][0], rtol=1e-4, atol=1e-5 * scale)
        assert torch.allclose(batch.guided[i], alone.guided[0], rtol=1e-4, atol=1e-5 * batch.guided.abs().max())


def test_guided_grad_cam_refuses_classes_out_of_range(tiny, tiny_input):
    for target in (5, -2):
        with pytest.raises(ValueError, match="out of range"):
            gc.GuidedGradCAM(tiny, ["conv2"])(tiny_input, target=target)
    assert_no_hooks(tiny)
