"""Grad-CAM++ (Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-Based Visual Explanations
for Deep Convolutional Networks", WACV 2018)."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["GradCAMPlusPlus", "plus_plus_weights"]


class GradCAMPlusPlus(LayerExplainer):
    r"""Grad-CAM with each position's gradient weighted, so that several objects all count.

    Grad-CAM averages the gradient over the map, so a large object outweighs a small one. Grad-CAM++
    gives each position its own weight :math:`\alpha^{kc}_{ij}`. With the exponential of the score
    (the paper's Eq. 19), the second and third derivatives are powers of the first,
    :math:`g = \partial y^c / \partial A^k`, and:

    .. math::
        \alpha^{kc}_{ij} = \frac{g_{ij}^2}{2 g_{ij}^2 + \sum_{a,b} A^k_{ab}\, g_{ij}^3}, \qquad
        w_k^c = \sum_{i,j} \alpha^{kc}_{ij}\, \mathrm{ReLU}(g_{ij}), \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    with :math:`\alpha = 0` where the denominator is 0. At a layer followed by global average
    pooling and a linear layer, :math:`w_k^c = \mathrm{ReLU}(w_k) / (2 + w_k \bar{A^k})`.

    Example:
        >>> r = GradCAMPlusPlus(model, layers=["layer4"])(x, target=243)
        >>> r.maps["layer4"], r.weights["layer4"]        # (N, 7, 7), (N, K)
    """

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        g = p.gradients[layer]
        g2 = g.pow(2)
        return plus_plus_weights(p.activations[layer], g, g2, g2 * g)


def plus_plus_weights(a: torch.Tensor, g: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` Grad-CAM++ weights from ``A`` and the first three powers of the gradient (or their means)."""
    denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)
    return (alpha * g.clamp(min=0)).sum(dim=(2, 3))
