"""ShapleyCAM (Cai, "CAMs as Shapley Value-based Explainers", arXiv 2025)."""

from __future__ import annotations

import torch

from ..hooks import capture_outputs
from .base import (
    LayerExplainer,
    Needs,
    Pass,
    Result,
    check_outputs,
    class_scores,
    weighted_sum,
)

__all__ = ["ShapleyCAM"]


class ShapleyCAM(LayerExplainer):
    r"""Grad-CAM's weights with a second-order correction: the gradient minus half the Hessian
    times the activation, averaged over each map.

    Each channel's weight approximates the Shapley value of the layer's activations taken as
    players, to second order in a Taylor expansion of the score around them:

    .. math::
        w_k^c = \frac{1}{Z} \sum_{i,j} \Big(\frac{\partial y^c}{\partial A}
            - \frac{1}{2}\,\frac{\partial^2 y^c}{\partial A^2} A\Big)^k_{ij}, \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    The Hessian-vector product is a second ``torch.autograd.grad`` through the graph of the
    first (made with ``create_graph=True``), one per layer, after a forward pass of its own; the
    shared pass's gradients have no such graph. Where the network after the layer is piecewise
    linear (ReLU, ReLU6, max pooling, convolutions, BatchNorm in eval mode, a linear head) its
    second derivative is zero almost everywhere: the product vanishes (autograd either returns
    zeros or finds the gradient not to depend on ``A`` at all, and both count as zero, as in
    pytorch-grad-cam) and ShapleyCAM equals Grad-CAM. It differs after smooth activations
    (SiLU, GELU, the sigmoid gates of squeeze-and-excitation).

    Example:
        >>> r = ShapleyCAM(model, layers=["layer4"])(x, target=243)
        >>> r.weights["layer4"]              # (N, 512): Grad-CAM's on a ReLU network
    """

    families = ("CNN",)
    refusal = (
        "it needs the second derivative of the score, which fused attention does not give. Grad-CAM and "
        "the other layer methods explain its tokens."
    )

    def needs(self) -> Needs:
        return Needs()

    def from_pass(self, p: Pass) -> Result:
        leaf = p.x.detach().requires_grad_(True)
        with torch.enable_grad():
            with capture_outputs(p.model, self.layers) as captured:
                # a copy of the leaf: a model that changes its input in place still works
                logits = p.model(leaf.clone())
            check_outputs(captured, self.layers)
            score = class_scores(logits, p.targets)
            gradients = torch.autograd.grad(score, [captured[layer] for layer in self.layers], create_graph=True)
            maps, weights, activations = {}, {}, {}
            for i, (layer, g) in enumerate(zip(self.layers, gradients)):
                a = captured[layer]
                hvp = None
                if g.requires_grad:  # else the gradient does not depend on A: the product is zero
                    (hvp,) = torch.autograd.grad(g, a, grad_outputs=a.detach(), allow_unused=True,
                                                 retain_graph=i < len(self.layers) - 1)
                second = torch.zeros_like(g) if hvp is None else hvp
                weights[layer] = (g - 0.5 * second).detach().mean(dim=(2, 3))
                activations[layer] = a.detach()
                maps[layer] = weighted_sum(weights[layer], activations[layer])
        return Result(maps, p.logits, p.targets, weights, activations)
