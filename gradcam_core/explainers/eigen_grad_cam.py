"""Eigen-Grad-CAM (Gildenblat and contributors, "PyTorch library for CAM methods",
pytorch-grad-cam, 2021): Eigen-CAM (Muhammad and Yeasin, IJCNN 2020) on gradient times activation."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["EigenGradCAM"]


class EigenGradCAM(LayerExplainer):
    r"""The first principal component of gradient times activation: Eigen-CAM made class-specific.

    Seen as ``h * w`` points in ``K`` dimensions (one per position), the products
    :math:`G \odot A` (with :math:`G = \partial y^c / \partial A`), centred, are
    :math:`M = U \Sigma V^T`; the map is the projection on the first right singular vector:

    .. math::
        L^c = \mathrm{ReLU}\big((G \odot A - \overline{G \odot A})\, v_1\big)

    A principal component has no sign of its own (pytorch-grad-cam keeps whichever LAPACK
    returns, so its map may come out as the negative part). Here it is chosen so that the map
    correlates positively with :math:`\sum_k G^k \odot A^k`, HiResCAM's map before its ReLU:
    the component points the way the contributions to the score add up. Where Eigen-CAM shows
    what the layer sees most, this shows the main pattern of what the class takes from it.

    Example:
        >>> r = EigenGradCAM(model, layers=["layer4"])(x, target=243)
        >>> r.maps["layer4"].shape          # (N, 7, 7) for a 224x224 input to ResNet34
    """

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, None]:
        product = p.gradients[layer] * p.activations[layer]
        return _first_component(product, product.sum(dim=1)).clamp(min=0), None


def _first_component(a: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``(N, K, h, w)`` -> ``(N, h, w)``: each sample's positions projected on the first principal
    component of its channels, signed to correlate positively with ``reference`` ``(N, h, w)``."""
    n, _, h, w = a.shape
    points = a.flatten(2).transpose(1, 2).double()  # (N, h*w, K)
    centred = points - points.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None]).squeeze(2)  # (N, h*w)
    ref = reference.flatten(1).double()
    agreement = (projection * (ref - ref.mean(dim=1, keepdim=True))).sum(dim=1)
    sign = torch.where(agreement < 0, -1.0, 1.0).to(projection)
    return (sign[:, None] * projection).to(a.dtype).view(n, h, w)
