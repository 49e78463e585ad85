"""Saliency (Simonyan et al., "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", ICLR 2014 workshop)."""

from __future__ import annotations

import torch

from .base import InputExplainer, Needs, Pass

__all__ = ["Saliency"]


class Saliency(InputExplainer):
    r"""The plain gradient of the class score with respect to the input pixels.

    .. math::
        M^c = \frac{\partial y^c}{\partial x}

    It says which pixels, nudged, would change the score most. It is returned signed, per colour
    channel; the paper shows :math:`\max_{ch} |M^c_{ch}|`, the strongest channel at each pixel
    (see :meth:`strength`).

    Example:
        >>> g = Saliency(model)(x, target=243)     # (N, 3, H, W)
        >>> Saliency.strength(g)                    # (N, H, W), as the paper draws it
    """

    def needs(self) -> Needs:
        return Needs(input_gradient=True)

    def from_pass(self, p: Pass) -> torch.Tensor:
        return p.input_gradient

    @staticmethod
    def strength(gradient: torch.Tensor) -> torch.Tensor:
        """``max_ch |gradient|``: ``(N, C, H, W)`` -> ``(N, H, W)``, or ``(C, H, W)`` -> ``(H, W)``."""
        return gradient.abs().amax(dim=-3)
