"""GradientShap (Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions",
NeurIPS 2017; the expected-gradients form of captum's ``GradientShap``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import InputExplainer, Pass, Progress
from .paths import (
    BASELINES,
    baseline,
    check_baseline,
    check_count,
    check_seed,
    check_share,
    input_gradients,
)
from .perturbation import Tally, check_batch_size, chunks

__all__ = ["GradientShap"]


class GradientShap(InputExplainer):
    r"""Integrated Gradients in expectation: random baselines, random points on the path, noise.

    Each of ``samples`` draws picks a baseline :math:`x'_j` from ``baselines``, a point
    :math:`\alpha_j \sim U(0, 1)` on the path and, with ``noise`` above 0, Gaussian noise
    :math:`\varepsilon_j \sim \mathcal{N}(0, \sigma^2)`, :math:`\sigma = \text{noise} \cdot (\max x - \min x)`
    (SmoothGrad's); then

    .. math::
        \tilde x_j = x + \varepsilon_j, \qquad
        \phi^c = \frac{1}{n} \sum_{j=1}^{n} (\tilde x_j - x'_j) \odot
        \frac{\partial y^c}{\partial x}\big(\alpha_j \tilde x_j + (1 - \alpha_j) x'_j\big)

    which approximates the SHAP values of a model that is linear between the baselines and the
    picture: their sum tends to :math:`y^c(x) - \mathbb{E}_{x'}[y^c(x')]`. One gradient pass per
    sample and image (``passes``), ``batch_size`` at a time.

    ``baselines`` is a sequence of names, ``"black"`` (pixel value 0 before the model's
    normalization, see :class:`~.integrated_gradients.IntegratedGradients`) and ``"blur"`` (the
    picture strongly blurred), drawn with equal chances; or a tensor of baselines
    ``(B, C, H, W)`` (or one ``(C, H, W)``) shared by every image, in the model's input space. The
    draws come from ``seed`` alone, the same for every image, so a batch item equals that image
    explained alone. The shared pass gives the targets.

    Example:
        >>> m = GradientShap(model, samples=25, baselines=("black", "blur"))(x, target=243)   # (N, 3, H, W)
    """

    slow = True

    def __init__(self, model: nn.Module, samples: int = 25,
                 baselines: Sequence[str] | torch.Tensor = BASELINES, noise: float = 0.0, seed: int = 0,
                 batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model)
        self.samples = check_count(samples, "samples")
        if isinstance(baselines, torch.Tensor):
            baselines = check_baseline(baselines, "baselines")
            if baselines.dim() not in (3, 4):
                raise ValueError(f"baselines must be a tensor (B, C, H, W) or (C, H, W), got {tuple(baselines.shape)}.")
            self.baselines = baselines if baselines.dim() == 4 else baselines[None]
        elif (isinstance(baselines, Sequence) and not isinstance(baselines, str) and baselines
              and all(isinstance(name, str) and name in BASELINES for name in baselines)):
            self.baselines = tuple(baselines)
        else:
            raise ValueError(f"baselines must be a sequence of {' and '.join(map(repr, BASELINES))}, or a tensor "
                             f"(B, C, H, W); got {baselines!r}.")
        self.noise = check_share(noise, "noise")
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress
        #: Gradient passes per image.
        self.passes = self.samples

    def from_pass(self, p: Pass) -> torch.Tensor:
        x, n = p.x, p.x.shape[0]
        if isinstance(self.baselines, torch.Tensor):
            try:  # (N, B, C, H, W) views of the one set of baselines
                starts = self.baselines.to(x).expand(n, -1, *x.shape[1:])
            except RuntimeError:
                raise ValueError(f"baselines of shape {tuple(self.baselines.shape)} do not broadcast to the "
                                 f"input's {tuple(x.shape[1:])}.") from None
        else:
            starts = torch.stack([baseline(p.model, x, name) for name in self.baselines], dim=1)
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        which = torch.randint(starts.shape[1], (self.samples,), generator=generator, device=x.device)
        alphas = torch.rand(self.samples, generator=generator, dtype=x.dtype, device=x.device)
        noise = torch.randn((self.samples, *x.shape[1:]), generator=generator, dtype=x.dtype, device=x.device)
        sigma = self.noise * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))
        total = torch.zeros_like(x)
        tally = Tally(n * self.samples, self.progress)
        for chunk in chunks(n * self.samples, self.batch_size):
            index = torch.arange(chunk.start, chunk.stop, device=x.device)
            image, sample = index // self.samples, index % self.samples
            noisy = x[image] + sigma[image].view(-1, 1, 1, 1) * noise[sample] if self.noise else x[image]
            start = starts[image, which[sample]]
            alpha = alphas[sample].view(-1, 1, 1, 1)
            gradients = input_gradients(p.model, alpha * noisy + (1 - alpha) * start, p.targets[image])
            total.index_add_(0, image, (noisy - start) * gradients)
            tally.advance(len(chunk))
        return total / self.samples
