"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

A map that explains the model must change when the model does. The model randomization tests
re-initialize the weights, on a deep copy (the caller's model, shared by the dashboard, is never
touched), and compare each new map with the original:

* :func:`cascading_randomization`: from the top (the classifier) down, one stage more at a time;
* :func:`independent_randomization`: one stage at a time, the others as trained.

Similarity (:func:`similarity`), as in the paper, on maps brought to the input's size: Spearman's
rank correlation with and without absolute values, SSIM (scikit-image) and the Pearson correlation
of HOG features (scikit-image) of the maps scaled to [0, 1]. Pixel-space pictures ``(N, 3, H, W)``
are summed over their colour channels first.

The data randomization test needs a network trained on shuffled labels: ``load_model("shapes_shuffled")``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import nn

from .explainers import explain
from .explainers.base import Progress, Target, as_batch, resolve_targets
from .hooks import exclusive_eval, model_lock
from .maps import normalize, upsample
from .metrics import rank_correlation

__all__ = [
    "MEASURES",
    "Randomization",
    "cascading_randomization",
    "independent_randomization",
    "randomized_copy",
    "similarity",
]

#: Similarity measure -> its name for people.
MEASURES = {
    "spearman": "Spearman rank correlation",
    "spearman_abs": "Spearman rank correlation of absolute values",
    "ssim": "SSIM",
    "hog": "HOG features, Pearson correlation",
}


@dataclass(frozen=True)
class Randomization:
    """The maps of one method as more (cascading) or other (independent) stages are re-initialized.

    Attributes:
        method: the method's name in :data:`~gradcam_core.METHODS`.
        steps: ``"original"``, then what is randomized at each step (``"fc"``, ``"fc + layer4"``, ...).
        maps: one ``(N, H, W)`` map per step, at the input's size.
        similarity: measure -> one value per step (the mean over the images), the original's first.
    """

    method: str
    steps: list[str]
    maps: list[torch.Tensor]
    similarity: dict[str, list[float]]


def randomized_copy(model: nn.Module, stages: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every parameter of ``stages`` drawn again from its initializer.

    Each module with ``reset_parameters`` (convolutions, linear layers, batch norm: its affine
    weights and running statistics) is reset, from ``seed``; torch's global random state is left
    as it was. The copy is made under the model's lock, so no hook of a concurrent call is copied.

    Example:
        >>> random_top = randomized_copy(clf.module, ["fc", "layer4"])
    """
    with model_lock(model):
        twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage in stages:
            for module in twin.get_submodule(stage).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return twin.eval()


def cascading_randomization(model: nn.Module, x: torch.Tensor, target: Target, method: str,
                            layers: Sequence[str], explain_layer: str | None = None, seed: int = 0,
                            options: Mapping[str, object] | None = None,
                            progress: Progress | None = None) -> Randomization:
    """Re-initialize ``layers`` (top first: the classifier, then the last stage, ...) one more at a time.

    Args:
        model: the trained model; never changed.
        x: ``(N, C, H, W)`` or ``(C, H, W)``.
        target: the class to explain; resolved on the trained model, and kept for every step.
        method: a name from :data:`~gradcam_core.METHODS`.
        layers: the stages to randomize, from the top down, e.g. ``["fc", "layer4", ..., "layer1"]``.
        explain_layer: the layer a layer method explains (ignored by the pixel-space methods).
        seed: seeds the new weights.
        options: the method's keyword options.
        progress: ``progress(done, total)`` after each map.

    Example:
        >>> r = cascading_randomization(clf.module, x, 243, "grad_cam", ["fc", "layer4", "layer3"], "layer4")
        >>> r.steps, r.similarity["spearman"]
        (['original', 'fc', 'fc + layer4', 'fc + layer4 + layer3'], [1.0, ...])
    """
    stages = [list(layers[:i]) for i in range(1, len(layers) + 1)]
    return _randomization(model, x, target, method, stages, explain_layer, seed, options, progress)


def independent_randomization(model: nn.Module, x: torch.Tensor, target: Target, method: str,
                              layers: Sequence[str], explain_layer: str | None = None, seed: int = 0,
                              options: Mapping[str, object] | None = None,
                              progress: Progress | None = None) -> Randomization:
    """Re-initialize each of ``layers`` alone, the others as trained; arguments as in :func:`cascading_randomization`."""
    return _randomization(model, x, target, method, [[layer] for layer in layers], explain_layer, seed, options,
                          progress)


def _randomization(model, x, target, method, stages, explain_layer, seed, options, progress) -> Randomization:
    x = as_batch(x).detach()
    if not stages:
        raise ValueError("Name at least one layer to randomize.")
    with exclusive_eval(model), torch.no_grad():
        targets = resolve_targets(target, model(x))
    models = [model] + [randomized_copy(model, chosen, seed) for chosen in stages]
    maps = []
    for done, each in enumerate(models, start=1):
        maps.append(_map(each, x, targets, method, explain_layer, options))
        if progress is not None:
            progress(done, len(models))
    values = [[similarity(maps[0][i], m[i]) for i in range(x.shape[0])] for m in maps]
    return Randomization(
        method=method,
        steps=["original"] + [" + ".join(chosen) for chosen in stages],
        maps=maps,
        similarity={key: [_defined_mean([v[key] for v in step]) for step in values] for key in MEASURES},
    )


def _map(model, x, targets, method, explain_layer, options) -> torch.Tensor:
    layers = [explain_layer] if explain_layer else None
    result = explain(model, x, targets, layers, [method], {method: dict(options or {})})[method]
    m = next(iter(result.maps.values()))
    if m.dim() == 4:
        m = m.sum(dim=1)
    return upsample(m, tuple(x.shape[-2:]))


def similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """The paper's four similarities of two maps ``(H, W)`` of one shape; 1 for identical maps.

    Spearman's correlations are NaN when a map is constant (ranks are undefined), and so is the
    HOG correlation when a map has no gradient anywhere.

    Example:
        >>> similarity(m, m)
        {'spearman': 1.0, 'spearman_abs': 1.0, 'ssim': 1.0, 'hog': 1.0}
    """
    a, b = torch.as_tensor(a).detach().double().cpu(), torch.as_tensor(b).detach().double().cpu()
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"Expected two (H, W) maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    scaled_a, scaled_b = normalize(a).numpy(), normalize(b).numpy()
    return {
        "spearman": rank_correlation(a.numpy(), b.numpy()),
        "spearman_abs": rank_correlation(a.abs().numpy(), b.abs().numpy()),
        "ssim": float(structural_similarity(scaled_a, scaled_b, data_range=1.0)),
        "hog": _pearson(_hog(scaled_a), _hog(scaled_b)),
    }


def _defined_mean(values: list[float]) -> float:
    """The mean of the values that are defined; NaN when none is (every map constant)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _hog(m: np.ndarray) -> np.ndarray:
    cell = max(2, min(m.shape) // 8)  # 8 x 8 cells, whatever the size
    return hog(m, pixels_per_cell=(cell, cell), cells_per_block=(2, 2), feature_vector=True)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
