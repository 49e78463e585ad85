"""Ablation-CAM (Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional
Network via Gradient-free Localization", WACV 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..split import side_inputs, split_at
from .base import Pass, Progress
from .perturbation import PerturbationCAM, Tally, chunks

__all__ = ["AblationCAM"]


class AblationCAM(PerturbationCAM):
    r"""Each channel weighed by how much the score falls when the channel is zeroed.

    .. math::
        w_k^c = \frac{y^c - y^c_k}{y^c}, \qquad L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    where :math:`y^c_k` is the score with channel :math:`k` of the layer set to 0 (weight 0 when
    :math:`y^c = 0`). The layer's output comes from the shared forward pass; the ablated copies
    run through the rest of the network only (:func:`~gradcam_core.split.split_at`), ``batch_size``
    at a time, so the layers before are never computed again. At ``layer4`` of a ResNet, where
    only pooling and the classifier follow, a copy costs next to nothing. At a layer followed by
    global average pooling and a linear layer, :math:`w_k^c = w_k \bar{A^k} / y^c`.

    Example:
        >>> r = AblationCAM(model, ["layer3", "layer4"], batch_size=64)(x, target=243)
    """

    families = ("CNN",)
    refusal = (
        "it zeroes channels of a convolutional map and runs the rest of the network; Score-CAM explains "
        "a transformer's tokens without gradients."
    )

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, batch_size: int = 64,
                 progress: Progress | None = None):
        super().__init__(model, layers, batch_size, progress)
        self.splits = {layer: split_at(model, layer) for layer in self.layers}

    def passes(self, activations: torch.Tensor) -> int:
        return activations.shape[0] * activations.shape[1]

    def score_channels(self, p: Pass, layer: str, tally: Tally) -> torch.Tensor:
        a, split = p.activations[layer], self.splits[layer]
        sides = side_inputs(split, p.x)
        scores = p.logits.gather(1, p.targets[:, None])[:, 0]
        weights = torch.zeros(a.shape[:2], dtype=p.logits.dtype, device=a.device)
        for i in range(a.shape[0]):
            for ks in chunks(a.shape[1], self.batch_size):
                copies = a[i].repeat(len(ks), 1, 1, 1)
                copies[torch.arange(len(ks), device=a.device), torch.arange(ks.start, ks.stop, device=a.device)] = 0
                ablated = split.rest(copies, *(side[i:i + 1] for side in sides))[:, p.targets[i]]
                if scores[i] != 0:
                    weights[i, ks.start:ks.stop] = (scores[i] - ablated) / scores[i]
                tally.advance(len(ks))
        return weights
