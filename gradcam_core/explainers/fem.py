"""FEM, the Feature Explanation Method (Fuad et al., "Features understanding in 3D CNNs for
actions recognition in video", IPTA 2020)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .base import LayerExplainer, Pass

__all__ = ["FEM"]


class FEM(LayerExplainer):
    r"""Each channel weighed by how much of it stands out: the share of its cells above ``k`` sigma.

    A channel's cells that exceed its own mean by ``k`` standard deviations (over the map,
    population standard deviation) are its "salient" ones; the channel's weight is their share:

    .. math::
        w_k = \frac{1}{Z} \sum_{i,j} \big[A^k_{ij} > \mu_k + k\,\sigma_k\big], \qquad
        L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    No gradient and no class: a channel counts in proportion to how many strong, outlying
    responses it has, which favours channels that fire on a part of the picture rather than
    everywhere. A constant channel has none and gets weight 0. As pytorch-grad-cam's ``FEM``.

    Example:
        >>> r = FEM(model, layers=["layer4"], k=2)(x)
        >>> r.weights["layer4"]              # (N, 512), each in [0, 1)
    """

    uses_gradients = False

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, k: float = 2.0):
        super().__init__(model, layers)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
            raise ValueError(f"k must be a finite number of standard deviations, got {k!r}.")
        self.k = float(k)

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        a = p.activations[layer]
        mean = a.mean(dim=(2, 3), keepdim=True)
        std = a.std(dim=(2, 3), correction=0, keepdim=True)
        return (a > mean + self.k * std).to(a.dtype).mean(dim=(2, 3))
