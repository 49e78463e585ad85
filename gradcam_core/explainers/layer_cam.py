"""LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 2021)."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["LayerCAM"]


class LayerCAM(LayerExplainer):
    r"""Each position weighed by its own positive gradient: sharp maps from the early layers too.

    .. math::
        L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\big(\partial y^c / \partial A^k\big) \odot A^k\Big)

    Grad-CAM's one weight per channel blurs the early layers, where a channel fires on the object
    and on the background alike; LayerCAM keeps only the positions whose gradient is positive.
    There are no channel weights (``Result.weights`` has no entry). At a layer followed by global
    average pooling and a linear layer it is ``ReLU(sum_k ReLU(w_k) A^k) / Z``.

    Example:
        >>> r = LayerCAM(model, layers=["layer1", "layer4"])(x, target=243)
    """

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, None]:
        a, g = p.activations[layer], p.gradients[layer]
        return (g.clamp(min=0) * a).sum(dim=1).clamp(min=0), None
