"""What the path-gradient methods share: baselines, checks, and input gradients of batches of copies.

Integrated Gradients, SmoothGrad and GradientShap take the gradient of the class score at many
changed copies of the picture (points on a path from a baseline, noisy copies), ``batch_size``
copies a pass, after the shared pass and under the model's lock. A ``progress`` callback hears
``progress(done, total)`` in single-image gradient passes after each batch (see
:class:`~.perturbation.Tally`); each of these methods says how many passes one image costs in its
``passes`` attribute, so a method that wraps another (SmoothGrad) can count them too.

A baseline is a picture in the model's input space: ``"black"`` (pixel value 0 before the model's
normalization, found in the module's :data:`NORMALIZATION` attribute), ``"blur"`` (the picture
strongly blurred), a number, or a tensor that broadcasts to the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import class_scores

__all__ = [
    "BASELINES",
    "NORMALIZATION",
    "baseline",
    "black",
    "blur",
    "check_baseline",
    "check_count",
    "check_seed",
    "check_share",
    "input_gradients",
]

#: The attribute where a module keeps its input normalization, ``(mean, std)`` per channel of
#: RGB values in [0, 1]; :func:`gradcam_core.load_model` sets it on every model it builds.
NORMALIZATION = "input_normalization"

#: The baselines that are named rather than given.
BASELINES = ("black", "blur")

#: The Gaussian blur's standard deviation, as a share of the picture's longer side: 1/10 of it
#: leaves colour blobs and no edge or texture.
BLUR_SIGMA = 0.1


def black(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(1, C, 1, 1)``: pixel value 0 in ``model``'s input space, ``(0 - mean) / std``.

    A module without the :data:`NORMALIZATION` attribute is taken to see raw values: 0 then.
    """
    normalization = getattr(model, NORMALIZATION, None)
    if normalization is None:
        return torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
    mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for v in normalization)
    return (0 - mean) / std


def blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``x`` Gaussian-blurred, channel by channel (``sigma`` in pixels, by default a tenth of the
    longer side), its edges padded with their own values.

    Blurring commutes with a per-channel normalization, so it may be applied in the input space.
    """
    sigma = BLUR_SIGMA * max(x.shape[-2:]) if sigma is None else sigma
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def check_baseline(value: object, option: str = "baseline") -> str | float | torch.Tensor:
    """``value`` if it names or is a baseline; a ``ValueError`` naming ``option`` otherwise."""
    if isinstance(value, str):
        if value not in BASELINES:
            raise ValueError(f"{option} must be {' or '.join(map(repr, BASELINES))}, a number or a tensor; "
                             f"got {value!r}.")
        return value
    if isinstance(value, torch.Tensor):
        if value.dim() > 4 or not value.is_floating_point():
            raise ValueError(f"{option} must be a floating-point tensor that broadcasts to the input (N, C, H, W), "
                             f"got {value.dtype} of shape {tuple(value.shape)}.")
        return value.detach()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{option} must be {' or '.join(map(repr, BASELINES))}, a number or a tensor; got {value!r}.")


def baseline(model: nn.Module, x: torch.Tensor, value: str | float | torch.Tensor,
             option: str = "baseline") -> torch.Tensor:
    """The ``(N, C, H, W)`` baseline that ``value`` (checked by :func:`check_baseline`) names for ``x``."""
    if isinstance(value, str):
        b = black(model, x) if value == "black" else blur(x)
    else:
        b = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:
        return b.expand(x.shape)
    except RuntimeError:
        raise ValueError(f"{option} of shape {tuple(b.shape)} does not broadcast to the input's "
                         f"{tuple(x.shape)}.") from None


def check_count(value: object, option: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{option} must be an integer of at least {least}, got {value!r}.")
    return value


def check_share(value: object, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{option} must be a number of at least 0 (a share of the input's range), got {value!r}.")
    return float(value)


def check_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}.")
    return value


def input_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``d y^{c_i} / d inputs_i`` for each copy ``i``: one forward and one backward pass.

    The model sees a copy of the leaf, as in the shared pass (an in-place first activation
    works), and only the input gets a gradient, so no parameter's ``.grad`` is touched.
    """
    with torch.enable_grad():
        leaf = inputs.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(class_scores(model(leaf.clone()), targets), leaf)
    return gradient
