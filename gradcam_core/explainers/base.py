"""What every explainer shares: one pass through the model, targets, checks, the result type.

The engine is :func:`run`: it gathers what a list of explainers needs (:class:`Needs`), makes ONE
forward pass with the layers hooked, ONE ``torch.autograd.grad`` over every hooked layer (and the
input) that a method takes gradients at, then the rectified backward passes of the pixel-space
methods over the same graph, and hands the resulting :class:`Pass` to each method. A method only
says what it does with it:

* a layer method (:class:`LayerExplainer`) weighs a layer's channels
  (:meth:`~LayerExplainer.channel_weights`), or makes its map element by element
  (:meth:`~LayerExplainer.layer_map`);
* an input method (:class:`InputExplainer`) returns a picture ``(N, 3, H, W)``.

Calling one explainer is :func:`run` with that explainer alone; :func:`gradcam_core.explain` is
:func:`run` with many, so each entry there equals what the method's own class returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Union

import torch
from torch import nn

from ..hooks import (
    capture_activation_outputs,
    capture_outputs,
    check_layers,
    exclusive_eval,
    rectified_gradients,
)
from ..tokens import family

__all__ = [
    "FAMILIES",
    "Explainer",
    "InputExplainer",
    "LayerExplainer",
    "Needs",
    "Output",
    "Pass",
    "Progress",
    "Result",
    "Target",
    "as_batch",
    "check_outputs",
    "class_scores",
    "resolve_targets",
    "run",
    "weighted_sum",
]

#: ``None`` (each sample's top-1 class), one class for every sample, or one class per sample.
Target = Union[None, int, Sequence[int], torch.Tensor]

#: ``progress(done, total)``, called by the slow methods as they go; raising in it cancels the call.
Progress = Callable[[int, int], None]

#: The families of networks, as :func:`gradcam_core.tokens.family` names them.
FAMILIES = ("CNN", "ViT", "Swin")


@dataclass(frozen=True)
class Result:
    """What an explainer returns; every tensor is detached.

    Attributes:
        maps: layer name -> map, ``(N, h, w)`` at the layer's resolution, not normalized
            (``(N, 3, H, W)`` for Guided Grad-CAM; from :func:`gradcam_core.explain`, the one
            key ``"input"`` for the pixel-space methods).
        logits: ``(N, classes)`` pre-softmax scores of the pass that made the maps.
        targets: ``(N,)`` the class explained for each sample.
        weights: layer name -> ``(N, K)`` the weight of each channel in the map, for the methods
            that have channel weights (Grad-CAM's ``alpha_k^c``, CAM's ``w_k^c``, ...).
        activations: layer name -> ``(N, K, h, w)`` the layer's output ``A``.
        guided: ``(N, 3, H, W)`` guided backpropagation (Guided Grad-CAM only).
        cams: layer name -> ``(N, h, w)`` the Grad-CAM maps (Guided Grad-CAM only).
        seconds: the time of the method's own step, after the shared pass.
        pass_seconds: the time of the shared forward and backward passes.
        integration_error: ``(N,)`` for Integrated Gradients: the map's sum minus
            ``y^c(x) - y^c(baseline)``, which completeness makes 0 but for the error of the
            integration rule (captum's "convergence delta").
    """

    maps: dict[str, torch.Tensor]
    logits: torch.Tensor
    targets: torch.Tensor
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    guided: torch.Tensor | None = None
    cams: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0
    pass_seconds: float = 0.0
    integration_error: torch.Tensor | None = None


@dataclass(frozen=True)
class Needs:
    """What a method needs from the shared pass."""

    layers: frozenset[str] = frozenset()  # outputs to record
    layer_gradients: frozenset[str] = frozenset()  # d y^c / d A at these layers
    input_gradient: bool = False  # d y^c / d x
    rules: frozenset[str] = frozenset()  # rectified backward passes: "guided", "deconvnet"

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.layers | other.layers,
            self.layer_gradients | other.layer_gradients,
            self.input_gradient or other.input_gradient,
            self.rules | other.rules,
        )

    @property
    def gradients(self) -> bool:
        return bool(self.layer_gradients or self.input_gradient or self.rules)


@dataclass(frozen=True)
class Pass:
    """One forward pass and the backward passes made over it; every tensor is detached.

    Methods that need more forward passes (the perturbation methods) make them with ``model``,
    still under its lock, while :func:`run` holds it.
    """

    model: nn.Module
    x: torch.Tensor  # (N, C, H, W)
    logits: torch.Tensor
    targets: torch.Tensor
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]  # layer name -> d y^c / d A
    input_gradient: torch.Tensor | None
    rectified: dict[str, torch.Tensor]  # rule -> (N, C, H, W)


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


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k weights_k * A^k)``: ``(N, K)`` and ``(N, K, h, w)`` -> ``(N, h, w)``."""
    return torch.einsum("nk,nkhw->nhw", weights, activations).clamp(min=0)


class Explainer:
    """Base of every method: says what it needs from the shared pass and what it makes of it.

    ``slow`` methods (the perturbation methods) run after the others in :func:`run`. A method
    made for some :data:`FAMILIES` of networks only lists them in ``families`` and says in
    ``refusal`` why it cannot explain the others; a model of another family is refused at once.
    """

    slow = False
    families: tuple[str, ...] = FAMILIES
    refusal = ""

    def __init__(self, model: nn.Module):
        network = family(model)
        if network not in self.families:
            raise ValueError(f"{type(self).__name__} explains {' and '.join(f + 's' for f in self.families)} only, and "
                             f"{type(model).__name__} is a {network}: {self.refusal}")
        self.model = model

    def needs(self) -> Needs:
        return Needs()

    def from_pass(self, p: Pass):
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, target: Target = None):
        _, (output,) = run(self.model, x, target, [self])
        return output.value


class LayerExplainer(Explainer):
    """A map per named layer, at the layer's resolution, from its activations (and gradients).

    A subclass implements :meth:`channel_weights` (the map is ``ReLU(sum_k w_k A^k)``) or, for an
    element-wise method, :meth:`layer_map`. ``uses_gradients`` says whether it reads
    ``p.gradients``.
    """

    uses_gradients = True

    def __init__(self, model: nn.Module, layers: Sequence[str] | str):
        super().__init__(model)
        self.layers = check_layers(model, layers)

    def needs(self) -> Needs:
        layers = frozenset(self.layers)
        return Needs(layers=layers, layer_gradients=layers if self.uses_gradients else frozenset())

    def from_pass(self, p: Pass) -> Result:
        check_outputs(p.activations, self.layers)
        maps, weights = {}, {}
        for layer in self.layers:
            maps[layer], w = self.layer_map(p, layer)
            if w is not None:
                weights[layer] = w
        activations = {layer: p.activations[layer] for layer in self.layers}
        return Result(maps, p.logits, p.targets, weights, activations)

    def layer_map(self, p: Pass, layer: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(N, h, w)`` map of ``layer`` and its ``(N, K)`` channel weights (``None`` if it has none)."""
        weights = self.channel_weights(p, layer)
        return weighted_sum(weights, p.activations[layer]), weights

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        """``(N, K)``: the weight of each of the layer's ``K`` channels."""
        raise NotImplementedError


class InputExplainer(Explainer):
    """A picture the size of the input, ``(N, C, H, W)``: one value per pixel and channel."""

    def from_pass(self, p: Pass) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Output:
    """What one explainer made of a shared pass, with the time of its own step."""

    value: object
    seconds: float
    pass_seconds: float


def run(
    model: nn.Module, x: torch.Tensor, target: Target, explainers: Sequence[Explainer]
) -> tuple[Pass, list[Output]]:
    """One shared pass for all ``explainers``, then each one's own step, in its order.

    Runs under the model's lock in eval mode; every hook is removed when the pass is over, and the
    slow methods run last. A :class:`Result` carries its timings; so does each :class:`Output`.
    """
    x = as_batch(x).detach()
    needs = Needs()
    for explainer in explainers:
        needs |= explainer.needs()
    start = time.perf_counter()
    with exclusive_eval(model):
        p = _shared_pass(model, x, target, needs)
        pass_seconds = time.perf_counter() - start
        outputs: dict[int, Output] = {}
        for index in sorted(range(len(explainers)), key=lambda i: explainers[i].slow):
            start = time.perf_counter()
            value = explainers[index].from_pass(p)
            seconds = time.perf_counter() - start
            if isinstance(value, Result):
                value = replace(value, seconds=seconds, pass_seconds=pass_seconds)
            outputs[index] = Output(value, seconds, pass_seconds)
    return p, [outputs[i] for i in range(len(explainers))]


def _shared_pass(model: nn.Module, x: torch.Tensor, target: Target, needs: Needs) -> Pass:
    layers = sorted(needs.layers)
    if layers:
        check_layers(model, layers)
    # The input asks for gradients so that every layer's output does too, even when the caller
    # froze every parameter. The model gets a copy of the leaf: a model that changes its input in
    # place (an in-place ReLU first) works as it does in a plain forward pass.
    leaf = x.requires_grad_(needs.gradients)
    with torch.set_grad_enabled(needs.gradients):
        with ExitStack() as hooked:
            # The activations' hooks come first: a hooked layer that is itself an activation hands
            # its later hooks a clone, whose autograd node is not the activation's.
            relu_outputs = hooked.enter_context(capture_activation_outputs(model)) if needs.rules else []
            activations = hooked.enter_context(capture_outputs(model, layers))
            logits = model(leaf.clone())
        check_outputs(activations, layers)
        targets = resolve_targets(target, logits)
        gradients, input_gradient, rectified = {}, None, {}
        if needs.gradients:
            score = class_scores(logits, targets)
            rules = sorted(needs.rules)
            wanted = [activations[name] for name in sorted(needs.layer_gradients)]
            if needs.input_gradient:
                wanted.append(leaf)
            if wanted:
                grads = torch.autograd.grad(score, wanted, retain_graph=bool(rules))
                gradients = dict(zip(sorted(needs.layer_gradients), grads))
                if needs.input_gradient:
                    input_gradient = grads[-1]
            for i, rule in enumerate(rules):
                rectified[rule] = rectified_gradients(
                    score, leaf, relu_outputs, rule, retain_graph=i < len(rules) - 1
                )
    return Pass(
        model=model,
        x=x.detach(),
        logits=logits.detach(),
        targets=targets,
        activations={name: a.detach() for name, a in activations.items()},
        gradients=gradients,
        input_gradient=input_gradient,
        rectified=rectified,
    )
