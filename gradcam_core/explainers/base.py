"""What every class-activation explainer shares: layer checks, targets, hooking, the result type.

A method only says how it weighs a layer's channels (:meth:`LayerExplainer._weights`); the base
class runs the model once under its lock with the layers hooked, and turns weights and
activations into maps ``ReLU(sum_k weight_k * A^k)`` at the layer's own resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import torch
from torch import nn

from ..hooks import capture_outputs, check_layers, exclusive_eval

__all__ = [
    "LayerExplainer",
    "Result",
    "Target",
    "as_batch",
    "check_outputs",
    "class_scores",
    "resolve_targets",
]

#: ``None`` (each sample's top-1 class), one class for every sample, or one class per sample.
Target = Union[None, int, Sequence[int], torch.Tensor]


@dataclass(frozen=True)
class Result:
    """What an explainer returns; every tensor is detached.

    Attributes:
        maps: layer name -> map, ``(N, h, w)`` at the layer's resolution (``(N, 3, H, W)`` for
            Guided Grad-CAM), not normalized.
        logits: ``(N, classes)`` pre-softmax scores of the pass that made the maps.
        targets: ``(N,)`` the class explained for each sample.
        weights: layer name -> ``(N, K)`` the weight of each channel in the map
            (Grad-CAM's ``alpha_k^c``, CAM's ``w_k^c``).
        activations: layer name -> ``(N, K, h, w)`` the layer's output ``A``.
        guided: ``(N, 3, H, W)`` guided backpropagation (Guided Grad-CAM only).
        cams: layer name -> ``(N, h, w)`` the Grad-CAM maps (Guided Grad-CAM only).
    """

    maps: dict[str, torch.Tensor]
    logits: torch.Tensor
    targets: torch.Tensor
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    guided: torch.Tensor | None = None
    cams: dict[str, torch.Tensor] = field(default_factory=dict)


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` or ``(N, C, H, W)`` -> ``(N, C, H, W)``; anything else is a ``ValueError``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected an image tensor, got {type(x).__name__}; see Classifier.preprocess.")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"Expected an image tensor of shape (N, C, H, W), got {tuple(x.shape)}.")
    return x


def resolve_targets(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """The ``(N,)`` long tensor of classes that ``target`` names for a batch with these logits."""
    n, num_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError("target must be a class index, not a bool.")
    targets = torch.as_tensor(target, device=logits.device)
    if targets.dim() > 1 or (targets.dim() == 1 and targets.numel() != n):
        raise ValueError(
            f"Got {targets.numel()} targets for a batch of {n} images: give one class, or one per image."
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"target must hold class indices (integers), got {targets.dtype}.")
    targets = targets.long().expand(n).contiguous()
    out_of_range = targets[(targets < 0) | (targets >= num_classes)]
    if out_of_range.numel():
        raise ValueError(
            f"Class {int(out_of_range[0])} is out of range: this model has {num_classes} classes "
            f"(0 to {num_classes - 1})."
        )
    return targets


def check_outputs(
    outputs: dict[str, torch.Tensor], layers: Sequence[str], maps: bool = True
) -> dict[str, torch.Tensor]:
    """``outputs`` if every layer ran in the forward pass (and, with ``maps``, gave ``(N, K, h, w)``).

    A module that the model holds but never calls records nothing; a layer after the pooling
    has no spatial map to weigh. Either is a ``ValueError`` that says so, not a ``KeyError`` or an
    ``IndexError`` from deep inside the method.
    """
    for name in layers:
        if name not in outputs:
            raise ValueError(
                f"Layer {name!r} did not run in the forward pass, so it has no output to explain."
            )
        if maps and outputs[name].dim() != 4:
            raise ValueError(
                f"Class activation maps need a convolutional layer with output (N, K, h, w); "
                f"{name!r} gives {tuple(outputs[name].shape)}."
            )
    return outputs


def class_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The sum over the batch of each sample's target logit ``y^c``.

    Samples do not interact in an eval-mode forward pass, so the gradient of this sum with
    respect to a sample's activations is that sample's own ``dy^c / dA``.
    """
    return logits.gather(1, targets[:, None]).sum()


class LayerExplainer:
    """Base class: hooks ``layers`` of ``model`` for one forward pass per call.

    Subclasses implement :meth:`_weights`. ``needs_grad`` says whether they take gradients.
    """

    needs_grad = True

    def __init__(self, model: nn.Module, layers: Sequence[str] | str):
        self.model = model
        self.layers = check_layers(model, layers)

    def __call__(self, x: torch.Tensor, target: Target = None) -> Result:
        """Explain ``target`` for the batch ``x``: see :class:`Result` for what comes back."""
        x = as_batch(x)
        with exclusive_eval(self.model), torch.set_grad_enabled(self.needs_grad):
            with capture_outputs(self.model, self.layers) as activations:
                # The input asks for gradients so that the layers' outputs do too, even when the
                # caller froze every parameter. The model gets a copy, not the leaf itself: a model
                # that changes its input in place (an in-place ReLU first) works as it does in a
                # plain forward pass.
                logits = self.model(x.detach().requires_grad_(self.needs_grad).clone())
            check_outputs(activations, self.layers)
            targets = resolve_targets(target, logits)
            weights = self._weights(activations, logits, targets)
            return self._result(activations, weights, logits, targets)

    def _weights(
        self, activations: dict[str, torch.Tensor], logits: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Layer name -> ``(N, K)`` weight of each of the layer's ``K`` channels."""
        raise NotImplementedError

    def _result(self, activations, weights, logits, targets) -> Result:
        activations = {name: a.detach() for name, a in activations.items()}
        maps = {name: weighted_sum(weights[name], activations[name]) for name in self.layers}
        return Result(maps, logits.detach(), targets, weights, activations)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k weights_k * A^k)``: ``(N, K)`` and ``(N, K, h, w)`` -> ``(N, h, w)``."""
    return torch.einsum("nk,nkhw->nhw", weights, activations).clamp(min=0)
