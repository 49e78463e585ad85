"""Hooks that live for one call, and the lock that keeps calls on a shared model apart.

Every hook here is registered inside a ``with`` block and removed in its ``finally``, so no hook
outlives the call that made it, whether the call returns or raises. Nothing here changes a module,
a parameter or a training flag: forward hooks only read outputs (and hand back a clone, see
:func:`capture_outputs`), and gradient hooks sit on the tensors of one forward pass.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .tokens import layout

__all__ = [
    "GUIDED_ACTIVATIONS",
    "RECTIFIERS",
    "capture_outputs",
    "capture_activation_outputs",
    "check_layers",
    "exclusive_eval",
    "model_lock",
    "rectified_gradients",
]

#: Activation modules whose backward pass guided backpropagation and the deconvnet rewrite.
GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)

# Forward hooks are registered on the module itself, so a hook set by one thread also fires in
# another thread's forward pass through the same model. Calls on one model are therefore
# serialized. The registry is keyed weakly, so it never keeps a model alive, and the lock is
# re-entrant, so an explainer may call another one while holding it.
_locks: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serializes every hooked pass through ``model``.

    Example:
        >>> with model_lock(model):
        ...     logits = model(x)   # no other thread's hooks can fire here
    """
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock


@contextmanager
def exclusive_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Hold ``model``'s lock and run the block with every module in eval mode.

    An explanation describes the model as it predicts: BatchNorm uses (and does not update) its
    running statistics, dropout is off, and the images of a batch do not affect each other. Each
    module's own ``training`` flag is restored on the way out, on success or error.
    """
    with model_lock(model):
        flags = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            yield model
        finally:
            for module, training in flags:
                module.training = training


def check_layers(model: nn.Module, layers: Iterable[str]) -> list[str]:
    """Return ``layers`` as a list, or raise a ``ValueError`` naming the valid layer names."""
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("Name at least one layer.")
    valid = [name for name, _ in model.named_modules() if name]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(
            f"{type(model).__name__} has no layer named {', '.join(map(repr, unknown))}. "
            f"Valid layer names: {', '.join(valid)}."
        )
    return names


@contextmanager
def capture_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named layer during the forward passes inside the block.

    A module called more than once in a pass records its last call. The recorded tensor is the layer's own output, still part of the autograd graph, so
    ``torch.autograd.grad(score, captured[name])`` gives the gradient at that layer. The hook hands
    the rest of the network a clone: an in-place op that follows the layer (torchvision's ResNet
    applies ``ReLU(inplace=True)`` after ``bn1``) then changes the clone, not the recorded tensor.

    A transformer's tokens (see :mod:`gradcam_core.tokens`) are recorded as their ``(N, C, h, w)``
    patch grid, and the rest of the network gets the tokens rebuilt from that grid in place of the
    clone: the gradient at the recorded grid is the gradient at the patch tokens, exactly.

    Example:
        >>> with capture_outputs(model, ["layer4"]) as outputs:
        ...     logits = model(x)
        >>> outputs["layer4"].shape
        torch.Size([1, 512, 7, 7])
    """
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"Layer {name!r} returns {type(output).__name__}, not a tensor.")
            tokens = layout(model, name, module, output)
            if tokens is None:
                captured[name] = output
                return output.clone()
            captured[name] = tokens.to_grid(output)
            return tokens.from_grid(captured[name], output)

        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_activation_outputs(
    model: nn.Module, types: tuple[type[nn.Module], ...] = GUIDED_ACTIVATIONS
) -> Iterator[list[torch.Tensor]]:
    """Collect the output of every call of every activation module of ``types``.

    A module called twice in one forward pass (a torchvision ``BasicBlock`` calls its one ReLU
    twice) contributes two tensors.
    """
    outputs: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        outputs.append(output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, types)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _guided(grad_inputs, grad_outputs):
    # relu'(x) * max(grad, 0): the plain gradient through the activation, its negative part cut.
    return tuple(None if g is None else g.clamp(min=0) for g in grad_inputs)


def _deconvnet(grad_inputs, grad_outputs):
    # max(grad, 0), whatever the forward input was: the activation's own gate is ignored.
    return tuple(None if g is None else grad_outputs[0].clamp(min=0) for g in grad_inputs)


def _redirected(grad_inputs, grad_outputs):
    # Olah et al.'s redirected ReLU: where an activation cuts a sample's whole gradient (every unit
    # below zero), let through the part that would raise its inputs (negative for a loss descended),
    # so that an ascent that starts with a dead unit can still wake it up.
    plain = grad_inputs[0]
    if plain is None:
        return grad_inputs
    dead = plain.flatten(1).norm(dim=1).eq(0).view(-1, *([1] * (plain.dim() - 1)))
    return (torch.where(dead, grad_outputs[0].clamp(max=0), plain), *grad_inputs[1:])


# Autograd's names for the backward steps of nn.ReLU and nn.ReLU6.
_ACTIVATION_NODES = ("ReluBackward", "HardtanhBackward", "ThresholdBackward")

#: The backward rules of the pixel-space methods (and of activation maximization's "redirected"
#: ReLU), as hooks on an activation's autograd node.
RECTIFIERS = {"guided": _guided, "deconvnet": _deconvnet, "redirected": _redirected}


def rectified_gradients(
    score: torch.Tensor,
    inputs: torch.Tensor,
    activation_outputs: Sequence[torch.Tensor],
    rule: str = "guided",
    retain_graph: bool = False,
) -> torch.Tensor:
    """``d score / d inputs`` with a rectifying rule in place of each activation's backward pass.

    A ReLU's backward pass is ``relu'(x) * grad``. Guided backpropagation (Springenberg et al.
    2015) makes it ``relu'(x) * max(grad, 0)``; the deconvnet (Zeiler and Fergus 2014) makes it
    ``max(grad, 0)``, forgetting where the forward input was negative. Each rule is a hook on the
    autograd node of one activation call of this pass (not on a module), removed in ``finally``:
    in-place activations and modules called twice need no special case, and the model is never
    touched. ``retain_graph`` keeps the graph for another backward pass over the same forward.

    Example:
        >>> with capture_activation_outputs(model) as relus:
        ...     score = model(x)[0, 243]
        >>> guided = rectified_gradients(score, x, relus, rule="guided")
    """
    hook = RECTIFIERS[rule]
    nodes = {out.grad_fn for out in activation_outputs if out.grad_fn is not None}
    if rule in ("deconvnet", "redirected"):  # both read the activation's own output gradient
        names = {type(node).__name__ for node in nodes}
        foreign = sorted(name for name in names if not name.startswith(_ACTIVATION_NODES))
        if foreign:
            raise ValueError(
                f"The {rule} rule needs each activation's own backward step, but an activation's output "
                f"comes from {', '.join(foreign)} (an in-place activation on a view, such as ReLU(inplace=True) "
                "after a flatten). Use inplace=False there, or guided backprop."
            )
    handles = [node.register_hook(hook) for node in nodes]
    try:
        (gradient,) = torch.autograd.grad(score, inputs, retain_graph=retain_graph)
    finally:
        for handle in handles:
            handle.remove()
    return gradient
