"""XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation
of CNNs", BMVC 2020)."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["XGradCAM"]


class XGradCAM(LayerExplainer):
    r"""Grad-CAM with the gradient averaged where the channel is active, not uniformly.

    .. math::
        w_k^c = \frac{\sum_{i,j} A^k_{ij}\, \partial y^c / \partial A^k_{ij}}{\sum_{i,j} A^k_{ij}},
        \qquad L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    The weights are chosen so that the map satisfies two axioms, sensitivity and conservation, as
    nearly as possible (0 for a channel whose activations sum to 0). At a layer followed by global
    average pooling and a linear layer the gradient is constant over the map, and XGrad-CAM equals
    Grad-CAM exactly.

    Example:
        >>> r = XGradCAM(model, layers=["layer4"])(x, target=243)
    """

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        a, g = p.activations[layer], p.gradients[layer]
        mass = a.sum(dim=(2, 3))
        return torch.where(mass != 0, (a * g).sum(dim=(2, 3)) / torch.where(mass != 0, mass, 1.0), 0.0)
