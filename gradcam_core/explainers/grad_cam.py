"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import LayerExplainer, Pass

__all__ = ["GradCAM"]


class GradCAM(LayerExplainer):
    r"""Grad-CAM at any convolutional layers of any CNN, all from one forward and one backward pass.

    .. math::
        \alpha_k^c = \frac{1}{Z} \sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)

    with :math:`y^c` the pre-softmax score of class ``c``. With ``counterfactual=True`` the
    gradients are negated (Section 5.3 of the paper): the map shows the regions that, if removed,
    would raise the score, the evidence *against* the class.

    Gradients come from ``torch.autograd.grad`` on the hooked outputs, so no parameter's ``.grad``
    is written. At a layer followed by global average pooling and one linear layer,
    ``alpha_k^c = w_k^c / Z`` and Grad-CAM equals :class:`CAM` up to that constant.

    Example:
        >>> cam = GradCAM(model, layers=["layer1", "layer4"])
        >>> result = cam(x, target=243)          # 243: 'bull mastiff'
        >>> result.maps["layer4"].shape           # (N, 7, 7) for a 224x224 input to ResNet34
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, counterfactual: bool = False):
        super().__init__(model, layers)
        self.counterfactual = counterfactual

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        alphas = p.gradients[layer].mean(dim=(2, 3))
        return -alphas if self.counterfactual else alphas
