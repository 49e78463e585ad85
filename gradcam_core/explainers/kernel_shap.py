"""Kernel SHAP (Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS
2017), on superpixels."""

from __future__ import annotations

import math
from itertools import combinations

import torch

from .superpixels import SuperpixelExplainer

__all__ = ["KernelSHAP"]


class KernelSHAP(SuperpixelExplainer):
    r"""The Shapley value of each superpixel for the class logit, by a weighted linear regression.

    A coalition :math:`z \in \{0, 1\}^M` keeps the superpixels where it is 1 (the others go to 0
    in the model's input space, the mean colour of a normalized input, captum's baseline). The
    weights :math:`\phi` solve

    .. math::
        \min_\phi \sum_z \pi(z) \big(y^c(x_z) - y^c(x_\varnothing) - \phi^\top z\big)^2
        \quad \text{subject to} \quad \sum_j \phi_j = y^c(x) - y^c(x_\varnothing), \qquad
        \pi(z) = \frac{M - 1}{\binom{M}{|z|} \, |z| \, (M - |z|)}

    over the coalitions other than the empty and the full one, whose infinite kernel weight is
    the constraint. With every coalition (when ``samples`` reaches :math:`2^M - 2`) :math:`\phi`
    is exactly the Shapley values, so the weights add up to the logit's fall from the picture to
    the blank one. Otherwise ``samples`` coalitions are drawn from :math:`\pi` (a size with
    probability proportional to :math:`\frac{M - 1}{k (M - k)}`, then a subset of that size), each
    with its complement, and weighed equally. One forward pass per coalition and image, plus the
    blank picture; the unperturbed one is the shared pass's. The default 500 samples enumerate up
    to 8 superpixels and take about 14 s for EfficientNet-Lite0 at 224x224 (36 SLIC superpixels)
    on one CPU core.

    Example:
        >>> segments = superpixels(x)
        >>> phi = KernelSHAP(model, segments=segments[0], samples=500)(x, target=243)   # (N, H, W)
    """

    def coalitions(self, features: int) -> torch.Tensor:
        m = features
        empty = torch.zeros(1, m, dtype=torch.float64)
        if m == 1:
            return empty
        if self.samples >= 2**m - 2:
            rows = [[float(j in kept) for j in range(m)] for k in range(1, m) for kept in combinations(range(m), k)]
            return torch.cat([empty, torch.tensor(rows, dtype=torch.float64)])
        g = torch.Generator().manual_seed(self.seed)
        sizes = torch.arange(1, m, dtype=torch.float64)
        pairs = math.ceil(self.samples / 2)
        k = torch.multinomial((m - 1) / (sizes * (m - sizes)), pairs, replacement=True, generator=g) + 1
        ranks = torch.rand(pairs, m, generator=g).argsort(dim=1).argsort(dim=1)
        z = (ranks < k[:, None]).double()
        return torch.cat([empty, torch.stack([z, 1 - z], dim=1).reshape(-1, m)[:self.samples]])

    def fit(self, z: torch.Tensor, scores: torch.Tensor, full: float) -> torch.Tensor:
        m = z.shape[1]
        blank = scores[0]  # the first coalition is the empty one
        total = full - blank
        if m == 1:
            return total.reshape(1)
        z, scores = z[1:], scores[1:]
        sizes = z.sum(dim=1)
        if self.samples >= 2**m - 2:
            weights = (m - 1) / (torch.tensor([math.comb(m, int(s)) for s in sizes], dtype=z.dtype) * sizes * (m - sizes))
        else:
            weights = torch.ones_like(sizes)
        # the constraint eliminates the last weight: phi_M = total - sum of the others
        design = z[:, :-1] - z[:, -1:]
        target = scores - blank - z[:, -1] * total
        root = weights.sqrt()[:, None]
        phi = torch.linalg.pinv(root * design) @ (root[:, 0] * target)
        return torch.cat([phi, (total - phi.sum()).reshape(1)])
