"""pytorch-grad-cam (``import pytorch_grad_cam``) as the reference of the methods that copy it.

The library returns each layer's map rectified, min-max scaled and resized to the input (with
OpenCV, bilinear, half-pixel centres); :func:`as_library` does the same to a map of ours with
``gc.normalize`` and ``gc.upsample``. The library runs on a copy of the model: it writes the
parameters' ``.grad`` and calls ``model.eval()``, and the session's models must stay as they are.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

import gradcam_core as gc
from gradcam_core.maps import correlation


def library_maps(cls, model: nn.Module, layer: str, x: torch.Tensor, targets, **options) -> torch.Tensor:
    """``(N, H, W)``: ``cls(copy, [layer], **options)`` of pytorch-grad-cam on ``x`` for ``targets``."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    twin = copy.deepcopy(model).eval()
    targets = torch.as_tensor(targets).expand(x.shape[0]).tolist()
    with cls(twin, [twin.get_submodule(layer)], **options) as cam:
        out = cam(x, [ClassifierOutputTarget(t) for t in targets])
    return torch.from_numpy(np.asarray(out))


def as_library(maps: torch.Tensor, size) -> torch.Tensor:
    """Our ``(N, h, w)`` layer maps post-processed as the library does: ReLU, scale, resize, scale."""
    return gc.normalize(gc.upsample(gc.normalize(maps.clamp(min=0)), tuple(size)))


def correlations(ours: torch.Tensor, theirs: torch.Tensor) -> list[float]:
    """Pearson's correlation of each sample's map with the library's."""
    return [correlation(a, b) for a, b in zip(ours, theirs, strict=True)]
