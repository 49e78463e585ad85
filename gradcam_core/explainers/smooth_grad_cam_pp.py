"""Smooth Grad-CAM++ (Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level
Visualization Technique for Deep Convolutional Neural Network Models", arXiv 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..hooks import capture_outputs
from .base import (
    LayerExplainer,
    Needs,
    Pass,
    Progress,
    Result,
    check_outputs,
    class_scores,
    weighted_sum,
)
from .grad_cam_plus_plus import plus_plus_weights
from .paths import check_count, check_seed, check_share
from .perturbation import Tally, check_batch_size, chunks

__all__ = ["SmoothGradCAMPlusPlus"]


class SmoothGradCAMPlusPlus(LayerExplainer):
    r"""Grad-CAM++ with the gradient's powers averaged over noisy copies of the picture (SmoothGrad).

    With :math:`g_s = \partial y^c / \partial A^k` at the copy :math:`x + \varepsilon_s`,
    :math:`\varepsilon_s \sim \mathcal{N}(0, \sigma^2)`, :math:`\sigma = \text{noise} \cdot (\max x - \min x)`
    and :math:`\overline{g^p} = \frac{1}{S} \sum_s g_s^p`:

    .. math::
        \alpha^{kc}_{ij} = \frac{\overline{g^2}_{ij}}{2\, \overline{g^2}_{ij}
            + \sum_{a,b} A^k_{ab}\, \overline{g^3}_{ij}}, \qquad
        w_k^c = \sum_{i,j} \alpha^{kc}_{ij}\, \mathrm{ReLU}(\overline{g}_{ij}), \qquad
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    :math:`A` is the clean picture's activation. As in torchcam, the numerator of :math:`\alpha` is
    the mean second power (the paper writes the first). Averaging over ``samples`` nearby pictures
    keeps what the gradients share; with ``noise=0`` it is :class:`GradCAMPlusPlus`. At a layer
    followed by global average pooling and a linear layer the gradient does not depend on the
    picture, so there the noise changes nothing.

    The noise is drawn from ``seed`` alone, the same draw scaled by each image's range (as
    :class:`SmoothGrad` does), so a batch item equals the image alone. One forward and one
    backward pass per copy, ``batch_size`` copies at a time.

    Example:
        >>> r = SmoothGradCAMPlusPlus(model, ["layer3"], samples=8, noise=0.15, seed=0)(x, target=243)
    """

    slow = True

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, samples: int = 4, noise: float = 0.15,
                 seed: int = 0, batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model, layers)
        self.samples = check_count(samples, "samples")
        self.noise = check_share(noise, "noise")
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def needs(self) -> Needs:
        return Needs(layers=frozenset(self.layers))

    def from_pass(self, p: Pass) -> Result:
        check_outputs(p.activations, self.layers)
        moments = self.mean_gradient_powers(p)
        weights = {layer: plus_plus_weights(p.activations[layer], *moments[layer]) for layer in self.layers}
        maps = {layer: weighted_sum(weights[layer], p.activations[layer]) for layer in self.layers}
        return Result(maps, p.logits, p.targets, weights, {layer: p.activations[layer] for layer in self.layers})

    def mean_gradient_powers(self, p: Pass) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Layer -> the means over the noisy copies of ``g``, ``g^2`` and ``g^3``, each ``(N, K, h, w)``."""
        x, n = p.x, p.x.shape[0]
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        noise = torch.randn((self.samples, *x.shape[1:]), generator=generator, dtype=x.dtype, device=x.device)
        sigma = self.noise * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))
        sums = {layer: [torch.zeros_like(p.activations[layer]) for _ in range(3)] for layer in self.layers}
        tally = Tally(n * self.samples, self.progress)
        for chunk in chunks(n * self.samples, self.batch_size):
            index = torch.arange(chunk.start, chunk.stop, device=x.device)
            image, sample = index // self.samples, index % self.samples
            copies = x[image] + sigma[image].view(-1, 1, 1, 1) * noise[sample]
            with torch.enable_grad():
                # The copies ask for gradients so that the layers' outputs do, even in a frozen model;
                # the model gets a clone, as in the shared pass (an in-place first ReLU works).
                leaf = copies.requires_grad_(True)
                with capture_outputs(self.model, self.layers) as outputs:
                    logits = self.model(leaf.clone())
                check_outputs(outputs, self.layers)
                grads = torch.autograd.grad(class_scores(logits, p.targets[image]),
                                            [outputs[layer] for layer in self.layers])
            for layer, g in zip(self.layers, grads):
                for power, total in enumerate(sums[layer], start=1):
                    total.index_add_(0, image, g.detach().pow(power))
            tally.advance(len(chunk))
        return {layer: tuple(total / self.samples for total in sums[layer]) for layer in self.layers}
