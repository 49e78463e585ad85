"""HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", arXiv 2020)."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["HiResCAM"]


class HiResCAM(LayerExplainer):
    r"""The gradient times the activation, element by element, summed over channels.

    .. math::
        L^c = \mathrm{ReLU}\Big(\sum_k \frac{\partial y^c}{\partial A^k} \odot A^k\Big)

    Grad-CAM averages the gradient first; when the layer is followed by more than pooling, that
    average can light up positions the score does not depend on. HiResCAM does not average, so
    for a network that ends in a linear layer on the flattened maps its map is exactly each
    position's contribution to the score. At a layer followed by global average pooling and a
    linear layer it equals Grad-CAM.

    Example:
        >>> r = HiResCAM(model, layers=["layer4"])(x, target=243)
    """

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, None]:
        a, g = p.activations[layer], p.gradients[layer]
        return (g * a).sum(dim=1).clamp(min=0), None
