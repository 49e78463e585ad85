"""gradcam_core.explainers.full_grad: FullGrad, the input gradient and every bias gradient as pictures.

By hand on one-channel networks where every gradient is known, with the full-gradient
decomposition ``y = x . grad_x + sum_b b . grad_b`` checked on the way; BatchNorm's bias is its
``beta - gamma mu / sigma``. The reference is pytorch-grad-cam's ``FullGrad``, which matches the
exact types ``nn.Conv2d`` and ``nn.BatchNorm2d``: on EfficientNet-Lite0 (timm's ``BatchNormAct2d``
everywhere) it is run on a copy whose norm layers are split into ``BatchNorm2d`` and activation.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import count_calls
from pytorch_grad_cam_reference import correlations
from timm.layers import BatchNormAct2d
from torch import nn

import gradcam_core as gc

X = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], dtype=torch.float64)


class ConvReLU(nn.Module):
    """conv 1x1 (weight 1, bias -1) -> ReLU -> GAP -> linear (weight 2, bias 0)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-1.0)
            self.fc.weight.fill_(2.0)
            self.fc.bias.zero_()
        self.eval()

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


class ConvBN(nn.Module):
    """conv 1x1 (weight 1, no bias) -> BatchNorm (mu 1, var 4, eps 0, gamma 2, beta 0.5) -> ReLU
    -> GAP -> linear (weight 4); ``fused`` puts the ReLU inside the norm layer, as timm does."""

    def __init__(self, fused: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.bn = BatchNormAct2d(1, eps=0.0, act_layer=nn.ReLU) if fused else nn.BatchNorm2d(1, eps=0.0)
        self.relu = nn.Identity() if fused else nn.ReLU()
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.bn.running_mean.fill_(1.0)
            self.bn.running_var.fill_(4.0)
            self.bn.weight.fill_(2.0)
            self.bn.bias.fill_(0.5)
            self.fc.weight.fill_(4.0)
            self.fc.bias.zero_()
        self.eval()

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def scaled(m: torch.Tensor) -> torch.Tensor:
    return (m - m.min()) / (m.max() - m.min() + 1e-7)


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def test_full_grad_of_a_conv_relu_by_hand():
    """x = [[0, 1], [2, 3]]: conv gives x - 1 = [[-1, 0], [1, 2]], the ReLU keeps the bottom row, and
    y = 2 mean = 1.5. The gradient at the conv output is 2/4 there: G = [[0, 0], [0.5, 0.5]]; at
    the input the same, so x . grad = [[0, 0], [1, 1.5]] (sum 2.5) and the bias term b G =
    [[0, 0], [-0.5, -0.5]] (sum -1): 2.5 - 1 = 1.5 = y. Scaled, |x grad| -> [[0, 0], [2/3, 1]] and
    |b G| -> [[0, 0], [1, 1]]."""
    model = ConvReLU().double()
    s = gc.FullGrad(model)(X, target=0)
    expected = scaled(torch.tensor([[0.0, 0.0], [1.0, 1.5]], dtype=torch.float64)) + scaled(
        torch.tensor([[0.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    )
    torch.testing.assert_close(s[0], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s[0], torch.tensor([[0.0, 0.0], [5 / 3, 2.0]], dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("fused", [False, True])
def test_full_grad_with_batchnorm_by_hand(fused):
    """BN(x) = 2 (x - 1) / 2 + 0.5 = x - 0.5 = [[-0.5, 0.5], [1.5, 2.5]]: the ReLU keeps three cells,
    y = 4 mean = 4.5. BN's bias is beta - gamma mu / sigma = 0.5 - 1 = -0.5, its gradient G = 1 on the
    three cells; x . grad = x there (sum 6), b G sums to -1.5: 6 - 1.5 = 4.5 = y. Scaled, |x grad|
    -> [[0, 1/3], [2/3, 1]] and |b G| -> [[0, 1], [1, 1]]. With the ReLU inside the norm layer
    (timm's BatchNormAct2d) the bias is read before the ReLU all the same."""
    model = ConvBN(fused).double()
    s = gc.FullGrad(model)(X, target=0)
    expected = scaled(torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)) + scaled(
        torch.tensor([[0.0, 0.5], [0.5, 0.5]], dtype=torch.float64)
    )
    torch.testing.assert_close(s[0], expected, rtol=1e-12, atol=1e-12)
    assert s.shape == (1, 2, 2)


def test_a_module_called_twice_counts_twice():
    """One conv applied twice is the same function as two copies of it: the same picture."""

    class Twice(nn.Module):
        def __init__(self, second: nn.Module | None = None):
            super().__init__()
            torch.manual_seed(5)
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.again = second
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            x = torch.relu((self.again or self.conv)(x))
            return self.fc(x.mean(dim=(2, 3)))

    shared = Twice().eval()
    copies = Twice().eval()
    copies.again = copy.deepcopy(copies.conv)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gc.FullGrad(shared)(x, 1), gc.FullGrad(copies)(x, 1))


def test_one_forward_pass_of_its_own_and_one_backward_pass(tiny, tiny_input, monkeypatch):
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(tiny) as counts:
        s = gc.FullGrad(tiny)(tiny_input, target=[0, 1, 2])
    assert counts == [2] and grads == [1]  # the shared pass (no gradient), then its own
    assert s.shape == (3, 8, 8) and (s >= 0).all()


# --------------------------------------------------------------------------------------------
# Against pytorch-grad-cam
# --------------------------------------------------------------------------------------------


def library_full_grad(model: nn.Module, x: torch.Tensor, targets) -> torch.Tensor:
    from pytorch_grad_cam import FullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    twin = copy.deepcopy(model).eval()
    with FullGrad(twin, []) as cam:
        return torch.from_numpy(cam(x, [ClassifierOutputTarget(int(t)) for t in targets]))


def unfused(model: nn.Module) -> nn.Module:
    """A copy with every ``BatchNormAct2d`` split into ``BatchNorm2d`` and its dropout and activation."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BatchNormAct2d):
                bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
                bn.load_state_dict(child.state_dict(), strict=False)
                setattr(module, name, nn.Sequential(bn, child.drop, child.act))
    return model.eval()


def test_equals_pytorch_grad_cam_on_resnet34(resnet34):
    """Measured: correlation 1.00000 for both images."""
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(96))
    ours = gc.FullGrad(resnet34.module)(x)
    targets = resnet34.module(x).argmax(dim=1)
    assert min(correlations(gc.normalize(ours), library_full_grad(resnet34.module, x, targets))) >= 0.99


def test_equals_pytorch_grad_cam_on_efficientnet_cat_dog(efficientnet, cat_dog_x):
    """Measured: correlation 1.00000 with the library on the split copy (0.42 on the model itself,
    where the library finds no bias at all); our picture is the same on both."""
    model = efficientnet.module
    split = unfused(model)
    assert not any(isinstance(m, BatchNormAct2d) for m in split.modules())
    ours = gc.FullGrad(model)(cat_dog_x, target=243)
    torch.testing.assert_close(gc.FullGrad(split)(cat_dog_x, target=243), ours, rtol=1e-5, atol=1e-5)
    assert correlations(gc.normalize(ours), library_full_grad(split, cat_dog_x, [243]))[0] >= 0.99
