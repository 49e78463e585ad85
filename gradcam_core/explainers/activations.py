"""Activation (feature-map) visualization (Zeiler & Fergus, "Visualizing and Understanding
Convolutional Networks", ECCV 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..hooks import capture_outputs, check_layers, exclusive_eval
from .base import as_batch, check_outputs

__all__ = ["FeatureMaps"]


class FeatureMaps:
    """The outputs ``A^k`` of named layers for a batch, from one forward pass without gradients.

    Each map is a clone taken when the layer returns, so an in-place ReLU that follows the layer
    does not change what is returned.

    Example:
        >>> maps = FeatureMaps(model, layers=["layer1", "layer4"])(x)
        >>> maps["layer1"].shape        # (N, 64, 56, 56) for a 224x224 input to ResNet34
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str):
        self.model = model
        self.layers = check_layers(model, layers)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with exclusive_eval(self.model), torch.no_grad():
            with capture_outputs(self.model, self.layers) as outputs:
                self.model(as_batch(x))
        check_outputs(outputs, self.layers, maps=False)
        return {name: outputs[name] for name in self.layers}
