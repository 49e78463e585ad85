"""Eigen-CAM (Muhammad and Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020)."""

from __future__ import annotations

import torch

from .base import LayerExplainer, Pass

__all__ = ["EigenCAM"]


class EigenCAM(LayerExplainer):
    r"""The layer's activations projected on their first principal component; no class, no gradient.

    Seen as ``h * w`` points in a ``K``-dimensional space (one per position), the activations,
    centred, are :math:`M = U \Sigma V^T`; the map is the projection on the first right singular
    vector:

    .. math::
        L = \mathrm{ReLU}\big((A - \bar A)\, v_1\big)

    A principal component has no sign of its own; it is chosen so that the map correlates
    positively with the channel-summed activation, so the same input always gives the same map.
    The map is the same for every class: it shows what the layer sees most, not what the class
    needs (``target`` still sets ``Result.targets``).

    Example:
        >>> r = EigenCAM(model, layers=["layer4"])(x)
        >>> r.maps["layer4"]          # (N, 7, 7), identical for any target
    """

    uses_gradients = False

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, None]:
        a = p.activations[layer]
        n, k, h, w = a.shape
        points = a.flatten(2).transpose(1, 2)  # (N, h*w, K)
        centred = points - points.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
        projection = (centred.double() @ vh[:, 0, :, None]).squeeze(2)  # (N, h*w)
        summed = points.sum(dim=2).double()
        agreement = ((projection - projection.mean(1, keepdim=True)) * (summed - summed.mean(1, keepdim=True))).sum(1)
        sign = torch.where(agreement < 0, -1.0, 1.0).to(projection)
        return (sign[:, None] * projection).to(a.dtype).view(n, h, w).clamp(min=0), None
