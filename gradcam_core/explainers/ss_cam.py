"""SS-CAM (Wang, Naidu et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
Localization", arXiv 2020)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .base import Pass, Progress
from .paths import check_count, check_seed
from .perturbation import Tally
from .score_cam import ScoreCAM

__all__ = ["SSCAM"]


class SSCAM(ScoreCAM):
    r"""Score-CAM with each channel's mask scored through ``samples`` noisy copies, and averaged.

    The mask :math:`M^k` of :class:`ScoreCAM` (channel ``k`` upsampled, scaled to [0, 1]) gets
    Gaussian noise before it multiplies the input, and the class probabilities are averaged:

    .. math::
        w_k^c = \frac{1}{S} \sum_{s=1}^{S} \mathrm{softmax}\big(f(x \odot (M^k + \delta_s))\big)_c, \qquad
        \delta_s \sim \mathcal{N}(0, \sigma^2), \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    with torchcam's defaults (``samples`` S = 35, ``noise`` :math:`\sigma` = 2, the noise added to
    the mask at the input's resolution). The averaging smooths the weights of channels whose
    score hinges on a few pixels. As in :class:`ScoreCAM`, a constant channel masks nothing and
    gets weight 0 (torchcam scores it anyway, and weighs channels by a softmax over them).

    The noise :math:`\delta_s` is the same for every channel and every image (drawn from ``seed``):
    each channel's weight has the distribution it would have with noise of its own, a batch item
    equals the image alone, and only ``S`` noise pictures are drawn. ``S`` forward passes per
    varying channel and image, ``batch_size`` at a time.

    Example:
        >>> r = SSCAM(model, ["layer4"], samples=35, noise=2.0, seed=0)(x, target=243)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, samples: int = 35, noise: float = 2.0,
                 seed: int = 0, batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model, layers, batch_size=batch_size, progress=progress)
        self.samples = check_count(samples, "samples")
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
            raise ValueError(f"noise must be a standard deviation of at least 0, got {noise!r}.")
        self.noise, self.seed = float(noise), check_seed(seed)

    @property
    def passes_per_mask(self) -> int:
        return self.samples

    def score_masks(self, p: Pass, i: int, masks: torch.Tensor, tally: Tally) -> torch.Tensor:
        # Re-seeded for every batch of masks: every channel sees the same S noise pictures.
        generator = torch.Generator(device=masks.device).manual_seed(self.seed)
        total = torch.zeros(len(masks), dtype=p.logits.dtype, device=masks.device)
        for _ in range(self.samples):
            delta = torch.randn(masks.shape[-2:], generator=generator, device=masks.device, dtype=masks.dtype)
            total += super().score_masks(p, i, masks + self.noise * delta, tally)
        return total / self.samples
