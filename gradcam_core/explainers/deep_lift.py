"""DeepLIFT (Shrikumar et al., "Learning Important Features Through Propagating Activation
Differences", ICML 2017), the rescale rule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .base import InputExplainer, Needs, Pass, class_scores
from .paths import baseline, check_baseline

__all__ = ["COVERED", "DeepLift"]

#: The modules whose backward step the rescale rule replaces, and autograd's names for that step.
RESCALED = {
    nn.ReLU: ("ReluBackward", "ThresholdBackward"),
    nn.ReLU6: ("HardtanhBackward",),
    nn.ELU: ("EluBackward",),
    nn.LeakyReLU: ("LeakyReluBackward",),
    nn.Sigmoid: ("SigmoidBackward",),
    nn.Tanh: ("TanhBackward",),
    nn.Softplus: ("SoftplusBackward",),
    nn.MaxPool2d: ("MaxPool2DWithIndicesBackward",),
}
#: What the rule covers, for people.
COVERED = "ReLU, ReLU6, ELU, LeakyReLU, Sigmoid, Tanh, Softplus and MaxPool2d modules"
# Autograd steps that are non-linear element by element (or max pooling): each one must be a
# covered module's, else the rule would pass a plain gradient through it.
_NON_LINEAR = ("Relu", "Threshold", "Hardtanh", "Elu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus", "Silu",
               "Gelu", "Hardswish", "Hardsigmoid", "Mish", "Softmax", "LogSoftmax", "MaxPool", "AdaptiveMaxPool",
               "Prelu", "Celu", "Selu", "Rrelu", "LogSigmoid", "Softshrink", "Hardshrink")
#: Below this input difference, a unit keeps its plain gradient (captum's eps).
EPS = 1e-10


class DeepLift(InputExplainer):
    r"""Each pixel's share of how far the score moved from a baseline picture, by the rescale rule.

    DeepLIFT explains the difference :math:`\Delta y^c = y^c(x) - y^c(x_0)` from a baseline
    :math:`x_0` (``"black"``, ``"blur"``, a number or a tensor in the model's input space). It
    backpropagates like the gradient, except that each non-linearity :math:`y = f(u)` multiplies by
    its secant, not its slope:

    .. math::
        m = \frac{f(u) - f(u_0)}{u - u_0} = \frac{\Delta y}{\Delta u} \quad (\text{the slope where }
        |\Delta u| < 10^{-10}), \qquad
        C^c = (x - x_0) \odot m_{x}, \qquad \sum C^c = \Delta y^c

    (summation-to-delta: the contributions add up to the change of the score). A ReLU that is off
    at both pictures passes nothing, one that switched on passes its share, where the gradient is
    all-or-nothing. Max pooling follows captum's rule (the winner of the two pictures' maxima).
    Covered: ReLU, ReLU6 (so EfficientNet-Lite), ELU, LeakyReLU, Sigmoid, Tanh, Softplus modules
    and MaxPool2d; a network that applies any other non-linearity (SiLU, GELU, a functional ReLU,
    ...) is refused with a ``ValueError``, since the rule would pass a plain gradient through it.
    Products of two signals (squeeze-and-excitation) get the plain gradient, as in captum.

    One forward pass of the picture and its baseline together, one backward pass; the rule is
    hooked on the autograd steps of that pass only (no module is replaced, no hook outlives it).
    Returns ``(N, 3, H, W)``.

    Example:
        >>> c = DeepLift(model, baseline="blur")(x, target=243)     # (N, 3, H, W)
    """

    families = ("CNN",)
    refusal = (
        "its rescale rule does not cover GELU, softmax attention or layer norm. Integrated Gradients "
        "explains a transformer against the same baselines."
    )

    def __init__(self, model: nn.Module, baseline: str | float | torch.Tensor = "black"):
        super().__init__(model)
        self.baseline = check_baseline(baseline)

    def needs(self) -> Needs:
        return Needs()

    def from_pass(self, p: Pass) -> torch.Tensor:
        x, n = p.x, p.x.shape[0]
        reference = baseline(p.model, x, self.baseline)
        with torch.enable_grad():
            leaf = torch.cat([x, reference]).requires_grad_(True)
            with _rescaled(p.model, n) as nodes:
                logits = p.model(leaf.clone())
            _check_covered(logits, nodes)
            # Both halves' scores, as in captum: the max-pooling rule mixes the two halves' gradients.
            (gradient,) = torch.autograd.grad(class_scores(logits, p.targets.repeat(2)), leaf)
        return (x - reference) * gradient[:n]


@contextmanager
def _rescaled(model: nn.Module, n: int) -> Iterator[set]:
    """Hook the rule on the autograd step of every call of a covered module in the block's pass.

    ``nodes`` collects those steps. A pre-hook keeps each call's input (an in-place activation
    overwrites it), a forward hook the output; both are removed on the way out.
    """
    nodes: set = set()
    inputs: dict[int, list[torch.Tensor]] = {}

    def before(module, args):
        inputs.setdefault(id(module), []).append(args[0].detach().clone())

    def after(module, args, output):
        u = inputs[id(module)].pop()
        node = output.grad_fn
        names = RESCALED[type(module)]
        if node is None or not type(node).__name__.startswith(names):
            raise ValueError(
                f"DeepLift needs the own backward step of each {type(module).__name__}, but its output comes from "
                f"{type(node).__name__} (an in-place activation on a view?). Use inplace=False there.")
        rule = _max_pool_rule(module, u, output.detach(), n) if isinstance(module, nn.MaxPool2d) \
            else _rescale_rule(u, output.detach(), n)
        node.register_hook(rule)
        nodes.add(node)

    handles = []
    try:
        for module in model.modules():
            if type(module) in RESCALED:
                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(after))
        yield nodes
    finally:
        for handle in handles:
            handle.remove()


def _halves(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t[:n] - t[n:]``, repeated for both halves: the picture's difference from its baseline."""
    return torch.cat(2 * [t[:n] - t[n:]])


def _rescale_rule(u: torch.Tensor, y: torch.Tensor, n: int):
    du, dy = _halves(u, n), _halves(y, n)
    flat = du.abs() < EPS

    def rule(grad_inputs, grad_outputs):
        secant = dy / torch.where(flat, 1.0, du)
        return (torch.where(flat, grad_inputs[0], grad_outputs[0] * secant), *grad_inputs[1:])

    return rule


def _max_pool_rule(pool: nn.MaxPool2d, u: torch.Tensor, y: torch.Tensor, n: int):
    """captum's rule: the gradient goes to each picture's winners, times the change of the larger maximum."""
    du = _halves(u, n)
    y_x, y_0 = y[:n], y[n:]
    top = torch.max(y_x, y_0)
    dy = torch.cat([top - y_0, y_x - top])
    _, indices = F.max_pool2d(u, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, True)
    flat = du.abs() < EPS

    def rule(grad_inputs, grad_outputs):
        # Each output cell's share goes to its winner, added up where overlapping windows share one.
        shares = (grad_outputs[0] * dy).flatten(2)
        spread = torch.zeros_like(u).flatten(2).scatter_add_(2, indices.flatten(2), shares).view_as(u)
        spread = torch.cat(2 * [spread[:n] + spread[n:]])
        return (torch.where(flat, grad_inputs[0], spread / torch.where(flat, 1.0, du)), *grad_inputs[1:])

    return rule


def _check_covered(logits: torch.Tensor, hooked: set) -> None:
    """A ``ValueError`` if the pass went through a non-linear step that no covered module made."""
    seen, stack, strangers = set(), [logits.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = type(node).__name__
        if node not in hooked and name.startswith(_NON_LINEAR):
            strangers.add(name.removesuffix("0").removesuffix("1").removesuffix("Backward"))
        stack.extend(next_node for next_node, _ in node.next_functions)
    if strangers:
        raise ValueError(
            f"DeepLift's rescale rule covers {COVERED}; this network also applies {', '.join(sorted(strangers))} "
            "(another module, or a function in forward), which it would pass as a plain gradient.")
