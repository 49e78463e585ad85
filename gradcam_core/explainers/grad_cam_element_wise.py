"""Element-wise Grad-CAM (Gildenblat and contributors, "PyTorch library for CAM methods",
pytorch-grad-cam, 2021)."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["GradCAMElementWise"]


class GradCAMElementWise(LayerExplainer):
    r"""Each channel's gradient-times-activation, rectified cell by cell before the channels are summed.

    .. math::
        L^c = \sum_k \mathrm{ReLU}\Big(\frac{\partial y^c}{\partial A^k} \odot A^k\Big)

    HiResCAM rectifies the sum over channels, so a channel that pushes the score down at a cell
    cancels one that pushes it up; here every positive contribution counts and none cancels it.
    At a layer followed by global average pooling and a linear layer, ``dy^c/dA^k = w_k^c / Z``
    and the map is :math:`\frac{1}{Z}\sum_k \mathrm{ReLU}(w_k^c A^k)`, where HiResCAM and Grad-CAM
    give :math:`\frac{1}{Z}\mathrm{ReLU}(\sum_k w_k^c A^k)`.

    Example:
        >>> r = GradCAMElementWise(model, layers=["layer4"])(x, target=243)
        >>> r.maps["layer4"].shape          # (N, 7, 7) for a 224x224 input to ResNet34
    """

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, None]:
        a, g = p.activations[layer], p.gradients[layer]
        return (g * a).clamp(min=0).sum(dim=1), None
