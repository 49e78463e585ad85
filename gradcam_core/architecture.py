"""A CNN's stages, CAM layer and classifier, found from one forward pass on a picture of noise.

The lessons name a network's layers: its stages (the layer-by-layer view), the layer CAM explains,
the linear classifier, and finer blocks. For the built-in models these names are written by hand;
for any other network (a torchvision or timm architecture, a student's own module)
:func:`find_structure` reads them off one forward pass, with a hook on every named module that
records what it returns:

- the *stages* are the last module at each spatial resolution, read along the network's own
  top-level modules; a container that holds several resolution changes one after the other
  (``features`` of VGG, DenseNet, MobileNet, ``trunk_output`` of RegNet) is opened and its
  children are read instead, while a block that downsamples inside itself (a bottleneck, a conv
  and its pooling) or has parallel branches at several resolutions (an Inception block) stays one
  unit;
- the *CAM layer* is the last stage: the last feature map before global pooling;
- *fc* is the last ``nn.Linear`` called (without one, the last module with weights after the CAM
  layer, e.g. SqueezeNet's 1x1 convolution), and :attr:`Structure.cam_refusal` says why CAM does
  not apply when the head is not global pooling followed by that one linear layer;
- the *blocks* are the residual (or MBConv, dense, ...) blocks inside each unit, early to late.

Modules called more than once (a shared ``ReLU``), global pooling, dropout and identities are
never chosen: their outputs say nothing a neighbour does not, or are ambiguous for a hook.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import check_layers, exclusive_eval

__all__ = ["Structure", "find_structure"]

# Modules whose output is never a stage: global pooling (its 4D output is a pooled vector, or
# VGG's 7x7 that repeats a smaller map), and what does nothing in eval mode.
_NEVER_STAGES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass(frozen=True)
class Structure:
    """What :func:`find_structure` found.

    Attributes:
        stages: the last module at each spatial resolution, early to late.
        cam_layer: the last stage, the feature map the head pools.
        fc: the classifier's last linear layer (or the last module with weights).
        blocks: finer units (residual blocks, ...), early to late; the stages when none are found.
        num_classes: the number of outputs.
        sides: ``(h, w)`` of each stage on the traced input.
        cam_refusal: ``None`` when the logits are ``fc(global pooling(cam_layer))`` so that CAM
            applies, else CAM's own reason why not.
    """

    stages: list[str]
    cam_layer: str
    fc: str
    blocks: list[str]
    num_classes: int
    sides: list[tuple[int, int]]
    cam_refusal: str | None


@dataclass
class _Call:
    name: str
    module: nn.Module
    output: torch.Tensor | None  # a clone of a 4D output; None for anything else
    order: int  # completion order: a child completes before its parent

    @property
    def side(self) -> tuple[int, int] | None:
        return None if self.output is None else tuple(self.output.shape[-2:])


def find_structure(
    module: nn.Module,
    input_size: tuple[int, int],
    stages: Sequence[str] | None = None,
    cam_layer: str | None = None,
    fc: str | None = None,
) -> Structure:
    """Read ``module``'s stages, CAM layer, classifier and blocks off one forward pass.

    The pass runs on a ``(1, 3, *input_size)`` picture of seeded noise, in eval mode and without
    gradients, under the model's lock; nothing of the model changes. ``stages``, ``cam_layer`` and ``fc`` name
    layers by hand instead (checked to exist), for a network this reading cannot decide on.

    Raises:
        ValueError: the forward pass fails, the output is not ``(1, classes)`` logits, or the
            feature maps cannot be read (none at all, or a resolution that grows again); the
            message says what was found and how to name the layers.

    Example:
        >>> s = find_structure(torchvision.models.resnet18(), (224, 224))
        >>> s.stages, s.cam_layer, s.fc
        (['relu', 'layer1', 'layer2', 'layer3', 'layer4'], 'layer4', 'fc')
    """
    for given in (list(stages or []), [cam_layer] if cam_layer else [], [fc] if fc else []):
        if given:
            check_layers(module, given)
    logits, calls = _trace(module, input_size)
    stage_calls = [_only(calls, name) for name in stages] if stages else _stages(module, calls)
    cam_call = _only(calls, cam_layer) if cam_layer else stage_calls[-1]
    if cam_call.output is None:
        raise ValueError(f"The CAM layer {cam_call.name!r} must give feature maps (N, C, h, w); it does not.")
    fc_name = fc or _classifier(calls, cam_call.name)
    if fc_name is None:
        raise ValueError(f"No layer with weights comes after {cam_call.name!r}: name the classifier with fc=.")
    return Structure(
        stages=[c.name for c in stage_calls],
        cam_layer=cam_call.name,
        fc=fc_name,
        blocks=_blocks(module, calls, stage_calls, cam_call),
        num_classes=logits.shape[1],
        sides=[c.side for c in stage_calls if c.side is not None],
        cam_refusal=_cam_refusal(module, cam_call, fc_name, logits),
    )


def _trace(module: nn.Module, input_size: tuple[int, int]) -> tuple[torch.Tensor, dict[str, _Call]]:
    """The logits of a picture of noise, and each module called exactly once, by name."""
    counts: dict[str, int] = {}
    calls: dict[str, _Call] = {}
    clock = itertools.count()

    def recorder(name: str):
        def hook(m: nn.Module, inputs, output) -> None:
            counts[name] = counts.get(name, 0) + 1
            # a clone: an in-place op that follows (ReLU(inplace=True)) must not change the record
            four_d = isinstance(output, torch.Tensor) and output.dim() == 4
            calls[name] = _Call(name, m, output.detach().clone() if four_d else None, next(clock))

        return hook

    parameter = next(module.parameters(), torch.empty(0))
    # noise rather than a blank picture: on a constant input a random network's head can look
    # linear in the pooled features when it is not (a LayerNorm, a ReLU after the last map)
    noise = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    x = noise.to(parameter.device, parameter.dtype if parameter.is_floating_point() else None)
    with exclusive_eval(module), torch.no_grad():
        handles = [m.register_forward_hook(recorder(name)) for name, m in module.named_modules() if name]
        try:
            logits = module(x)
        except Exception as error:  # the student's own forward, on a size it may not accept
            raise ValueError(
                f"{type(module).__name__} fails on a {input_size[0]}x{input_size[1]} picture ({error}); "
                "check input_size."
            ) from None
        finally:
            for handle in handles:
                handle.remove()
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        found = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{type(module).__name__} must return logits (N, classes); it returns {found}.")
    once = {name: call for name, call in calls.items() if counts[name] == 1}
    ordered = sorted(once.values(), key=lambda c: c.order)
    for i, call in enumerate(ordered):
        call.order = i
    return logits, {c.name: c for c in ordered}


def _only(calls: dict[str, _Call], name: str) -> _Call:
    if name not in calls:
        raise ValueError(f"{name!r} is not called exactly once in the forward pass; name another layer.")
    return calls[name]


def _feature(call: _Call) -> bool:
    """A feature map worth showing: (N, C, h, w) with more than one cell, not pooling or a no-op."""
    return call.output is not None and call.side != (1, 1) and not isinstance(call.module, _NEVER_STAGES)


def _children(module: nn.Module, prefix: str, calls: dict[str, _Call]) -> list[_Call]:
    """The direct children of ``prefix`` called once, in the order they completed."""
    names = [f"{prefix}.{name}" if prefix else name for name, _ in module.get_submodule(prefix).named_children()]
    return sorted((calls[n] for n in names if n in calls), key=lambda c: c.order)


def _is_chain_of_stages(children: list[_Call]) -> bool:
    """Several resolution changes one after the other, each smaller: a container of stages."""
    sides = [c.side for c in children if _feature(c)]
    changes = [(a, b) for a, b in itertools.pairwise(sides) if a != b]
    return len(changes) >= 2 and all(b[0] * b[1] < a[0] * a[1] for a, b in changes)


def _units(module: nn.Module, calls: dict[str, _Call]) -> list[_Call]:
    """The network's top-level modules, containers of stages opened, in the order they completed."""
    units = []
    pending = _children(module, "", calls)
    while pending:
        call = pending.pop(0)
        inner = _children(module, call.name, calls)
        if _is_chain_of_stages(inner):
            pending[:0] = inner
        else:
            units.append(call)
    return units


def _stages(module: nn.Module, calls: dict[str, _Call]) -> list[_Call]:
    units = [c for c in _units(module, calls) if _feature(c)]
    if not units:
        raise ValueError(
            f"{type(module).__name__} has no module that gives feature maps (N, C, h, w) once per forward pass: "
            "is it a CNN? Name its layers with stages=[...], cam_layer= and fc=."
        )
    stages = [c for c, after in zip(units, units[1:] + [None]) if after is None or after.side != c.side]
    sides = [c.side for c in stages]
    if any(b[0] * b[1] >= a[0] * a[1] for a, b in itertools.pairwise(sides)):
        found = ", ".join(f"{c.name} ({c.side[0]}x{c.side[1]})" for c in stages)
        raise ValueError(
            f"Cannot tell {type(module).__name__}'s stages: along its modules the resolution does not only "
            f"shrink ({found}). Name them with stages=[...] (and cam_layer=, fc=)."
        )
    return stages


def _classifier(calls: dict[str, _Call], cam_layer: str) -> str | None:
    """The last ``nn.Linear`` called; without one, the last module with weights after ``cam_layer``."""
    ordered = sorted(calls.values(), key=lambda c: c.order)
    linears = [c.name for c in ordered if isinstance(c.module, nn.Linear)]
    if linears:
        return linears[-1]
    after = [c.name for c in ordered if c.order > calls[cam_layer].order
             and not c.name.startswith(f"{cam_layer}.") and any(True for _ in c.module.parameters(recurse=False))]
    return after[-1] if after else None


def _blocks(module: nn.Module, calls: dict[str, _Call], stages: list[_Call], cam_call: _Call) -> list[str]:
    """The blocks inside every top-level unit, early to late, ending with the CAM layer's output."""

    def inside(call: _Call) -> list[_Call]:
        # a unit made of repeated blocks (a stage of residual blocks: one type, one output shape)
        # is opened; so is a plain nn.Sequential of them inside it (timm's ``stages.1.blocks``);
        # single layers and the different parts of one block (an Inception block's branches, an
        # inverted residual's expansion and projection) are not
        children = [c for c in _children(module, call.name, calls) if _feature(c)]
        if not children or any(not list(c.module.children()) for c in children) \
                or len({(type(c.module), c.output.shape) for c in children}) > 1:
            return [call]
        found = [b for c in children for b in (inside(c) if type(c.module) is nn.Sequential else [c])]
        return found if len(found) > 1 else [call]

    blocks = [b for unit in _units(module, calls) if _feature(unit) and list(unit.module.children())
              for b in inside(unit) if b.order <= cam_call.order]
    if len(blocks) < len(stages):  # the units are single layers (VGG's features): the stages will do
        blocks = list(stages)
    last = blocks[-1].output
    if last is None or last.shape != cam_call.output.shape or not torch.equal(last, cam_call.output):
        blocks.append(cam_call)
    return list(dict.fromkeys(b.name for b in blocks))


def _cam_refusal(module: nn.Module, cam_call: _Call, fc: str, logits: torch.Tensor) -> str | None:
    """``None`` when CAM applies to ``cam_layer`` and ``fc``, else the reason CAM gives."""
    from .explainers.cam import CAM  # the explainers import the models' helpers, not the other way

    try:
        CAM(module, cam_call.name, fc)._check_head(cam_call.output, logits)
    except ValueError as error:
        return str(error)
    return None
