"""Guided Backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
Net", ICLR 2015 workshop) and Guided Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

import torch
from torch import nn

from ..hooks import capture_activation_outputs, capture_outputs, exclusive_eval, guided_gradients
from ..maps import upsample
from .base import Result, Target, as_batch, check_outputs, class_scores, resolve_targets
from .grad_cam import GradCAM

__all__ = ["GuidedBackprop", "GuidedGradCAM"]


class GuidedBackprop:
    r"""The input gradient of the class score, with ReLU's backward pass made "guided".

    Each ReLU (and ReLU6) passes back only positive gradients, and only where its input was
    positive:

    .. math::
        R^{l} = \mathbb{1}[x^{l} > 0] \cdot \max(R^{l+1}, 0)

    The result is a high-resolution picture of the edges that raise the score, but it is hardly
    class-discriminative: the maps of two classes look alike. The rule is applied through
    gradient hooks on the tensors of one forward pass, so the model's modules are never changed
    and in-place ReLUs called twice per block (torchvision's ResNet) work.

    Example:
        >>> g = GuidedBackprop(model)(x, target=243)    # (N, 3, H, W), signed
        >>> picture = normalize(g)                        # into [0, 1] for display
    """

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """``(N, 3, H, W)`` guided gradients of the target scores with respect to ``x``."""
        x = as_batch(x).detach().requires_grad_(True)
        with exclusive_eval(self.model), torch.enable_grad():
            with capture_activation_outputs(self.model) as relu_outputs:
                logits = self.model(x.clone())  # a copy: the model may change its input in place
            targets = resolve_targets(target, logits)
            return guided_gradients(class_scores(logits, targets), x, relu_outputs)


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

    def __call__(self, x: torch.Tensor, target: Target = None) -> Result:
        x = as_batch(x).detach().requires_grad_(True)
        with exclusive_eval(self.model), torch.enable_grad():
            with capture_outputs(self.model, self.layers) as activations, capture_activation_outputs(
                self.model
            ) as relu_outputs:
                logits = self.model(x.clone())  # a copy: the model may change its input in place
            check_outputs(activations, self.layers)
            targets = resolve_targets(target, logits)
            score = class_scores(logits, targets)
            gradients = torch.autograd.grad(
                score, [activations[name] for name in self.layers], retain_graph=True
            )
            guided = guided_gradients(score, x, relu_outputs)
        weights = self._alphas(gradients)
        cams = self._result(activations, weights, logits, targets)
        size = tuple(x.shape[-2:])
        maps = {name: guided * upsample(cams.maps[name], size).unsqueeze(1) for name in self.layers}
        return Result(
            maps, cams.logits, targets, weights, cams.activations, guided=guided, cams=cams.maps
        )
