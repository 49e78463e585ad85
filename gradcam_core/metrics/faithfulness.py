"""Faithfulness metrics: does the model's score depend on what a map says is important?

Model-agnostic: ``model`` is any classifier ``nn.Module``, ``x`` its input ``(N, C, H, W)`` (as the
model expects it, normalized), ``saliency`` one map per image ``(N, h, w)`` at any resolution
(upsampled to ``H x W`` here), ``target`` the classes as for the explainers. Scores are softmax
probabilities of ``target``. Every extra forward pass runs batched, without gradients, in eval mode
under the model's lock; the model is left as it was.

* **Deletion and insertion** (Petsiuk et al., "RISE", BMVC 2018): remove the most salient pixels
  first and watch the probability fall (a low area under the curve is faithful), or start from a
  blurred copy and put the most salient pixels back first (a high area is faithful).
* **Average Drop and Increase in Confidence** (Chattopadhyay et al., "Grad-CAM++", WACV 2018): the
  image seen only through the map.
* **Occlusion rank correlation** (Selvaraju et al., "Grad-CAM", ICCV 2017, Section 5.2): Spearman's
  rank correlation of the map with the occlusion map of the same image and class.

Pixel order: most salient first; pixels of equal salience (a map is 0 over large areas) go in
reading order, row by row and left to right, so a curve never depends on a sort's whims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..explainers.base import Target, as_batch, resolve_targets
from ..explainers.occlusion import Occlusion
from ..explainers.perturbation import check_batch_size, chunks
from ..hooks import exclusive_eval
from ..maps import normalize, upsample

__all__ = [
    "BLUR_KERNEL",
    "BLUR_SIGMA",
    "Curve",
    "average_drop",
    "blur",
    "deletion",
    "deletion_steps",
    "insertion",
    "occlusion_correlation",
    "rank_correlation",
    "salience_order",
]

#: RISE's insertion starts from the image blurred by this Gaussian kernel (size, sigma in pixels).
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve for each image.

    Attributes:
        fractions: ``(steps + 1,)`` the share of pixels removed (or inserted), 0 to 1.
        probabilities: ``(N, steps + 1)`` the class probability at each fraction.
        auc: ``(N,)`` the area under each curve (trapezoid rule over the fraction in [0, 1]).
    """

    fractions: torch.Tensor
    probabilities: torch.Tensor
    auc: torch.Tensor


def salience_order(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H*W)``: each image's pixel indices, most salient first, ties in reading order."""
    saliency = torch.as_tensor(saliency).detach().float()
    up = upsample(saliency, size).flatten(1)
    # Upsampling a constant map can leave float noise; a constant map keeps reading order.
    constant = saliency.flatten(1).amax(dim=1) == saliency.flatten(1).amin(dim=1)
    up[constant] = 0.0
    return torch.sort(up, dim=1, descending=True, stable=True).indices


def blur(x: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """RISE's blurred copy: each channel convolved with a ``kernel`` x ``kernel`` Gaussian (zero padding)."""
    offsets = torch.arange(kernel, dtype=x.dtype, device=x.device) - kernel // 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g2 = torch.outer(g, g) / torch.outer(g, g).sum()
    channels = x.shape[1]
    return F.conv2d(x, g2.expand(channels, 1, kernel, kernel), padding=kernel // 2, groups=channels)


def deletion(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: Target = None, steps: int = 100,
             baseline: float = 0.0, batch_size: int = 64) -> Curve:
    """Set the most salient pixels (all channels) to ``baseline`` in ``steps`` equal steps.

    ``baseline`` is in the model's input space: 0 is the mean colour of a normalized input. A
    faithful map makes the probability fall fast: a LOW area under the curve is better.

    Example:
        >>> curve = deletion(clf.module, x, result.maps["layer4"], target=243)
        >>> curve.auc          # (N,)
    """
    x = as_batch(x).detach()
    return _curve(model, x, x, torch.full_like(x, float(baseline)), saliency, target, steps, batch_size)


def insertion(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: Target = None, steps: int = 100,
              batch_size: int = 64) -> Curve:
    """Start from :func:`blur` of the image and put the most salient pixels back in ``steps`` steps.

    A faithful map brings the probability back fast: a HIGH area under the curve is better.

    Example:
        >>> insertion(clf.module, x, result.maps["layer4"], target=243).auc
    """
    x = as_batch(x).detach()
    return _curve(model, x, blur(x), x, saliency, target, steps, batch_size)


def _curve(model: nn.Module, x: torch.Tensor, start: torch.Tensor, finish: torch.Tensor, saliency: torch.Tensor,
           target: Target, steps: int, batch_size: int) -> Curve:
    """The probabilities as the pixels of ``finish`` replace those of ``start``, most salient first.

    Without a target, each image's class is its top-1 on ``x`` itself.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    check_batch_size(batch_size)
    n, _, height, width = x.shape
    _check_maps(saliency, n)
    pixels = height * width
    counts = torch.arange(steps + 1, device=x.device) * pixels // steps
    order = salience_order(saliency.to(x.device), (height, width))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(n, pixels))
    probabilities = torch.empty(n, steps + 1, device=x.device)
    with exclusive_eval(model), torch.no_grad():
        targets = resolve_targets(target, model(x))
        for i in range(n):
            for chunk in chunks(steps + 1, batch_size):
                revealed = (rank[i][None] < counts[chunk.start:chunk.stop, None]).view(-1, 1, height, width)
                images = torch.where(revealed, finish[i], start[i])
                probabilities[i, chunk.start:chunk.stop] = model(images).softmax(dim=1)[:, targets[i]]
    fractions = counts.float() / pixels
    return Curve(fractions.cpu(), probabilities.cpu(), torch.trapezoid(probabilities.cpu(), fractions.cpu(), dim=1))


def deletion_steps(x: torch.Tensor, saliency: torch.Tensor, fractions: Sequence[float], baseline: float = 0.0
                   ) -> torch.Tensor:
    """``(len(fractions), C, H, W)``: one image ``(1, C, H, W)`` with that share of its most salient
    pixels set to ``baseline``, as :func:`deletion` sees it.

    Example:
        >>> deletion_steps(x, result.maps["layer4"], [0.0, 0.1, 0.5])   # three pictures to show
    """
    x = as_batch(x).detach()[:1]
    _check_maps(saliency[:1], 1)
    height, width = x.shape[-2:]
    order = salience_order(saliency[:1].to(x.device), (height, width))[0]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(height * width, device=x.device)
    counts = torch.tensor([round(float(f) * height * width) for f in fractions], device=x.device)
    deleted = (rank[None] < counts[:, None]).view(-1, 1, height, width)
    return torch.where(deleted, torch.full_like(x[0], float(baseline)), x[0])


def average_drop(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: Target = None
                 ) -> tuple[float, float]:
    """``(average drop %, increase in confidence %)`` over the images of ``x``.

    Each image is multiplied by its map, min-max scaled to [0, 1] and upsampled; with ``Y`` the
    class probability on the image and ``O`` on the masked one, the drop is ``max(0, Y - O) / Y``
    averaged (in percent; lower is better) and the increase the percent of images where ``O > Y``
    (higher is better).

    Example:
        >>> drop, increase = average_drop(clf.module, x, result.maps["layer4"], target=243)
    """
    x = as_batch(x).detach()
    _check_maps(saliency, x.shape[0])
    masks = normalize(upsample(saliency.detach().float(), tuple(x.shape[-2:]))).to(x)
    with exclusive_eval(model), torch.no_grad():
        logits = model(x)
        targets = resolve_targets(target, logits)
        y = logits.softmax(dim=1).gather(1, targets[:, None])[:, 0]
        o = model(x * masks[:, None]).softmax(dim=1).gather(1, targets[:, None])[:, 0]
    drop = ((y - o).clamp(min=0) / y).mean().item() * 100
    increase = (o > y).float().mean().item() * 100
    return drop, increase


def occlusion_correlation(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor, target: Target = None,
                          occlusion: torch.Tensor | None = None, window: int = 32, stride: int = 16,
                          batch_size: int = 64) -> np.ndarray:
    """``(N,)`` Spearman's rank correlation of each map with the occlusion map of its image and class.

    ``occlusion`` ``(N, H, W)`` is computed with :class:`~gradcam_core.explainers.occlusion.Occlusion`
    (``window``, ``stride``) unless given, so that many maps of one image share one. NaN where a
    map is constant (a rank correlation is undefined).

    Example:
        >>> occlusion_correlation(clf.module, x, result.maps["layer4"], target=243)
        array([0.61])
    """
    x = as_batch(x).detach()
    _check_maps(saliency, x.shape[0])
    if occlusion is None:
        occlusion = Occlusion(model, window=window, stride=stride, batch_size=batch_size)(x, target)
    up = upsample(saliency.detach().float(), tuple(x.shape[-2:])).flatten(1).cpu().numpy()
    reference = occlusion.detach().float().flatten(1).cpu().numpy()
    return np.array([rank_correlation(a, b) for a, b in zip(up, reference)])


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two arrays of the same size (flattened); NaN when either is constant."""
    from scipy import stats  # half a second to import, and only this needs it: not on an app's first page

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def _check_maps(saliency: torch.Tensor, n: int) -> None:
    if not isinstance(saliency, torch.Tensor) or saliency.dim() != 3 or saliency.shape[0] != n:
        shape = tuple(saliency.shape) if isinstance(saliency, torch.Tensor) else type(saliency).__name__
        raise ValueError(f"Expected one (h, w) map per image, shape ({n}, h, w); got {shape}.")
