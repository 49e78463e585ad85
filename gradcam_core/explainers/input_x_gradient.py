"""Input x Gradient (Shrikumar et al., "Not Just a Black Box: Learning Important Features Through
Propagating Activation Differences", arXiv 2016)."""

from __future__ import annotations

import torch

from .base import InputExplainer, Needs, Pass

__all__ = ["InputXGradient"]


class InputXGradient(InputExplainer):
    r"""The input gradient of the class score times the input, pixel by pixel and channel by channel.

    .. math::
        M^c = x \odot \frac{\partial y^c}{\partial x}

    The first-order share of each pixel in the score: for a linear model :math:`y^c = w^\top x + b`
    it is exactly :math:`w \odot x`, which adds up to :math:`y^c - b`. The pixels are the input as
    the model sees it, after its normalization, so a pixel at the dataset's mean colour counts 0.
    It needs nothing but the shared pass's input gradient: with ``saliency`` in one
    :func:`~gradcam_core.explain` call, both come from one forward and one backward pass.

    Example:
        >>> m = InputXGradient(model)(x, target=243)    # (N, 3, H, W), signed
        >>> m.sum(dim=1)                                 # (N, H, W): each pixel's share
    """

    def needs(self) -> Needs:
        return Needs(input_gradient=True)

    def from_pass(self, p: Pass) -> torch.Tensor:
        return p.x * p.input_gradient
