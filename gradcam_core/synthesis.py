r"""Activation maximization: the picture that excites a class, or one channel of a layer, the most.

DeepVis (Yosinski et al., "Understanding Neural Networks Through Deep Visualization", ICML
workshop 2015) starts from noise and climbs the gradient of a unit's activation with respect to
the input pixels. Plain ascent gives high-frequency patterns no person recognizes; the picture
must be kept natural. This follows Olah et al. ("Feature Visualization", Distill 2017):

* the picture is parameterized in **Fourier space**, each frequency scaled by :math:`1/f`, so that
  a step of the same size moves low frequencies more than high ones;
* its colours are **decorrelated**: the parameters live in the principal axes of ImageNet's colour
  correlations, mapped back to RGB, then squashed into [0, 1] by a sigmoid;
* each step sees the picture **jittered, scaled and rotated** a little at random (transformation
  robustness), so that nothing that works only at one exact position survives;
* a ReLU that cuts a whole picture's gradient lets through the part that would raise its input
  (Olah et al.'s "redirected" ReLU), so a channel that is silent on the grey start can still wake up.

The objective is the class's logit (``target``) or the mean of one channel of a layer
(``layer``, ``channel``). Only the picture's parameters receive gradients
(``torch.autograd.grad`` through node hooks, removed after each step); each step runs in eval mode under the model's lock, which is released
between steps so that other users' explanations go on. The same seed gives the same picture.

Example:
    >>> clf = gc.load_model("efficientnet_lite0")
    >>> goldfish = synthesis.visualize(clf, target=1)                  # (3, 224, 224) in [0, 1]
    >>> unit = synthesis.visualize(clf, layer="layer4", channel=7)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .classifier import Classifier
from .hooks import (
    capture_activation_outputs,
    capture_outputs,
    check_layers,
    exclusive_eval,
    rectified_gradients,
)

__all__ = ["DEFAULT_STEPS", "objective_value", "visualize"]

#: Steps of gradient ascent: about 9 s for 224x224 on EfficientNet-Lite0 with two CPU cores.
DEFAULT_STEPS = 128

# The square root of ImageNet's colour correlation matrix (Olah et al.'s Lucid): parameters along its
# columns come out as natural colour combinations.
_COLOUR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR_CORRELATION = _COLOUR_CORRELATION / _COLOUR_CORRELATION.norm(dim=0).max()
_LEARNING_RATE = 0.05
# The picture's contrast per unit of parameter: Adam's steps have a fixed size, so this sets how far
# 128 steps can move the picture from grey (at 4 the colours stay muted, at 8 a goldfish is orange).
_GAIN = 8.0
# Transformation robustness: padding and two jitters (pixels of a 224x224 picture, scaled with its
# side), scales and rotations (degrees) to pick from.
_PAD, _JITTER, _FINE_JITTER = 16, 8, 4
_REFERENCE_SIDE = 224
_SCALES = (1.0, 0.975, 1.025, 0.95, 1.05)
_ANGLES = tuple(range(-5, 6))


def visualize(
    clf: Classifier,
    target: int | None = None,
    layer: str | None = None,
    channel: int | None = None,
    steps: int = DEFAULT_STEPS,
    size: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The ``(3, size, size)`` picture in [0, 1] that drives ``target``'s logit, or ``channel`` of
    ``layer``, as high as ``steps`` steps of regularized gradient ascent can.

    Args:
        clf: the classifier; its ``mean`` and ``std`` normalize the picture as the model expects.
        target: a class index; or leave it ``None`` and give ``layer`` and ``channel``.
        size: the picture's side; by default the classifier's input size.
        seed: the random start and the random transformations; the same seed, the same picture.
        progress: called as ``progress(step, steps)``; an exception raised there stops the ascent.

    Raises:
        ValueError: neither or both objectives, a class or channel out of range, an unknown layer.
    """
    if (target is None) == (layer is None):
        raise ValueError("Give a class (target) or a layer and a channel, not both.")
    if target is not None and not 0 <= target < len(clf.categories):
        raise ValueError(f"Class {target} is out of range: {clf.name} has {len(clf.categories)} classes.")
    if layer is not None:
        check_layers(clf.module, [layer])
        if channel is None or channel < 0:
            raise ValueError("Give the channel of the layer to excite, a number from 0.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    side = size or clf.input_size[0]
    generator = torch.Generator().manual_seed(seed)
    spectrum = _initial_spectrum(side, generator)
    optimizer = torch.optim.Adam([spectrum], lr=_LEARNING_RATE)
    for step in range(1, steps + 1):
        spectrum.grad = _ascent_gradient(clf, spectrum, side, generator, target, layer, channel)
        optimizer.step()
        if progress:
            progress(step, steps)
    return _picture(spectrum.detach(), side)[0].detach()


def objective_value(
    clf: Classifier, pictures: torch.Tensor, target: int | None = None, layer: str | None = None,
    channel: int | None = None,
) -> torch.Tensor:
    """The objective on ``(N, 3, H, W)`` pictures in [0, 1]: the mean over the batch of ``target``'s logit,
    or of ``channel``'s mean activation in ``layer``. Differentiable; under the model's lock, in eval mode."""
    mean = torch.tensor(clf.mean).view(1, 3, 1, 1)
    std = torch.tensor(clf.std).view(1, 3, 1, 1)
    x = (pictures - mean) / std
    with exclusive_eval(clf.module), torch.enable_grad():
        if target is not None:
            return clf.module(x)[:, target].mean()
        with capture_outputs(clf.module, [layer]) as captured:
            clf.module(x)
        activations = captured[layer]
        if channel >= activations.shape[1]:
            raise ValueError(f"{layer!r} has {activations.shape[1]} channels; channel {channel} does not exist.")
        return activations[:, channel].mean()


def _ascent_gradient(
    clf: Classifier, spectrum: torch.Tensor, side: int, generator: torch.Generator, target: int | None,
    layer: str | None, channel: int | None,
) -> torch.Tensor:
    """The gradient of minus the objective on a transformed picture with respect to ``spectrum``,
    every ReLU's backward pass redirected where it would cut a whole sample's gradient."""
    with exclusive_eval(clf.module), torch.enable_grad(), capture_activation_outputs(clf.module) as activations:
        value = objective_value(clf, _transformed(_picture(spectrum, side), generator), target, layer, channel)
        return rectified_gradients(-value, spectrum, activations, rule="redirected")


def _initial_spectrum(side: int, generator: torch.Generator) -> torch.Tensor:
    """Small random Fourier coefficients, ``(1, 3, side, side // 2 + 1, 2)`` (real and imaginary)."""
    shape = (1, 3, side, side // 2 + 1, 2)
    return (0.01 * torch.randn(shape, generator=generator)).requires_grad_(True)


def _picture(spectrum: torch.Tensor, side: int) -> torch.Tensor:
    """Fourier coefficients -> a ``(1, 3, side, side)`` picture in [0, 1]: 1/f scaling, inverse FFT,
    decorrelated colours back to RGB, sigmoid."""
    fy = torch.fft.fftfreq(side).view(-1, 1)
    fx = torch.fft.rfftfreq(side).view(1, -1)
    frequency = torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / side)
    scale = (1.0 / frequency) / side  # a flat spectrum of unit amplitude, whatever the side
    coefficients = torch.view_as_complex(spectrum) * scale
    decorrelated = torch.fft.irfft2(coefficients, s=(side, side), norm="ortho") * math.sqrt(side) * _GAIN
    rgb = torch.einsum("ij,njhw->nihw", _COLOUR_CORRELATION, decorrelated)
    return torch.sigmoid(rgb)


def _transformed(picture: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pad, jitter, scale, rotate and jitter again, each drawn from ``generator``; same size out."""
    side = picture.shape[-1]

    def scaled(pixels: int) -> int:
        return max(1, round(pixels * side / _REFERENCE_SIDE))

    padded = F.pad(picture, [scaled(_PAD)] * 4, mode="constant", value=0.5)
    padded = _jitter(padded, scaled(_JITTER), generator)
    scale = _SCALES[int(torch.randint(len(_SCALES), (1,), generator=generator))]
    angle = math.radians(_ANGLES[int(torch.randint(len(_ANGLES), (1,), generator=generator))])
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]])
    grid = F.affine_grid(theta, list(padded.shape), align_corners=False)
    turned = F.grid_sample(padded, grid, padding_mode="border", align_corners=False)
    turned = _jitter(turned, scaled(_FINE_JITTER), generator)
    offset = (turned.shape[-1] - side) // 2
    return turned[..., offset:offset + side, offset:offset + side]


def _jitter(picture: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    dy, dx = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    return torch.roll(picture, shifts=(dy, dx), dims=(-2, -1))
