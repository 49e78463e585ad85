"""IS-CAM (Naidu, Wang et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations",
arXiv 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Pass, Progress
from .paths import check_count
from .perturbation import Tally
from .score_cam import ScoreCAM

__all__ = ["ISCAM"]


class ISCAM(ScoreCAM):
    r"""Score-CAM with each channel's mask scored at ``samples`` growing strengths, and averaged.

    The mask :math:`M^k` of :class:`ScoreCAM` is scaled by a coefficient that grows step by step,
    as the paper's Algorithm 1 accumulates it (and torchcam 0.5.0 implements it):

    .. math::
        c_s = \sum_{j=1}^{s} \frac{j}{S} = \frac{s(s+1)}{2S}, \qquad
        w_k^c = \frac{1}{S} \sum_{s=1}^{S} \mathrm{softmax}\big(f(x \odot c_s M^k)\big)_c, \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    Like integrated gradients, the score is gathered along a path that starts near the blank
    picture (:math:`c_1 = 1/S`) instead of at one point, so a channel that matters only once the
    picture is faint still counts. The coefficients pass 1 (the last is :math:`(S+1)/2`): the path
    goes beyond the masked image. As in :class:`ScoreCAM` a constant channel gets weight 0.
    ``S`` forward passes per varying channel and image, ``batch_size`` at a time; deterministic.

    Example:
        >>> r = ISCAM(model, ["layer4"], samples=10)(x, target=243)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, samples: int = 10, batch_size: int = 32,
                 progress: Progress | None = None):
        super().__init__(model, layers, batch_size=batch_size, progress=progress)
        self.samples = check_count(samples, "samples")

    @property
    def passes_per_mask(self) -> int:
        return self.samples

    def score_masks(self, p: Pass, i: int, masks: torch.Tensor, tally: Tally) -> torch.Tensor:
        total = torch.zeros(len(masks), dtype=p.logits.dtype, device=masks.device)
        coefficient = 0.0
        for s in range(self.samples):
            coefficient += (s + 1) / self.samples
            total += super().score_masks(p, i, coefficient * masks, tally)
        return total / self.samples
