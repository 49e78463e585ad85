"""Deconvnet (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014)."""

from __future__ import annotations

import torch

from .base import InputExplainer, Needs, Pass

__all__ = ["Deconvnet"]


class Deconvnet(InputExplainer):
    r"""The class score sent back to the pixels the way a deconvolutional network would.

    Where backpropagation passes a gradient through a ReLU only where its forward input was
    positive, the deconvnet passes its positive part wherever it arrives:

    .. math::
        R^{l} = \max(R^{l+1}, 0)

    The forward input's sign is forgotten, so the picture depends on the image only through the
    max-pooling switches: it shows patterns the units respond to, much the same for every class.
    In a network without max pooling (EfficientNet-Lite0) nothing on the way back depends on the
    image at all, and every image gets the same picture for a class. Guided backpropagation keeps both gates. The rule is a hook on the
    autograd nodes of one forward pass, as for :class:`GuidedBackprop`.

    Example:
        >>> r = Deconvnet(model)(x, target=243)   # (N, 3, H, W), signed
    """

    def needs(self) -> Needs:
        return Needs(rules=frozenset({"deconvnet"}))

    def from_pass(self, p: Pass) -> torch.Tensor:
        return p.rectified["deconvnet"]
