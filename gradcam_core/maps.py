"""Pure functions on maps: upsample to the image, normalize to [0, 1], colour and blend.

Explainers return maps at their layer's resolution; bringing them to the image is this explicit,
separate step.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["correlation", "gate", "heat_image", "normalize", "overlay", "signed_overlay", "to_image", "upsample"]


def upsample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize ``(h, w)``, ``(N, h, w)`` or ``(N, C, h, w)`` maps to ``size = (H, W)``.

    ``align_corners=False`` maps each cell to the same fraction of the image as a resize of the
    image does, so an upsampled map lines up with the picture the model saw.

    Example:
        >>> upsample(result.maps["layer4"], (224, 224)).shape
        torch.Size([1, 224, 224])
    """
    m = torch.as_tensor(m)
    shape = m.shape
    if m.dim() not in (2, 3, 4):
        raise ValueError(f"Expected a map of shape (h, w), (N, h, w) or (N, C, h, w), got {tuple(shape)}.")
    batch = m.reshape(-1, 1, *shape[-2:]) if m.dim() < 4 else m
    out = F.interpolate(batch.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*shape[:-2], *out.shape[-2:])


def gate(picture: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """A pixel-space picture ``(N, C, H, W)`` times the upsampled map ``(N, h, w)`` of each sample.

    How Guided Grad-CAM is made from guided backpropagation and Grad-CAM; any pixel-space method
    can be gated by any layer map the same way.

    Example:
        >>> gate(GuidedBackprop(model)(x, 243), GradCAM(model, ["layer4"])(x, 243).maps["layer4"])
    """
    return picture * upsample(m, tuple(picture.shape[-2:])).unsqueeze(1)


def normalize(m: torch.Tensor) -> torch.Tensor:
    """Min-max scale each sample to [0, 1]; a constant sample (an all-zero map) becomes zeros.

    ``(h, w)`` is one sample; for ``(N, ...)`` each of the ``N`` is scaled on its own, over all its
    other dimensions together (so a guided-backprop picture keeps the balance of its colours).

    Example:
        >>> normalize(torch.tensor([[0.0, 2.0], [4.0, 8.0]]))
        tensor([[0.0000, 0.2500],
                [0.5000, 1.0000]])
    """
    m = torch.as_tensor(m).float()
    flat = m.reshape(1, -1) if m.dim() <= 2 else m.reshape(m.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp(min=torch.finfo(m.dtype).tiny), 0.0)
    return scaled.reshape(m.shape)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's correlation of two maps of one shape, over all their cells; NaN if one is constant.

    Example:
        >>> correlation(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 5.0]))
        1.0
    """
    a, b = torch.as_tensor(a).detach().double().flatten(), torch.as_tensor(b).detach().double().flatten()
    if a.shape != b.shape:
        raise ValueError(f"Maps of {a.numel()} and {b.numel()} cells cannot be compared cell by cell.")
    a, b = a - a.mean(), b - b.mean()
    spread = a.norm() * b.norm()
    return float((a @ b) / spread) if spread > 0 else float("nan")


def to_image(m: torch.Tensor, contrast: float = 0.1) -> np.ndarray:
    """A signed gradient picture, one sample ``(3, H, W)`` or ``(H, W)``, as uint8 for display.

    Centred on grey: ``0.5 + contrast * (m - mean) / std``, clipped to [0, 1], with the mean and
    the standard deviation taken over the whole sample (so the balance of the colours is kept).
    This is how guided backpropagation is usually shown; min-max scaling would let a few extreme
    gradients flatten all the others to grey. A constant sample is flat grey.

    Example:
        >>> picture = to_image(GuidedBackprop(model)(x, target=243)[0])   # (H, W, 3) uint8
    """
    m = torch.as_tensor(m).detach().cpu().float()
    if not (m.dim() == 2 or (m.dim() == 3 and m.shape[0] == 3)):
        raise ValueError(f"Expected one (3, H, W) or (H, W) sample, got shape {tuple(m.shape)}.")
    std = m.std(unbiased=False)
    standardized = (m - m.mean()) / std if std > 0 else torch.zeros_like(m)
    picture = (0.5 + contrast * standardized).clamp(0, 1)
    if picture.dim() == 3:
        picture = picture.permute(1, 2, 0)
    return (picture * 255).round().to(torch.uint8).numpy()


def heat_image(m: torch.Tensor, cmap: str = "inferno", percentile: float = 99.0) -> np.ndarray:
    """A non-negative map of one sample ``(H, W)`` coloured from 0 to its ``percentile``, as uint8 RGB.

    How a saliency strength is shown: scaled by its maximum, a few extreme pixels would turn all
    the others dark.

    Example:
        >>> picture = heat_image(Saliency.strength(Saliency(model)(x, 243)[0]))   # (H, W, 3)
    """
    m = torch.as_tensor(m).detach().cpu().float()
    if m.dim() != 2:
        raise ValueError(f"Expected one (H, W) map, got shape {tuple(m.shape)}.")
    top = float(torch.quantile(m.flatten(), percentile / 100)) or float(m.max()) or 1.0
    colours = matplotlib.colormaps[cmap]((m / top).clamp(0, 1).numpy())[..., :3]
    return (colours * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, m: torch.Tensor, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """Blend one map over an RGB image: ``(1 - alpha) * image + alpha * cmap(map)``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (a PIL image is accepted too).
        m: ``(h, w)`` map of any range; it is upsampled to ``(H, W)`` and min-max normalized.
        cmap: a matplotlib colormap name.
        alpha: opacity of the map, in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Example:
        >>> picture = overlay(np.asarray(image), result.maps["layer4"][0], cmap="jet", alpha=0.5)
    """
    rgb, m = _checked(image, m, cmap, alpha, "jet, turbo, inferno or viridis")
    heat = normalize(upsample(m, rgb.shape[:2])).numpy()
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    blended = (1.0 - alpha) * rgb / 255.0 + alpha * colours
    return (blended * 255).round().clip(0, 255).astype(np.uint8)


def signed_overlay(image: np.ndarray, m: torch.Tensor, alpha: float = 0.7, cmap: str = "RdBu_r") -> np.ndarray:
    """Blend a signed map over an RGB image: red where it is for the class, blue where against.

    The map is upsampled and divided by its largest absolute value, so 0 stays 0 and the two
    signs keep their balance; each pixel takes the diverging ``cmap``'s colour for its value with
    opacity ``alpha * |value|``, so what counts for nothing leaves the photo as it is.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (a PIL image is accepted too).
        m: ``(h, w)`` map of any sign (LIME's and Kernel SHAP's superpixel weights, occlusion's falls
            and rises of the score).
        alpha: opacity where the map is largest, in [0, 1].
        cmap: a diverging matplotlib colormap, its middle for 0.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Example:
        >>> picture = signed_overlay(np.asarray(image), gc.LIME(model)(x, 243)[0])
    """
    rgb, m = _checked(image, m, cmap, alpha, "RdBu_r, coolwarm or bwr")
    m = upsample(m, rgb.shape[:2])
    top = float(m.abs().max())
    scaled = (m / top if top > 0 else torch.zeros_like(m)).numpy()
    colours = matplotlib.colormaps[cmap](0.5 + 0.5 * scaled)[..., :3]
    weight = alpha * np.abs(scaled)[..., None]
    blended = (1.0 - weight) * rgb / 255.0 + weight * colours
    return (blended * 255).round().clip(0, 255).astype(np.uint8)


def _checked(image: np.ndarray, m: torch.Tensor, cmap: str, alpha: float, suggestions: str) -> tuple[np.ndarray, torch.Tensor]:
    """An overlay's image as an array and its map as a CPU tensor, or a ``ValueError`` saying what is wrong."""
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"Expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"Unknown colormap {cmap!r}; try {suggestions}.")
    m = torch.as_tensor(m).detach().cpu()
    if m.dim() != 2:
        raise ValueError(f"Expected one (h, w) map, got shape {tuple(m.shape)}.")
    return rgb, m
