"""What the contrastive layer methods share: Grad-CAM of a score other than the class's own logit.

Grad-CAM asks "what raises the score of class c?"; a contrastive method asks "what makes the
network say c rather than b?", the gradient of a difference of logits. The shared pass gives the
gradient of :math:`y^c` alone, so these methods make one forward and one backward pass of their
own (the logits of the shared pass choose the classes to contrast with), under the model's lock.
"""

from __future__ import annotations

import torch

from ..hooks import capture_outputs
from .base import LayerExplainer, Needs, Pass, Result, check_outputs, weighted_sum

__all__ = ["ContrastCAM"]


class ContrastCAM(LayerExplainer):
    """Grad-CAM with the gradient of :meth:`score` (one scalar per image) in place of ``y^c``'s."""

    def needs(self) -> Needs:
        return Needs()

    def score(self, logits: torch.Tensor, p: Pass) -> torch.Tensor:
        """``(N,)``: what each image's map explains, from its ``logits`` (part of the graph)."""
        raise NotImplementedError

    def from_pass(self, p: Pass) -> Result:
        with torch.enable_grad():
            # The input asks for gradients so that the layers' outputs do, even in a frozen model;
            # the model gets a clone, as in the shared pass (an in-place first ReLU works).
            leaf = p.x.detach().requires_grad_(True)
            with capture_outputs(self.model, self.layers) as outputs:
                logits = self.model(leaf.clone())
            check_outputs(outputs, self.layers)
            # Images do not interact in eval mode: the gradient of the sum is each image's own.
            grads = torch.autograd.grad(self.score(logits, p).sum(), [outputs[layer] for layer in self.layers])
        activations = {layer: outputs[layer].detach() for layer in self.layers}
        weights = {layer: g.mean(dim=(2, 3)) for layer, g in zip(self.layers, grads)}
        maps = {layer: weighted_sum(weights[layer], activations[layer]) for layer in self.layers}
        return Result(maps, p.logits, p.targets, weights, activations)
