"""The shapes data set: one filled shape on a cluttered background, with its mask and box.

Each image is drawn from its own random stream, ``numpy.random.default_rng([seed, index])``, so an
image depends only on ``(seed, index)``: ``generate(10, seed)`` starts with ``generate(3, seed)``,
and the dashboard's "new image" is ``render(1, seed=k)`` for a new ``k``. Classes cycle, sample
``i`` showing class ``(seed + i) % len(CLASSES)``, so any ``len(CLASSES)`` consecutive samples
hold every class once.

A picture is built in layers, each there to take a shortcut away from the classifier:

1. a gradient between two muted colours, so brightness and hue say nothing about the class;
2. a texture (a sine grating or smooth blotches), so edges are everywhere, not only on the object;
3. one to four thin distractor strokes (lines, polylines, arcs) that belong to no class, so "has
   a straight edge" or "has a curve" is not enough;
4. the object, filled with a colour chosen to stand out from the background beneath it (any
   colour, the strokes' colours included), 24 to 40 pixels across, anywhere as long as it is whole
   inside the picture, upright but tilted by up to 20 degrees;
5. pixel noise over everything.

Shapes are drawn at 4x and box-filtered down, so their edges are antialiased; the mask is the
pixels at least half covered by the object.

**The biased variant** (:func:`render_biased`) adds a spurious cue, as a watermark in a photo
collection: an 8x8 black-and-white tag near the corner farthest from the object, drawn before the
noise. Its pattern is one of five, one per class (:data:`CUE_PATTERNS`), and with probability
``bias`` it is the pattern of the picture's own class, otherwise one of the four others at
random. ``bias=0.2`` (one in five) makes the cue independent of the class: the fair set. The tag
fills one cell of the networks' 8x8 last layer exactly, and never touches the object, so its
mask is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..metrics import boxes_from_masks

__all__ = [
    "CHANCE_BIAS",
    "CLASSES",
    "CUE_PATTERNS",
    "CUE_SIZE",
    "IMAGE_SIZE",
    "MEAN",
    "STD",
    "BiasedBatch",
    "ShapesBatch",
    "generate",
    "generate_biased",
    "generate_with_boxes",
    "render",
    "render_backgrounds",
    "render_biased",
    "render_pairs",
    "to_rgb",
    "to_tensor",
]

#: Class names, indexed by label.
CLASSES = ("circle", "square", "triangle", "cross", "star")
#: Pictures are ``IMAGE_SIZE x IMAGE_SIZE`` RGB.
IMAGE_SIZE = 64
#: Per-channel normalization of RGB values in [0, 1], close to the data set's own statistics.
MEAN = (0.5, 0.5, 0.5)
STD = (0.2, 0.2, 0.2)

#: The side of the biased set's cue tag, in pixels: one cell of the 8x8 ``layer4``.
CUE_SIZE = 8
#: ``bias`` at which the cue says nothing about the class: one chance in ``len(CLASSES)``.
CHANCE_BIAS = 1 / len(CLASSES)


def _cue_patterns() -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:CUE_SIZE, 0:CUE_SIZE]
    # Bars two pixels wide survive the networks' first, stride-2 convolution.
    rings = np.maximum(abs(2 * x - CUE_SIZE + 1), abs(2 * y - CUE_SIZE + 1)) // 2
    return {
        "horizontal bars": (y // 2) % 2 == 0,
        "vertical bars": (x // 2) % 2 == 0,
        "checks": (x // 2 + y // 2) % 2 == 0,
        "diagonal bars": ((x + y) // 2) % 2 == 0,
        "rings": rings % 2 == 1,
    }


#: The cue's name -> ``(CUE_SIZE, CUE_SIZE)`` bool pattern (white where True, black elsewhere);
#: the ``k``-th goes with class ``CLASSES[k]``.
CUE_PATTERNS = _cue_patterns()

# Drawing at this many times the resolution, then averaging, antialiases the edges.
_SUPERSAMPLE = 4
# The object's circumradius in pixels: it spans from 3/8 to 5/8 of the picture's width.
_RADIUS_RANGE = (12.0, 20.0)
# The two objects' circumradius range in render_pairs: smaller, so that two fit side by side.
_PAIR_RADIUS_RANGE = (11.0, 15.0)
# Minimum RGB distance between the object's colour and the mean background beneath it.
_MIN_CONTRAST = 90.0
# How many distractor strokes a picture has, at least and at most.
_STROKES = (1, 4)
# Shapes stand upright, tilted by at most this angle either way (radians). Free rotation would
# make the classes take several minutes of CPU to learn instead of one.
_MAX_TILT = math.radians(20)


@dataclass(frozen=True)
class ShapesBatch:
    """Rendered shapes images with their ground truth.

    Attributes:
        pictures: ``(N, H, W, 3)`` uint8 RGB, what a person sees (and what a PNG stores).
        labels: ``(N,)`` long, indices into :data:`CLASSES`.
        masks: ``(N, H, W)`` bool, the object's pixels.
        boxes: ``(N, 4)`` long, ``(x0, y0, x1, y1)`` around each mask, ends exclusive
            (``mask[y0:y1, x0:x1]`` holds the object); see :mod:`gradcam_core.metrics`.
    """

    pictures: np.ndarray
    labels: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor

    @property
    def images(self) -> torch.Tensor:
        """``(N, 3, H, W)`` float tensor normalized for the shapes networks."""
        return to_tensor(self.pictures)


@dataclass(frozen=True)
class BiasedBatch(ShapesBatch):
    """:class:`ShapesBatch` pictures carrying the biased set's cue tag.

    Attributes:
        cues: ``(N,)`` long, the class whose pattern the tag shows (index into :data:`CUE_PATTERNS`).
        cue_masks: ``(N, H, W)`` bool, the tag's pixels.
    """

    cues: torch.Tensor
    cue_masks: torch.Tensor

    @property
    def agrees(self) -> torch.Tensor:
        """``(N,)`` bool: the tag shows the picture's own class."""
        return self.cues == self.labels


def render(n: int, seed: int) -> ShapesBatch:
    """Draw ``n`` pictures, deterministically from ``seed``, with labels, masks and boxes.

    Example:
        >>> batch = render(1, seed=7)
        >>> CLASSES[batch.labels[0]], batch.boxes[0].tolist()      # (x0, y0, x1, y1)
        ('triangle', [18, 5, 50, 36])
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    labels = [(seed + index) % len(CLASSES) for index in range(n)]
    drawn = [
        _draw(CLASSES[label], np.random.default_rng([seed, index])) for index, label in enumerate(labels)
    ]
    pictures = np.stack([picture for picture, _ in drawn])
    masks = torch.from_numpy(np.stack([mask for _, mask in drawn]))
    return ShapesBatch(pictures, torch.tensor(labels, dtype=torch.long), masks, boxes_from_masks(masks))


def render_biased(n: int, seed: int, bias: float = 0.95) -> BiasedBatch:
    """:func:`render`'s pictures, each with the cue tag; the tag agrees with the class with probability ``bias``.

    Picture ``i`` is ``render(n, seed)``'s picture ``i`` with a tag in the corner farthest from the
    object (same object, same clutter, same noise). Whether the tag agrees is drawn from a stream
    of its own, ``default_rng([seed, index, 2])``, so the same ``seed`` at another ``bias`` gives
    the same pictures with some tags changed.

    Example:
        >>> batch = render_biased(1000, seed=0, bias=0.95)
        >>> round(batch.agrees.float().mean().item(), 2), batch.cue_masks[0].sum().item()
        (0.95, 64)
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias is a probability, in [0, 1]; got {bias}.")
    labels = [(seed + index) % len(CLASSES) for index in range(n)]
    cues = [_cue_class(label, bias, np.random.default_rng([seed, index, 2])) for index, label in enumerate(labels)]
    drawn = [
        _draw(CLASSES[label], np.random.default_rng([seed, index]), cue=cue)
        for index, (label, cue) in enumerate(zip(labels, cues))
    ]
    pictures = np.stack([picture for picture, _, _ in drawn])
    masks = torch.from_numpy(np.stack([mask for _, mask, _ in drawn]))
    cue_masks = torch.from_numpy(np.stack([cue_mask for _, _, cue_mask in drawn]))
    return BiasedBatch(
        pictures,
        torch.tensor(labels, dtype=torch.long),
        masks,
        boxes_from_masks(masks),
        torch.tensor(cues, dtype=torch.long),
        cue_masks,
    )


def generate_biased(
    n: int, seed: int, bias: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, labels, masks, cue_masks)`` of :func:`render_biased`, ready for the model.

    ``bias`` is the share of pictures whose tag shows their own class; ``bias=0.2``
    (:data:`CHANCE_BIAS`) is the fair set, where tag and class are independent.

    Example:
        >>> images, labels, masks, cue_masks = generate_biased(8, seed=0, bias=0.2)
        >>> cue_masks.shape, bool((masks & cue_masks).any())
        (torch.Size([8, 64, 64]), False)
    """
    batch = render_biased(n, seed, bias)
    return batch.images, batch.labels, batch.masks, batch.cue_masks


def render_backgrounds(n: int, seed: int) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 pictures of clutter alone: the backgrounds of :func:`render`, no object.

    Training shows them as negatives for every class (see :func:`~gradcam_core.shapes.train`).
    Their random streams, ``default_rng([seed, index, 1])``, never meet those of :func:`render`.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    return np.stack(
        [
            _with_noise(_cluttered_background(rng), rng)
            for rng in (np.random.default_rng([seed, i, 1]) for i in range(n))
        ]
    )


def generate(n: int, seed: int, objects: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images ready for the model, their labels and their masks.

    Args:
        objects: 1 (:func:`render`), or 2 (:func:`render_pairs`: two shapes of different classes).

    Returns:
        ``images`` ``(n, 3, H, W)`` float, normalized by :data:`MEAN` and :data:`STD`;
        ``labels`` ``(n,)`` long, or ``(n, 2)`` with two objects; ``masks`` ``(n, H, W)`` bool, or
        ``(n, 2, H, W)``, one mask per object.

    Example:
        >>> images, labels, masks = generate(8, seed=0)
        >>> images.shape, masks.shape
        (torch.Size([8, 3, 64, 64]), torch.Size([8, 64, 64]))
        >>> generate(8, seed=0, objects=2)[2].shape
        torch.Size([8, 2, 64, 64])
    """
    if objects not in (1, 2):
        raise ValueError(f"Pictures hold one or two objects, not {objects}.")
    batch = render(n, seed) if objects == 1 else render_pairs(n, seed)
    return batch.images, batch.labels, batch.masks


def render_pairs(n: int, seed: int) -> ShapesBatch:
    """``n`` pictures of two shapes of different classes each, side by side, never touching.

    The shapes are smaller than :func:`render`'s (22 to 30 pixels across) so that two fit. Labels
    are ``(n, 2)``: picture ``i`` holds classes ``(seed + i) % 5`` and another, drawn from
    ``default_rng([seed, index, 3])``; masks ``(n, 2, H, W)`` and boxes ``(n, 2, 4)`` follow the
    labels' order. This is the Grad-CAM paper's class-discrimination setting (Section 5.1): which of
    the two does a map explain?

    Example:
        >>> batch = render_pairs(2, seed=0)
        >>> batch.labels.tolist(), batch.masks.shape
        ([[0, 3], [1, 2]], torch.Size([2, 2, 64, 64]))
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    drawn, labels = [], []
    for index in range(n):
        rng = np.random.default_rng([seed, index, 3])
        first = (seed + index) % len(CLASSES)
        pair = (first, (first + int(rng.integers(1, len(CLASSES)))) % len(CLASSES))
        drawn.append(_draw_pair([CLASSES[label] for label in pair], rng))
        labels.append(pair)
    pictures = np.stack([picture for picture, _ in drawn])
    masks = torch.from_numpy(np.stack([mask for _, mask in drawn]))
    boxes = boxes_from_masks(masks.flatten(0, 1)).view(n, 2, 4)
    return ShapesBatch(pictures, torch.tensor(labels, dtype=torch.long), masks, boxes)


def generate_with_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`generate` plus the ``(n, 4)`` ground-truth boxes ``(x0, y0, x1, y1)``, ends exclusive."""
    batch = render(n, seed)
    return batch.images, batch.labels, batch.masks, batch.boxes


def to_tensor(pictures: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` normalized float: ``(rgb / 255 - MEAN) / STD``.

    The same arithmetic as :meth:`~gradcam_core.models.Classifier.preprocess`, so a picture saved as
    PNG and preprocessed gives this very tensor.
    """
    x = torch.from_numpy(np.asarray(pictures, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def to_rgb(images: torch.Tensor) -> np.ndarray:
    """Undo :func:`to_tensor`: ``(N, 3, H, W)`` or ``(3, H, W)`` -> ``(N, H, W, 3)`` or ``(H, W, 3)`` uint8.

    Example:
        >>> images, _, _ = generate(1, seed=0)
        >>> picture = to_rgb(images[0])     # (64, 64, 3) uint8, ready for gc.overlay
    """
    x = torch.as_tensor(images).detach().cpu().float()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    rgb = (x * std + mean) * 255.0
    return rgb.round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).numpy()


def _draw(shape: str, rng: np.random.Generator, cue: int | None = None):
    """One ``(H, W, 3)`` uint8 picture of ``shape`` and its ``(H, W)`` bool mask; with a ``cue``
    class, the picture carries that class's tag and the tag's mask comes third."""
    canvas = _cluttered_background(rng)
    coverage, centre = _shape_coverage(shape, rng)
    mask = coverage >= 0.5
    colour = _contrasting_colour(canvas[mask].mean(axis=0), rng)
    canvas += coverage[..., None] * (colour - canvas)
    if cue is None:
        return _with_noise(canvas, rng), mask
    cue_mask = _cue_mask(centre)
    canvas[cue_mask] = np.where(list(CUE_PATTERNS.values())[cue].reshape(-1, 1), 255.0, 0.0)
    return _with_noise(canvas, rng), mask, cue_mask


def _draw_pair(shapes: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One picture of two shapes and their ``(2, H, W)`` masks: radii 11 to 15, centres placed so
    that the shapes stay at least 3 pixels apart."""
    canvas = _cluttered_background(rng)
    radii = rng.uniform(*_PAIR_RADIUS_RANGE, size=2)
    for _ in range(1000):
        centres = [rng.uniform(r + 1.0, IMAGE_SIZE - r - 1.0, size=2) for r in radii]
        if np.linalg.norm(centres[0] - centres[1]) >= radii.sum() + 3.0:
            break
    else:  # (never seen) opposite corners, 45 pixels apart at the largest radii
        centres = [np.full(2, radii[0] + 1.0), np.full(2, IMAGE_SIZE - radii[1] - 1.0)]
    masks = []
    for shape, radius, centre in zip(shapes, radii, centres):
        coverage, _ = _shape_coverage(shape, rng, placed=(radius, centre))
        mask = coverage >= 0.5
        colour = _contrasting_colour(canvas[mask].mean(axis=0), rng)
        canvas += coverage[..., None] * (colour - canvas)
        masks.append(mask)
    return _with_noise(canvas, rng), np.stack(masks)


def _cue_class(label: int, bias: float, rng: np.random.Generator) -> int:
    """The tag's class: ``label`` with probability ``bias``, else one of the others, uniformly."""
    if rng.random() < bias:
        return label
    return (label + int(rng.integers(1, len(CLASSES)))) % len(CLASSES)


def _cue_mask(centre: np.ndarray) -> np.ndarray:
    """The ``CUE_SIZE`` square one cell in from the picture's corner farthest from the object's ``centre``.

    One cell in, not in the corner itself: the networks' zero padding dims the corner cell, and a
    cue there lights up its inner neighbour instead. The object, within 20 pixels of a centre on
    the other side of the middle, stays at least 22 pixels from the tag.
    """
    x, y = centre
    near, far = CUE_SIZE, IMAGE_SIZE - 2 * CUE_SIZE
    top = near if y >= IMAGE_SIZE / 2 else far
    left = near if x >= IMAGE_SIZE / 2 else far
    cue_mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    cue_mask[top : top + CUE_SIZE, left : left + CUE_SIZE] = True
    return cue_mask


def _cluttered_background(rng: np.random.Generator) -> np.ndarray:
    """Layers 1 to 3: gradient, texture and distractor strokes, ``(H, W, 3)`` float32 in [0, 255]."""
    canvas = _background(rng)
    size = IMAGE_SIZE * _SUPERSAMPLE
    # All strokes go on one supersampled pair of layers: their colours over black, and their
    # coverage. Box-filtering the colours gives coverage-weighted colours, ready to composite.
    colours, coverage = Image.new("RGB", (size, size)), Image.new("L", (size, size))
    colour_pen, coverage_pen = ImageDraw.Draw(colours), ImageDraw.Draw(coverage)
    for _ in range(rng.integers(_STROKES[0], _STROKES[1] + 1)):
        draw_stroke = _random_stroke(rng)
        draw_stroke(colour_pen, tuple(rng.integers(0, 256, size=3).tolist()))
        draw_stroke(coverage_pen, 255)
    alpha = _downsampled(coverage)[..., None]
    return canvas * (1.0 - alpha) + _downsampled(colours) * 255.0


def _with_noise(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Layer 5: Gaussian pixel noise, then rounding to uint8."""
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(3.0, 12.0))
    return (canvas + noise).round().clip(0, 255).astype(np.uint8)


def _background(rng: np.random.Generator) -> np.ndarray:
    """Layers 1 and 2: a gradient between two muted colours plus a texture, ``(H, W, 3)`` float32."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) / (IMAGE_SIZE - 1)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * (x - 0.5) + math.sin(angle) * (y - 0.5)) + 0.5
    start, end = rng.uniform(40, 215, size=(2, 3)).astype(np.float32)
    if rng.random() < 0.5:
        frequency = rng.uniform(2.0, 8.0)
        direction = rng.uniform(0, 2 * math.pi)
        phase = math.cos(direction) * x + math.sin(direction) * y
        texture = np.sin(2 * math.pi * frequency * phase + rng.uniform(0, 2 * math.pi))
    else:
        # Blotches: coarse noise, bicubically enlarged.
        coarse = rng.uniform(0, 255, size=(6, 6)).astype(np.uint8)
        smooth = Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
        texture = np.asarray(smooth, dtype=np.float32) / 127.5 - 1.0
    tint = (rng.uniform(10.0, 35.0) * rng.uniform(-1.0, 1.0, size=3)).astype(np.float32)
    return start + ramp[..., None] * (end - start) + texture[..., None] * tint


def _random_stroke(rng: np.random.Generator) -> Callable[[ImageDraw.ImageDraw, object], None]:
    """A thin open stroke (a line, a polyline or an arc) at the supersampled scale, as a function
    that draws it with a given pen and fill, so that two layers get the very same stroke."""
    size = IMAGE_SIZE * _SUPERSAMPLE
    width = int(rng.integers(1, 3)) * _SUPERSAMPLE
    kind = rng.integers(3)
    if kind == 0:
        points = [tuple(p) for p in rng.uniform(0, size, size=(2, 2)).tolist()]
        return lambda pen, fill: pen.line(points, fill=fill, width=width)
    if kind == 1:
        points = [tuple(p) for p in rng.uniform(0, size, size=(3, 2)).tolist()]
        return lambda pen, fill: pen.line(points, fill=fill, width=width, joint="curve")
    centre = rng.uniform(0, size, size=2)
    box = [*(centre - rng.uniform(0.1, 0.4) * size), *(centre + rng.uniform(0.1, 0.4) * size)]
    start = rng.uniform(0, 360)
    # At most three quarters of a turn, so that an arc never closes into a circle's outline.
    end = start + rng.uniform(60, 270)
    return lambda pen, fill: pen.arc(box, start, end, fill=fill, width=width)


def _shape_coverage(
    shape: str, rng: np.random.Generator, placed: tuple[float, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage in [0, 1] of one filled ``shape`` at a random size, rotation and position (or at the
    ``placed = (radius, centre)`` given), and its centre ``(x, y)`` in pixels (every point of the
    shape lies within its radius of it)."""
    if placed is None:
        radius = rng.uniform(*_RADIUS_RANGE)
        margin = radius + 1.0
        centre = rng.uniform(margin, IMAGE_SIZE - margin, size=2)
    else:
        radius, centre = placed
    rotation = rng.uniform(-_MAX_TILT, _MAX_TILT)
    size = IMAGE_SIZE * _SUPERSAMPLE
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    if shape == "circle":
        box = np.concatenate([centre - radius, centre + radius]) * _SUPERSAMPLE
        draw.ellipse(box.tolist(), fill=255)
    else:
        outline = _outline(shape) @ _rotation(rotation).T * radius + centre
        draw.polygon([tuple(p) for p in outline * _SUPERSAMPLE], fill=255)
    return _downsampled(layer), centre


def _outline(shape: str) -> np.ndarray:
    """The polygon of ``shape`` with circumradius 1 around the origin, as ``(K, 2)`` points."""
    if shape == "square":
        return _polar(np.arange(4) * (math.pi / 2) + math.pi / 4, np.ones(4))
    if shape == "triangle":
        return _polar(np.arange(3) * (2 * math.pi / 3) - math.pi / 2, np.ones(3))
    if shape == "star":
        return _polar(np.arange(10) * (math.pi / 5) - math.pi / 2, np.tile([1.0, 0.5], 5))
    if shape == "cross":
        # A plus sign of arm half-width a, reaching 1 from the centre at the arm's corners.
        a = 0.35
        reach = math.sqrt(1 - a * a)
        quarter = np.array([[reach, -a], [reach, a], [a, a]])
        return np.concatenate([quarter @ _rotation(k * math.pi / 2).T for k in range(4)])
    raise ValueError(f"Unknown shape {shape!r}; choose one of {', '.join(CLASSES)}.")


def _polar(angles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _downsampled(layer: Image.Image) -> np.ndarray:
    """A supersampled 0-255 layer, box-filtered to the picture's size, as float32 in [0, 1]."""
    return np.asarray(layer.reduce(_SUPERSAMPLE), dtype=np.float32) / 255.0


def _contrasting_colour(beneath: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colour at least ``_MIN_CONTRAST`` away from ``beneath`` (its opposite, failing that)."""
    for _ in range(32):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        if np.linalg.norm(colour - beneath) >= _MIN_CONTRAST:
            return colour
    return 255.0 - beneath
