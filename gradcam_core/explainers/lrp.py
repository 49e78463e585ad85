"""Layer-wise relevance propagation (Bach et al., "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation", PLOS ONE 2015), with zennit's rules
(Anders et al., "Software for Dataset-wide XAI: From Local Explanations to Global Insights with
Zennit, CoRelAy, and ViRelAy", arXiv 2021)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.layer import Sum
from zennit.rules import Epsilon
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import Linear

from .base import InputExplainer, Needs, Pass

__all__ = ["LRP", "RULES", "canonical_copy"]

#: The rule sets :class:`LRP` offers (zennit's composites), by the name of its ``rule`` option.
RULES = ("epsilon", "alpha_beta", "epsilon_plus_flat")
#: zennit's default stabilizer of the denominators of the rules other than epsilon.
STABILIZER = 1e-6


class LRP(InputExplainer):
    r"""The class score passed back layer by layer, each layer sharing out what it received.

    Relevance starts as the score, :math:`R = y^c` at the class's output, and each linear or
    convolutional layer hands its outputs' relevance to its inputs in proportion to what each
    input contributed, :math:`z_{ij} = x_i w_{ij}`. The ``"epsilon"`` rule (LRP-:math:`\varepsilon`):

    .. math::
        R_i = \sum_j \frac{x_i w_{ij}}{\varepsilon + \sum_{i'} x_{i'} w_{i'j} + b_j}\, R_j

    (:math:`\varepsilon` takes the sign of the denominator; it must be above 0). Without biases and as
    :math:`\varepsilon \to 0` nothing is lost on the way: the picture's relevance adds up to
    :math:`y^c`. ``"alpha_beta"`` is zennit's ``EpsilonAlpha2Beta1``: the convolutions share out
    the positive contributions with weight :math:`\alpha = 2` and the negative ones with
    :math:`\beta = 1`, :math:`R_i = \sum_j (2\, z^+_{ij} / \sum z^+_j - z^-_{ij} / \sum z^-_j) R_j`,
    the dense layers keep :math:`\varepsilon`; ``"epsilon_plus_flat"`` is zennit's
    ``EpsilonPlusFlat``: :math:`z^+` at the convolutions, :math:`\varepsilon` at the dense layers
    and the flat rule (every input alike) at the first layer. ReLU and ReLU6 pass relevance on
    unchanged; average pooling and the sums of skip connections share it in proportion to their
    inputs. ``epsilon`` is the :math:`\varepsilon` of the dense (and, for ``"epsilon"``, every) layer.

    The rules need a canonical network: each BatchNorm merged into the convolution before it, and
    each skip connection's addition a module that can share relevance (torchvision's ResNet blocks,
    timm's EfficientNet blocks). That work is done on a copy of the model (:func:`canonical_copy`),
    so the caller's model, its parameters, hooks and flags, is never touched. Returns
    ``(N, 3, H, W)``; one forward and one backward pass through the copy.

    Example:
        >>> r = LRP(model, rule="epsilon_plus_flat")(x, target=243)     # (N, 3, H, W)
        >>> r.sum(dim=(1, 2, 3))                                       # close to y^c
    """

    families = ("CNN",)
    refusal = (
        "its rules here cover convolutions, linear layers and batch norm, not attention, layer norm or "
        "GELU. The attention methods and Grad-CAM explain a transformer."
    )

    def __init__(self, model: nn.Module, rule: str = "epsilon", epsilon: float = 1e-6):
        super().__init__(model)
        if rule not in RULES:
            raise ValueError(f"rule must be {', '.join(map(repr, RULES))}, got {rule!r}.")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < math.inf:
            raise ValueError(f"epsilon must be a number above 0 (it keeps 0 / 0 out), got {epsilon!r}.")
        self.rule, self.epsilon = rule, float(epsilon)

    def needs(self) -> Needs:
        return Needs()

    def composite(self):
        # zennit's stabilizer of the other rules (1e-6), or epsilon if smaller: epsilon -> 0 then
        # conserves the relevance at the poolings and sums too.
        stabilizer = min(self.epsilon, STABILIZER)
        if self.rule == "alpha_beta":
            return EpsilonAlpha2Beta1(epsilon=self.epsilon, stabilizer=stabilizer)
        if self.rule == "epsilon_plus_flat":
            return EpsilonPlusFlat(epsilon=self.epsilon, stabilizer=stabilizer)
        return LayerMapComposite(layer_map=layer_map_base(stabilizer) + [(Linear, Epsilon(epsilon=self.epsilon))])

    def from_pass(self, p: Pass) -> torch.Tensor:
        canonical = canonical_copy(p.model)
        # The relevance starts as the class's logit: seeded with y^c, the picture's adds up to it.
        chosen = F.one_hot(p.targets, p.logits.shape[1]).to(p.logits.dtype)
        with torch.enable_grad(), Gradient(canonical, self.composite()) as attributor:
            # zennit sets requires_grad on the tensor it is given: a copy of the caller's.
            logits, relevance = attributor(p.x.detach().clone(), lambda out: out * chosen)
        scale = p.logits.abs().amax()
        if not torch.allclose(logits.detach(), p.logits, rtol=1e-3, atol=1e-4 * float(scale)):
            raise ValueError("LRP: the canonical copy of this network does not compute what the network does, "
                             "so its relevance would not explain it.")
        return relevance.detach()


class _Residual(nn.Module):
    """``block(x) + x`` with the addition a zennit :class:`~zennit.layer.Sum` (relevance shared in
    proportion to each branch's contribution, not copied to both)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.canonizer_sum = Sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.canonizer_sum(torch.stack([self.block(x), x], dim=-1))


def canonical_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` in the form LRP's rules need, computing the same function.

    Each BatchNorm (in eval mode) is merged into the convolution or linear layer registered just
    before it, exactly, and left as the identity; torchvision's ResNet blocks get zennit's
    canonizers, and timm's EfficientNet blocks with a skip connection the wrapper
    ``block(x) + x`` through a :class:`~zennit.layer.Sum`. A BatchNorm after no such layer is a
    ``ValueError``. Copying ResNet34 takes 0.05 to 0.15 s, Lite0 0.04 s (one CPU core): no cache
    is kept, so a model changed between calls (training, sanity checks) is explained as it is.
    """
    canonical = copy.deepcopy(model).eval().requires_grad_(False)
    with torch.no_grad():
        previous = None
        for name, module in canonical.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if previous is None or _channels(previous) != module.num_features or module.running_var is None:
                    raise ValueError(f"LRP merges each BatchNorm into the layer before it; {name!r} follows none "
                                     "(or keeps no running statistics).")
                _merge(previous, module)
                previous = None
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                previous = module
    for canonizer in (ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()):
        canonizer.apply(canonical)
    for parent in list(canonical.modules()):
        for name, child in list(parent.named_children()):
            if getattr(child, "has_skip", False) and not isinstance(parent, _Residual):
                child.has_skip = False
                setattr(parent, name, _Residual(child))
    return canonical


def _channels(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _merge(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """``bn(layer(x))`` becomes ``layer'(x)``; ``bn`` then computes the identity."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0)
    bias = layer.bias if layer.bias is not None else torch.zeros_like(shift)
    layer.weight.copy_(layer.weight * scale.view(-1, *[1] * (layer.weight.dim() - 1)))
    layer.bias = nn.Parameter(bias * scale + shift, requires_grad=False)
    bn.running_mean.zero_()
    bn.running_var.fill_(1 - bn.eps)  # sqrt(var + eps) = 1: exactly the identity, eps and all
    if bn.weight is not None:
        bn.weight.fill_(1)
    if bn.bias is not None:
        bn.bias.zero_()
