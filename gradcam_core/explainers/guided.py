"""Guided Backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
Net", ICLR 2015 workshop) and Guided Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

import torch

from ..maps import gate
from .base import InputExplainer, Needs, Pass, Result
from .grad_cam import GradCAM

__all__ = ["GuidedBackprop", "GuidedGradCAM"]


class GuidedBackprop(InputExplainer):
    r"""The input gradient of the class score, with ReLU's backward pass made "guided".

    Each ReLU (and ReLU6) passes back only positive gradients, and only where its input was
    positive:

    .. math::
        R^{l} = \mathbb{1}[x^{l} > 0] \cdot \max(R^{l+1}, 0)

    The result is a high-resolution picture of the edges that raise the score, but it is hardly
    class-discriminative: the maps of two classes look alike. The rule is a hook on the autograd
    nodes of one forward pass (:func:`~gradcam_core.hooks.rectified_gradients`), so the model's
    modules are never changed and in-place ReLUs called twice per block (torchvision's ResNet) work.

    Example:
        >>> g = GuidedBackprop(model)(x, target=243)    # (N, 3, H, W), signed
        >>> picture = to_image(g[0])                      # centred on grey, for display
    """

    def needs(self) -> Needs:
        return Needs(rules=frozenset({"guided"}))

    def from_pass(self, p: Pass) -> torch.Tensor:
        return p.rectified["guided"]


class GuidedGradCAM(GradCAM):
    r"""Guided backpropagation times the upsampled Grad-CAM map, per layer.

    .. math::
        \text{Guided Grad-CAM}^c = R^c_{\text{guided}} \odot \mathrm{upsample}(L^c_{\text{Grad-CAM}})

    Class-discriminative like Grad-CAM, at the input's resolution like guided backpropagation.
    One forward pass serves both: a plain backward pass to the layers gives Grad-CAM, then a
    guided backward pass to the input reuses the same graph.

    Example:
        >>> r = GuidedGradCAM(model, layers=["layer4"])(x, target=243)
        >>> r.maps["layer4"].shape       # (N, 3, H, W); r.guided and r.cams hold the two factors
    """

    def needs(self) -> Needs:
        return super().needs() | Needs(rules=frozenset({"guided"}))

    def from_pass(self, p: Pass) -> Result:
        cams = super().from_pass(p)
        guided = p.rectified["guided"]
        maps = {name: gate(guided, m) for name, m in cams.maps.items()}
        return Result(maps, cams.logits, cams.targets, cams.weights, cams.activations, guided=guided, cams=cams.maps)
