"""Extremal perturbation (Fong, Patrick and Vedaldi, "Understanding Deep Networks via Extremal
Perturbations and Smooth Masks", ICCV 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import InputExplainer, Pass, Progress
from .perturbation import Tally, check_batch_size, chunks
from .rise import check_count

__all__ = ["ExtremalPerturbation"]


class ExtremalPerturbation(InputExplainer):
    r"""The smooth mask of a given area that keeps the class score highest, the rest blurred.

    The mask :math:`m \in [0, 1]^{H \times W}` is made smooth by construction: parameters
    :math:`\bar m` on a grid every ``step`` pixels, each spread by a kernel :math:`g_\sigma` (flat
    within :math:`\sigma / 2` of its grid point, then falling off like a Gaussian) and combined by a
    smooth maximum (a softmax-weighted mean, temperature 1/20), scaled so that all parameters at 1
    give the mask 1 everywhere:

    .. math::
        m(u) = \operatorname{smax}_i \, g_\sigma(u - u_i) \, \bar m_i \,/\,
        \operatorname{smax}_i \, g_\sigma(u - u_i)

    Where :math:`m(u) = 1` the picture is kept, where it is 0 it is blurred with a Gaussian of
    :math:`\sigma_{\max}` (20 pixels at 224, in proportion otherwise; 8 levels in between,
    interpolated). The "preserve" game maximizes the class logit of the perturbed picture, with the
    area held to :math:`a` by the ranking loss on the sorted mask values against the vector
    :math:`r_a` of :math:`(1 - a) HW` zeros then :math:`a HW` ones:

    .. math::
        m_a = \arg\max_m \; y^c(m \otimes x) - \lambda \, \lVert \operatorname{vecsort}(m) - r_a \rVert^2 / HW

    by ``steps`` of gradient ascent with momentum 0.9 (step ``learning_rate``) on :math:`\bar m`
    (clamped to [0, 1], starting from all ones), :math:`\lambda` growing geometrically from 300 to
    300 x 16, as in the paper's TorchRay schedule compressed to fewer steps. The map is the mask
    itself: 1 on the region that suffices, 0 elsewhere; not a score per pixel. TorchRay also flips
    the picture every other step; this does not, so the mask answers for the picture as given.
    ``step`` and :math:`\sigma` scale with the picture: 1/32 and 3/32 of its side (7 and 21 pixels
    at 224), at least 1 pixel.

    One forward and one backward pass per step and image: slow (the default 100 steps, TorchRay's
    800 compressed, take about 10 s for EfficientNet-Lite0 at 224 on one CPU core).
    ``batch_size`` images are optimized together; each gets the mask it gets alone, up to float
    rounding.

    Example:
        >>> m = ExtremalPerturbation(model, area=0.1, steps=100)(x, target=243)   # (N, H, W) in [0, 1]
    """

    slow = True
    levels = 8
    coldness = 20.0
    momentum = 0.9
    area_weight = 300.0
    area_weight_growth = 16.0

    def __init__(self, model: nn.Module, area: float = 0.1, steps: int = 100, learning_rate: float = 0.05,
                 batch_size: int = 1, progress: Progress | None = None):
        super().__init__(model)
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not 0 < area < 1:
            raise ValueError(f"area (the share of the picture kept) must be in (0, 1), got {area!r}.")
        check_count("steps", steps)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}.")
        self.area, self.steps, self.learning_rate = float(area), steps, float(learning_rate)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def from_pass(self, p: Pass) -> torch.Tensor:
        n, _, height, width = p.x.shape
        smooth = _SmoothMask((height, width), p.x.device)
        masks = torch.zeros(n, height, width, dtype=p.x.dtype, device=p.x.device)
        tally = Tally(n * self.steps, self.progress)
        with torch.enable_grad():
            for chunk in chunks(n, self.batch_size):
                index = torch.arange(chunk.start, chunk.stop, device=p.x.device)
                masks[index] = self._optimize(p.x[index], p.targets[index], smooth, tally)
        return masks

    def _optimize(self, x: torch.Tensor, targets: torch.Tensor, smooth: _SmoothMask, tally: Tally) -> torch.Tensor:
        n, _, height, width = x.shape
        pyramid = _blur_pyramid(x, self.levels, 20.0 * min(height, width) / 224)
        kept = round(self.area * height * width)
        reference = torch.zeros(height * width, dtype=x.dtype, device=x.device)
        reference[height * width - kept:] = 1
        parameters = torch.ones(n, *smooth.grid, dtype=x.dtype, device=x.device)
        velocity = torch.zeros_like(parameters)
        for t in range(self.steps):
            parameters.requires_grad_(True)
            mask = smooth(parameters)
            logits = self.model(_perturb(pyramid, mask))
            reward = logits.gather(1, targets[:, None])[:, 0]
            weight = self.area_weight * self.area_weight_growth ** (t / max(self.steps - 1, 1))
            ranking = ((mask.flatten(1).sort(dim=1).values - reference) ** 2).mean(dim=1)
            (gradient,) = torch.autograd.grad((reward - weight * ranking).sum(), parameters)
            # SGD with momentum and the same dampening (TorchRay's), as ascent
            velocity = self.momentum * velocity + (1 - self.momentum) * gradient
            parameters = (parameters.detach() + self.learning_rate * velocity).clamp(0, 1)
            tally.advance(n)
        with torch.no_grad():
            return smooth(parameters)


class _SmoothMask:
    """The smooth maximum of kernels on a grid, as a gather: each pixel looks at the grid points
    within a few steps of its own cell."""

    def __init__(self, size: tuple[int, int], device: torch.device):
        height, width = size
        self.step = max(1, round(min(height, width) / 32))
        self.sigma = max(1.0, 3 * min(height, width) / 32)
        self.radius = 1 + math.ceil(self.sigma / self.step)
        self.grid = (math.ceil(height / self.step), math.ceil(width / self.step))
        offsets = torch.arange(-self.radius, self.radius + 1)
        axes = []
        for side, cells in zip(size, self.grid):
            u = torch.arange(side)
            neighbour = u[:, None] // self.step + offsets  # (side, 2r + 1) grid indices
            distance = u[:, None] + 0.5 - (neighbour + 0.5) * self.step
            axes.append((neighbour.clamp(-1, cells), distance))
        (rows, dy), (columns, dx) = axes
        distance = torch.sqrt(dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2)  # (H, W, K, K)
        kernel = torch.exp(-2 * (distance / self.sigma - 0.5).clamp(min=0) ** 2)
        # grid points beyond the edge are padding: index 0 of a grid padded with one zero all round
        padded_width = self.grid[1] + 2
        index = (rows[:, None, :, None] + 1) * padded_width + (columns[None, :, None, :] + 1)
        self.kernel = kernel.reshape(height, width, -1).to(device)
        self.index = index.reshape(height, width, -1).to(device)
        # the smooth maximum of kernels that overlap is below 1: divide by its value with every
        # parameter at 1, so that such a mask keeps the whole picture
        self.scale = self._pool(torch.ones(1, *self.grid, device=device))[0]

    def __call__(self, parameters: torch.Tensor) -> torch.Tensor:
        """``(n, h, w)`` grid parameters -> ``(n, H, W)`` masks in [0, 1]."""
        mask = self._pool(parameters) / self.scale.to(parameters.dtype)
        # clamped to [0, 1] (the ratio can pass 1 by a hair), the gradient let through: starting
        # from all ones, a plain clamp would stop every gradient
        return mask - (mask - mask.clamp(0, 1)).detach()

    def _pool(self, parameters: torch.Tensor) -> torch.Tensor:
        padded = F.pad(parameters, (1, 1, 1, 1)).flatten(1)
        spread = self.kernel.to(parameters.dtype) * padded[:, self.index]
        return (spread * torch.softmax(ExtremalPerturbation.coldness * spread, dim=-1)).sum(dim=-1)


def _blur_pyramid(x: torch.Tensor, levels: int, max_sigma: float) -> torch.Tensor:
    """``(levels, n, C, H, W)``: level ``l`` blurred with ``max_sigma (1 - l / (levels - 1))``; the last is ``x``."""
    out = []
    for level in range(levels):
        sigma = max_sigma * (1 - level / (levels - 1))
        out.append(_gaussian_blur(x, sigma) if sigma > 0 else x)
    return torch.stack(out)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    for weight, padding in ((kernel.view(1, 1, -1, 1), (0, 0, radius, radius)),
                            (kernel.view(1, 1, 1, -1), (radius, radius, 0, 0))):
        x = F.conv2d(F.pad(x, padding, mode="replicate"), weight.expand(channels, 1, *weight.shape[2:]),
                     groups=channels)
    return x


def _perturb(pyramid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each pixel from the pyramid level its mask value names, interpolated between two levels."""
    levels = pyramid.shape[0]
    position = mask[:, None] * (levels - 1)  # (n, 1, H, W)
    low = position.detach().floor().clamp(max=levels - 2)
    frac = position - low
    low = low.long().expand(-1, pyramid.shape[2], -1, -1)
    stacked = pyramid.permute(1, 0, 2, 3, 4)  # (n, levels, C, H, W)
    below = stacked.gather(1, low[:, None]).squeeze(1)
    above = stacked.gather(1, (low + 1)[:, None]).squeeze(1)
    return (1 - frac) * below + frac * above
