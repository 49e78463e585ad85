"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
Neural Networks", CVPR workshops 2020)."""

from __future__ import annotations

import torch

from ..maps import upsample
from .base import Pass
from .perturbation import PerturbationCAM, Tally, chunks

__all__ = ["ScoreCAM"]


class ScoreCAM(PerturbationCAM):
    r"""Each channel weighed by the class probability of the image seen through it: no gradient.

    Channel :math:`A^k`, upsampled to the input and scaled to [0, 1], masks the input; the
    channel's weight is the softmax probability of the class for the masked input:

    .. math::
        M^k = \frac{U(A^k) - \min U(A^k)}{\max U(A^k) - \min U(A^k)}, \qquad
        w_k^c = \mathrm{softmax}\big(f(x \odot M^k)\big)_c, \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    as in the authors' code (the mask multiplies the input in the model's input space). A channel
    that is constant masks nothing; it gets weight 0 without a forward pass. One forward pass per
    remaining channel and image, ``batch_size`` at a time: slow, but free of the gradient's noise
    and saturation.

    Example:
        >>> r = ScoreCAM(model, ["layer4"], batch_size=32, progress=lambda done, total: None)(x, 243)
    """

    #: Forward passes per mask (the smoothed and integrated variants score each mask several times).
    passes_per_mask = 1

    def passes(self, activations: torch.Tensor) -> int:
        return self.passes_per_mask * int(_varying(activations).sum())

    def score_channels(self, p: Pass, layer: str, tally: Tally) -> torch.Tensor:
        a = p.activations[layer]
        varying = _varying(a)
        weights = torch.zeros(a.shape[:2], dtype=p.logits.dtype, device=a.device)
        for i in range(a.shape[0]):
            channels = varying[i].nonzero().flatten()
            for chunk in chunks(len(channels), self.batch_size):
                ks = channels[chunk.start:chunk.stop]
                masks = upsample(a[i, ks], tuple(p.x.shape[-2:]))
                low = masks.amin(dim=(1, 2), keepdim=True)
                masks = (masks - low) / (masks.amax(dim=(1, 2), keepdim=True) - low)
                weights[i, ks] = self.score_masks(p, i, masks, tally)
        return weights

    def score_masks(self, p: Pass, i: int, masks: torch.Tensor, tally: Tally) -> torch.Tensor:
        """``(M,)``: the weight of each of the ``(M, H, W)`` masks in [0, 1] for image ``i``."""
        probabilities = self.model(p.x[i] * masks[:, None]).softmax(dim=1)
        tally.advance(len(masks))
        return probabilities[:, p.targets[i]]


def _varying(a: torch.Tensor) -> torch.Tensor:
    """``(N, K)``: whether each channel takes more than one value."""
    return a.amax(dim=(2, 3)) > a.amin(dim=(2, 3))
