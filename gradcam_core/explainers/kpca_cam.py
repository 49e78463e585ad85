"""KPCA-CAM (Karmani et al., "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using
Kernel-based Principal Component Analysis", arXiv 2024)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import LayerExplainer, Pass

__all__ = ["KERNELS", "KPCACAM"]

#: The kernels, as scikit-learn's ``KernelPCA`` defines them (``coef0 = 1``, ``degree = 3``).
KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")

# Up to this many positions a dense eigendecomposition is cheap; beyond, LOBPCG finds the one
# eigenvector needed in a fraction of the time (56x56 cells: 0.2 s instead of 19 s).
_DENSE_UP_TO = 1024


class KPCACAM(LayerExplainer):
    r"""Eigen-CAM with a kernel: the first kernel principal component of the layer's activations.

    The layer's ``n = h * w`` positions are points in ``K`` dimensions, centred. Their kernel
    matrix, centred in feature space, is :math:`\tilde K = (I - \tfrac{1}{n}\mathbf 1)\,K\,
    (I - \tfrac{1}{n}\mathbf 1)`; with :math:`\lambda_1, u_1` its largest eigenpair the map is
    each position's coordinate on the first kernel principal component:

    .. math::
        L = \mathrm{ReLU}\big(\sqrt{\max(\lambda_1, 0)}\; u_1\big)

    With the ``"linear"`` kernel this is Eigen-CAM's projection (up to its sign); the default ``"sigmoid"`` kernel,
    :math:`\tanh(\gamma\, a_p \cdot a_q + 1)` with :math:`\gamma = 1/K` unless ``gamma`` is
    given, lets the component follow a pattern that is not a straight line in channel space.
    As pytorch-grad-cam's ``KPCA_CAM``, which calls scikit-learn's ``KernelPCA``: the kernels
    are scikit-learn's, and the sign of :math:`u_1` is scikit-learn's (its entry of largest
    magnitude is positive). No gradient, no class.

    Example:
        >>> r = KPCACAM(model, layers=["layer4"], kernel="rbf")(x)
        >>> r.maps["layer4"].shape          # (N, 7, 7), the same for every target
    """

    uses_gradients = False

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, kernel: str = "sigmoid",
                 gamma: float | None = None):
        super().__init__(model, layers)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float))
                                  or not 0 < gamma < float("inf")):
            raise ValueError(f"gamma must be a positive number, or None for 1 / channels; got {gamma!r}.")
        self.kernel, self.gamma = kernel, gamma

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, None]:
        a = p.activations[layer]
        n, k, h, w = a.shape
        maps = [self._component(sample.reshape(k, h * w).T.double()) for sample in a]
        return torch.stack(maps).to(a.dtype).view(n, h, w).clamp(min=0), None

    def _component(self, points: torch.Tensor) -> torch.Tensor:
        """``(n, K)`` -> ``(n,)``: the coordinates on the first kernel principal component."""
        gram = _kernel(points - points.mean(dim=0), self.kernel, self.gamma)
        gram = gram - gram.mean(dim=0, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean()
        gram = (gram + gram.T) / 2  # exactly symmetric, as both eigensolvers assume
        if len(gram) <= _DENSE_UP_TO:
            values, vectors = torch.linalg.eigh(gram)
            value, vector = values[-1], vectors[:, -1]
        else:
            # a fixed start, so the same activations always give the same map
            generator = torch.Generator(device=gram.device).manual_seed(0)
            start = torch.rand(len(gram), 1, generator=generator, device=gram.device, dtype=gram.dtype)
            values, vectors = torch.lobpcg(gram, k=1, X=start, largest=True)
            value, vector = values[0], vectors[:, 0]
        vector = vector * vector[vector.abs().argmax()].sign()
        return vector * value.clamp(min=0).sqrt()


def _kernel(x: torch.Tensor, kernel: str, gamma: float | None) -> torch.Tensor:
    """scikit-learn's pairwise kernel of the rows of ``x`` with themselves."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    if kernel == "linear":
        return x @ x.T
    if kernel == "cosine":
        unit = x / x.norm(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)
        return unit @ unit.T
    if kernel == "rbf":
        return (-gamma * torch.cdist(x, x).square()).exp()
    if kernel == "poly":
        return (gamma * (x @ x.T) + 1.0) ** 3
    return torch.tanh(gamma * (x @ x.T) + 1.0)
