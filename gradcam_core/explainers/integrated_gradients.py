"""Integrated Gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import InputExplainer, Needs, Pass, Progress, Result, Target, run
from .paths import baseline, check_baseline, check_count
from .perturbation import Tally, check_batch_size, chunks

__all__ = ["IntegratedGradients"]

#: The integration rules: Gauss-Legendre (captum's default) and the trapezoid rule.
RULES = ("gauss_legendre", "trapezoid")


class IntegratedGradients(InputExplainer):
    r"""The gradient averaged along the straight path from a baseline to the picture, times the way.

    .. math::
        \mathrm{IG}^c(x) = (x - x') \odot \int_0^1 \frac{\partial y^c}{\partial x}\big(x' + \alpha (x - x')\big)\,
        d\alpha \approx (x - x') \odot \sum_{k} w_k \frac{\partial y^c}{\partial x}\big(x' + \alpha_k (x - x')\big)

    Completeness: the map adds up to :math:`y^c(x) - y^c(x')`, up to the error of the rule, which
    the :class:`~.base.Result` reports per image (``integration_error``, captum's convergence
    delta); more ``steps`` make it smaller. For a linear model the map is exactly
    :math:`(x - x') \odot w`. ``rule`` is ``"gauss_legendre"`` (captum's default: ``steps`` nodes
    inside the path, exact for polynomials of degree ``2 steps - 1``) or ``"trapezoid"``
    (``steps`` equally spaced nodes from :math:`x'` to :math:`x`).

    The baseline :math:`x'` is ``"black"`` (pixel value 0 before the model's normalization, read
    from the module's ``input_normalization`` attribute, which :func:`~gradcam_core.load_model`
    sets; a module without it is taken to see raw values and gets 0 in its input space), ``"blur"``
    (the picture strongly Gaussian-blurred: no edge or texture left), a number, or a tensor that
    broadcasts to the input, all in the model's input space.

    What comes from the shared pass: the targets and :math:`y^c(x)`; with the trapezoid rule also
    the last node's gradient, which is the plain input gradient at :math:`x` (shared with
    ``saliency``, ``input_x_gradient`` or a noise-free ``smooth_grad`` in the same
    :func:`~gradcam_core.explain` call). The other nodes cost one gradient pass per image each
    (``passes``), ``batch_size`` points at a time.

    The nodes run in the channels-last layout (for 4-D pictures): on a CPU the convolutions of a
    batch with gradients are faster so (the whole path measured on one thread: 8 % less time on
    ResNet34, 20 % on EfficientNet-Lite0). The map is the same sum, up to float rounding.

    Example:
        >>> ig = IntegratedGradients(model, steps=32, baseline="black")
        >>> m = ig(x, target=243)                    # (N, 3, H, W)
        >>> ig.result(x, 243).integration_error      # (N,): sum of the map - (y(x) - y(x'))
    """

    slow = True

    def __init__(self, model: nn.Module, steps: int = 32, baseline: str | float | torch.Tensor = "black",
                 rule: str = "gauss_legendre", batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model)
        if rule not in RULES:
            raise ValueError(f"rule must be {' or '.join(map(repr, RULES))}, got {rule!r}.")
        self.steps = check_count(steps, "steps", least=2 if rule == "trapezoid" else 1)
        self.rule = rule
        self.baseline = check_baseline(baseline)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress
        #: Gradient passes per image (the trapezoid rule's last node is the shared pass's).
        self.passes = steps - (rule == "trapezoid")

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        return self.result(x, target).maps["input"]

    def result(self, x: torch.Tensor, target: Target = None) -> Result:
        """The map under ``maps["input"]``, with the targets, logits and ``integration_error``."""
        _, (output,) = run(self.model, x, target, [self])
        return output.value

    def needs(self) -> Needs:
        return Needs(input_gradient=self.rule == "trapezoid")

    def from_pass(self, p: Pass) -> Result:
        x, n = p.x, p.x.shape[0]
        start = baseline(p.model, x, self.baseline)
        way = x - start
        total = self._integral(p.model, start, way, p.targets)
        if self.passes < self.steps:
            total = total + float(nodes(self.rule, self.steps)[1][-1]) * p.input_gradient
        attributions = total * way
        with torch.no_grad():
            start_logits = torch.cat([p.model(start[c.start:c.stop]) for c in chunks(n, self.batch_size)])
        gain = (p.logits - start_logits).gather(1, p.targets[:, None])[:, 0]
        error = attributions.sum(dim=(1, 2, 3)) - gain
        return Result({"input": attributions}, p.logits, p.targets, integration_error=error)

    def _integral(self, model: nn.Module, start: torch.Tensor, way: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The rule's weighted sum of ``model``'s input gradients at its nodes from ``start`` along ``way``.

        The gradient is taken with respect to ``start``, each node's score weighted: autograd
        itself adds up the nodes of an image. An image's nodes in a batch are made in one
        broadcast, with no copy of its start and way per node.
        """
        alphas, weights = (v.to(start) for v in nodes(self.rule, self.steps))
        total = torch.zeros_like(way, memory_format=torch.contiguous_format)  # the caller's layout, not the nodes'
        if start.dim() == 4:  # the nodes inherit the layout
            start, way = (v.contiguous(memory_format=torch.channels_last) for v in (start, way))
        n, shape = start.shape[0], (-1, *[1] * (start.dim() - 1))
        tally = Tally(n * self.passes, self.progress)
        for chunk in chunks(n * self.passes, self.batch_size):
            index = torch.arange(chunk.start, chunk.stop, device=start.device)
            image, node = index // self.passes, index % self.passes
            with torch.enable_grad():
                leaf = start.detach().requires_grad_(True)
                parts = [torch.addcmul(leaf[i:i + 1], alphas[node[image == i]].view(shape), way[i:i + 1])
                         for i in range(int(image[0]), int(image[-1]) + 1)]
                points = parts[0] if len(parts) == 1 else torch.cat(parts)
                scores = model(points).gather(1, targets[image, None])[:, 0]
                (gradient,) = torch.autograd.grad(scores, leaf, grad_outputs=weights[node])
            total += gradient
            tally.advance(len(chunk))
        return total


def nodes(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alphas, weights)``, float64: where the rule samples the path in [0, 1] and how it weighs them.

    Gauss-Legendre's nodes and weights are numpy's ``leggauss`` moved from [-1, 1] to [0, 1], as
    captum computes them; the trapezoid's end nodes are the baseline and the picture.
    """
    if rule == "gauss_legendre":
        points, weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (1 + points)), torch.from_numpy(0.5 * weights)
    weights = torch.full((steps,), 1 / (steps - 1), dtype=torch.float64)
    weights[[0, -1]] /= 2
    return torch.linspace(0, 1, steps, dtype=torch.float64), weights
