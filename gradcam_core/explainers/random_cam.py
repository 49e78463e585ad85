"""Random-CAM (Gildenblat and contributors, "PyTorch library for CAM methods", pytorch-grad-cam,
2021): random channel weights, the baseline an evaluation of maps needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import LayerExplainer, Pass

__all__ = ["RandomCAM"]


class RandomCAM(LayerExplainer):
    r"""The layer's channels weighed by numbers drawn uniformly in [-1, 1]: no gradient, no class.

    .. math::
        w_k \sim \mathcal{U}[-1, 1], \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    A map that knows the layer's activations but nothing of the class or the score: a method
    that does no better than this on a faithfulness or localization metric has not shown
    anything. The weights are drawn from a generator seeded with ``seed`` anew for each layer,
    the same for every image of a batch (pytorch-grad-cam draws from NumPy's global generator,
    per image): the same seed gives the same map, alone or in a batch, with or without other
    layers.

    Example:
        >>> r = RandomCAM(model, layers=["layer4"], seed=3)(x)
        >>> r.weights["layer4"]              # (N, 512), the same row for every image
    """

    uses_gradients = False

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, seed: int = 0):
        super().__init__(model, layers)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.seed = seed

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        a = p.activations[layer]
        generator = torch.Generator(device=a.device).manual_seed(self.seed)
        weights = torch.rand(a.shape[1], generator=generator, device=a.device, dtype=a.dtype) * 2 - 1
        return weights.expand(a.shape[0], -1)
