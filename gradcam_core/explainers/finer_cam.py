"""Finer-CAM (Zhang et al., "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
Explanation", CVPR 2025)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .base import Pass
from .contrast import ContrastCAM

__all__ = ["FinerCAM"]


class FinerCAM(ContrastCAM):
    r"""Grad-CAM of the class's score against its most similar classes: what sets it apart from them.

    The classes :math:`d_1 .. d_m` compared (``comparisons`` = m, 3 by default) are those whose
    logits are nearest the class's own, :math:`|y^{d} - y^c|` smallest, in the pass that is
    explained. Each difference is weighed by the probability :math:`p_d` (the softmax of the
    logits) of the class compared:

    .. math::
        S = \frac{\sum_j p_{d_j} \big(y^c - \alpha\, y^{d_j}\big)}{\sum_j p_{d_j}}, \qquad
        \alpha_k = \frac{1}{Z} \sum_{i,j} \frac{\partial S}{\partial A^k_{ij}}, \qquad
        L = \mathrm{ReLU}\Big(\sum_k \alpha_k A^k\Big)

    Grad-CAM of a bird's species lights up the whole bird, which every similar species shares;
    subtracting their scores leaves the marks that tell them apart. ``alpha`` = 0 is Grad-CAM,
    1 (the default) the full contrast. As in pytorch-grad-cam's ``FinerCAM`` (the authors' code)
    the weights :math:`p_d` are part of the score, so its gradient passes through them too. One
    forward and one backward pass of its own.

    Example:
        >>> r = FinerCAM(model, ["layer4"], comparisons=3, alpha=1.0)(x, target=243)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, comparisons: int = 3, alpha: float = 1.0):
        super().__init__(model, layers)
        if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
            raise ValueError(f"comparisons must be a positive number of classes, got {comparisons!r}.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise ValueError(f"alpha must be a number (0: Grad-CAM, 1: the full contrast), got {alpha!r}.")
        self.comparisons, self.alpha = comparisons, float(alpha)

    def score(self, logits: torch.Tensor, p: Pass) -> torch.Tensor:
        compared = self.compared(p)
        y = logits.gather(1, p.targets[:, None])
        weights = logits.softmax(dim=1).gather(1, compared)
        differences = y - self.alpha * logits.gather(1, compared)
        # 1e-9 as in the reference: the probabilities of far-off classes may underflow to 0.
        return (weights * differences).sum(dim=1) / (weights.sum(dim=1) + 1e-9)

    def compared(self, p: Pass) -> torch.Tensor:
        """``(N, m)``: each image's classes nearest its target in logit space, nearest first."""
        return self.nearest(p.logits, p.targets, self.comparisons)

    @staticmethod
    def nearest(logits: torch.Tensor, targets: torch.Tensor, comparisons: int) -> torch.Tensor:
        """``(N, m)``: the ``comparisons`` classes whose logits are nearest each target's, nearest first.

        Example:
            >>> r = FinerCAM(model, ["layer4"])(x, target=243)
            >>> FinerCAM.nearest(r.logits, r.targets, 3)     # the classes it was set against
        """
        if logits.shape[1] < 2:
            raise ValueError("Finer-CAM compares the class with others: the model needs at least two classes.")
        m = min(comparisons, logits.shape[1] - 1)
        distance = (logits - logits.gather(1, targets[:, None])).abs()
        distance = distance.scatter(1, targets[:, None], torch.inf)
        return distance.topk(m, dim=1, largest=False).indices
