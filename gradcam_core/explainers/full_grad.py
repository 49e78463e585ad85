"""FullGrad (Srinivas and Fleuret, "Full-Gradient Representation for Neural Network Visualization",
NeurIPS 2019)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .base import InputExplainer, Pass, class_scores

__all__ = ["FullGrad"]

# pytorch-grad-cam's scale_cam_image: (m - min) / (max - min + 1e-7); a flat map becomes zeros
# and a map whose range is far below 1e-7 stays faint instead of being blown up to [0, 1].
_EPS = 1e-7


class FullGrad(InputExplainer):
    r"""The input gradient times the input, plus every bias's gradient times that bias, each made
    a picture and summed.

    The score of a ReLU network is exactly the sum of the input-gradient term and one term per
    bias (the full-gradient decomposition): :math:`y^c = \nabla_x y^c \cdot x + \sum_b \nabla_b
    y^c \cdot b`. FullGrad keeps each term's spatial layout: for a convolution or BatchNorm with
    bias :math:`b_k` whose output gets the gradient :math:`G_k`, the term is the map
    :math:`|b_k G_k|`. Each term is post-processed by :math:`\psi` (absolute value, scaled to
    [0, 1] channel by channel, upsampled bilinearly to the input) and

    .. math::
        S^c = \sum_{ch} \psi\big(|x \odot \nabla_x y^c|_{ch}\big)
            + \sum_{l} \sum_k \psi\big(|b^l_k\, G^l_k|\big)

    as in pytorch-grad-cam's ``FullGrad``. A BatchNorm in eval mode computes
    :math:`\gamma (a - \mu)/\sigma + \beta`, so its bias is :math:`\beta - \gamma\mu/\sigma`
    (the authors' code and pytorch-grad-cam fold the running statistics the same way).

    Every ``nn.Conv2d`` and ``nn.BatchNorm2d`` (subclasses included: timm's ``Conv2dSame`` and
    ``BatchNormAct2d``) that has a bias counts, once per call. A norm layer with its activation
    inside (timm's ``BatchNormAct2d`` runs its ``drop`` and ``act`` children after adding the
    bias) is read where the bias was added, at the input of the first child it calls.
    pytorch-grad-cam matches the exact types ``nn.Conv2d`` and ``nn.BatchNorm2d``, so it skips
    the subclasses (on EfficientNet-Lite0 every bias) and reads a fused norm layer after its
    activation. The gradients at the input and at every bias come from one forward pass of its own
    and one ``torch.autograd.grad``. It explains pixels, not chosen layers: ``(N, H, W)``, not
    normalized.

    Example:
        >>> s = FullGrad(model)(x, target=243)     # (N, H, W)
        >>> picture = normalize(s)
    """

    def from_pass(self, p: Pass) -> torch.Tensor:
        size = tuple(p.x.shape[-2:])
        leaf = p.x.detach().requires_grad_(True)
        with torch.enable_grad():
            with _bias_outputs(p.model) as recorded:
                # a copy of the leaf: a model that changes its input in place still works
                logits = p.model(leaf.clone())
            outputs = [output for output, _ in recorded]
            input_gradient, *gradients = torch.autograd.grad(
                class_scores(logits, p.targets), [leaf, *outputs], allow_unused=True
            )
        saliency = _scaled((input_gradient * p.x).abs()).sum(dim=1)
        for (_, bias), gradient in zip(recorded, gradients):
            if gradient is None:  # a convolution whose output the score does not use
                continue
            terms = _scaled((gradient * bias[:, None, None]).abs()).sum(dim=1)
            # bilinear upsampling is linear: summing the channels first gives the same picture. As
            # maps.upsample, but in the gradient's own precision (upsample works in float32).
            saliency = saliency + F.interpolate(terms[:, None], size, mode="bilinear", align_corners=False)[:, 0]
        return saliency.detach()


def _scaled(m: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)``: each map ``(n, c)`` shifted to start at 0 and divided by its top + 1e-7."""
    low = m.amin(dim=(2, 3), keepdim=True)
    shifted = m - low
    return shifted / (shifted.amax(dim=(2, 3), keepdim=True) + _EPS)


def _bias(module: nn.Module) -> torch.Tensor | None:
    """The bias ``module`` adds to its output (BatchNorm's with its running statistics folded
    in), detached; ``None`` for modules without one."""
    if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or module.bias is None:
        return None
    bias = module.bias.detach()
    if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
        bias = bias - module.running_mean * module.weight.detach() * torch.rsqrt(module.running_var + module.eps)
    return bias


@contextmanager
def _bias_outputs(model: nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Record ``(output, bias)`` for every call of every module with a bias inside the block.

    The recorded tensor is where the bias was added, still in the graph; the network goes on
    with a clone, so an in-place activation after it changes the clone. For a module with
    children (a norm layer with its activation inside) that is the input of the first child it
    calls, else the module's output.
    """
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = []

    def record(tensor: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        recorded.append((tensor, bias.to(tensor.dtype)))
        return tensor.clone()

    def watch(module: nn.Module, bias: torch.Tensor) -> None:
        children = list(module.children())
        if not children:
            handles.append(module.register_forward_hook(lambda m, args, output: record(output, bias)))
            return
        waiting = [False]  # between the module's call and the first of its children's

        def opened(m, args):
            waiting[0] = True

        def first_child(m, args):
            if waiting[0]:
                waiting[0] = False
                return (record(args[0], bias), *args[1:])
            return None

        def closed(m, args, output):
            if waiting[0]:  # no child ran: the bias is in the output
                waiting[0] = False
                return record(output, bias)
            return None

        handles.append(module.register_forward_pre_hook(opened))
        handles.extend(child.register_forward_pre_hook(first_child) for child in children)
        handles.append(module.register_forward_hook(closed))

    try:
        for module in model.modules():
            bias = _bias(module)
            if bias is not None:
                watch(module, bias)
        yield recorded
    finally:
        for handle in handles:
            handle.remove()
