r"""Receptive fields: which input pixels a cell of a layer can see, and which it actually uses.

**Theoretical receptive field.** Each convolution or pooling with kernel :math:`k`, stride
:math:`s`, padding :math:`p` and dilation :math:`d` maps a cell of its output to :math:`k` cells of
its input, :math:`d` apart, starting :math:`p` before the cell times :math:`s`. Followed back to the
picture, a cell of layer :math:`l` sees a square whose side and spacing grow as

.. math::
    r_l = r_{l-1} + (k_l - 1)\, d_l\, j_{l-1}, \qquad j_l = j_{l-1}\, s_l, \qquad r_0 = j_0 = 1

(Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019).
Where paths meet (a residual addition) the cell sees the union of what each path sees.
:func:`receptive_field` follows the layers the picture actually passes through: it runs one
forward pass at ``input_size`` and walks the autograd graph from the layer back to the input,
reading each convolution's and pooling's kernel, stride, padding and dilation (and each explicit
padding, such as the TensorFlow "same" padding of EfficientNet, which depends on the input size).

**Effective receptive field** (Luo et al., "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks", NeurIPS 2016): the gradient of one cell with respect to the
input. It is roughly Gaussian and much smaller than the theoretical field: the pixels near the
centre reach the cell along many more paths than those at the edge.

Example:
    >>> rf = gc.receptive_field(clf.module, "layer4", (224, 224))     # ResNet34
    >>> rf.size, rf.jump                      # 899 pixels a side, 32 pixels between cells
    >>> rf.region(3, 3)                       # (x0, y0, x1, y1), clipped to the picture
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import capture_outputs, check_layers, exclusive_eval
from .tokens import family

__all__ = ["ReceptiveField", "effective_receptive_field", "receptive_field", "transformer_field"]

# Autograd nodes that keep every cell where it is: one output cell depends on the same cell of
# each input (elementwise arithmetic, activations, normalization, copies).
_CELLWISE = (
    "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Hardtanh", "Threshold", "Sigmoid", "Silu", "Gelu", "Tanh",
    "Hardswish", "Hardsigmoid", "LeakyRelu", "Elu", "Clamp", "Clone", "NativeBatchNorm", "CudnnBatchNorm",
    "BatchNorm", "ToCopy", "Alias", "Cat", "Dropout",
)


@dataclass(frozen=True)
class ReceptiveField:
    """The theoretical receptive field of a layer's cells.

    Attributes:
        size: the side of the square of input pixels one cell sees, padding included.
        jump: input pixels between the fields of two neighbouring cells (the layer's stride).
        start: ``(y, x)`` of the first pixel cell ``(0, 0)`` sees; negative where the field
            reaches into the padding.
        input_size: ``(H, W)`` of the picture it was computed for.
        layer_size: ``(h, w)`` of the layer at that picture size.
    """

    size: int
    jump: int
    start: tuple[int, int]
    input_size: tuple[int, int]
    layer_size: tuple[int, int]

    def region(self, i: int, j: int) -> tuple[int, int, int, int]:
        """The pixels cell ``(i, j)`` sees, ``(x0, y0, x1, y1)`` with the ends exclusive, clipped to the picture."""
        if not (0 <= i < self.layer_size[0] and 0 <= j < self.layer_size[1]):
            raise ValueError(f"Cell ({i}, {j}) is outside the layer's {self.layer_size[0]}x{self.layer_size[1]} cells.")
        height, width = self.input_size
        y0, x0 = self.start[0] + i * self.jump, self.start[1] + j * self.jump
        return (max(x0, 0), max(y0, 0), min(x0 + self.size, width), min(y0 + self.size, height))

    def cell_at(self, y: float, x: float) -> tuple[int, int]:
        """The cell whose field is centred nearest to picture pixel ``(y, x)``."""
        centre = (self.size - 1) / 2
        i = round((y - self.start[0] - centre) / self.jump)
        j = round((x - self.start[1] - centre) / self.jump)
        return min(max(i, 0), self.layer_size[0] - 1), min(max(j, 0), self.layer_size[1] - 1)


@dataclass(frozen=True)
class _Span:
    """Along one axis: cell 0 sees input pixels ``lo .. hi`` (inclusive), cell ``c`` those shifted by ``c * jump``."""

    lo: int
    hi: int
    jump: int

    def through(self, kernel: int, stride: int, padding: int, dilation: int) -> _Span:
        return _Span(self.lo - padding * self.jump, self.hi + ((kernel - 1) * dilation - padding) * self.jump,
                     self.jump * stride)


def receptive_field(model: nn.Module, layer: str, input_size: tuple[int, int]) -> ReceptiveField:
    """The theoretical receptive field of ``layer``'s cells for pictures of ``input_size = (H, W)``.

    Raises:
        ValueError: an unknown layer, or one whose cells depend on the picture in a way this does not
            follow (global pooling, resizing, reshaping): the message names the operation. A
            transformer's layer (:func:`gradcam_core.tokens.family` not ``"CNN"``): self-attention
            lets a token read every patch, so there is no box to compute; the message says so.

    Example:
        >>> receptive_field(model, "layer1", (224, 224)).size      # ResNet34's first stage
        59
    """
    check_layers(model, [layer])
    if family(model) != "CNN":
        raise ValueError(transformer_field(model))
    parameter = next(model.parameters(), None)
    x = torch.zeros(1, 3, *input_size, requires_grad=True,
                    device=parameter.device if parameter is not None else None)
    with exclusive_eval(model), torch.enable_grad(), capture_outputs(model, [layer]) as captured:
        model(x)
        output = captured[layer]
    if output.dim() != 4:
        raise ValueError(f"{layer!r} gives a {output.dim()}-dimensional output; receptive fields need (N, C, h, w) maps.")
    spans = _spans(output.grad_fn, x)
    if spans is None:
        raise ValueError(f"{layer!r} does not depend on the picture.")
    rows, columns = spans
    if rows.hi - rows.lo != columns.hi - columns.lo or rows.jump != columns.jump:
        raise ValueError(f"{layer!r} has a field that is not square; only square fields are supported.")
    return ReceptiveField(rows.hi - rows.lo + 1, rows.jump, (rows.lo, columns.lo), tuple(input_size),
                          tuple(output.shape[-2:]))


def transformer_field(model: nn.Module) -> str:
    """Why a transformer's tokens have no receptive field box, in one sentence for the pages."""
    return (
        f"{type(model).__name__} is a transformer ({family(model)}): its self-attention lets each token read "
        "every patch of the picture, so after the first attention a token can see the whole picture and no "
        "convolution's box bounds it; its effective field (the gradient) still shows which pixels it uses."
    )


def effective_receptive_field(model: nn.Module, x: torch.Tensor, layer: str, cell: tuple[int, int]) -> torch.Tensor:
    """``(H, W)``: how strongly each pixel of ``x`` (one picture) moves cell ``cell = (i, j)`` of ``layer``.

    The absolute input gradient of the cell's sum over channels, summed over the colour channels,
    in eval mode under the model's lock; the model and its gradients are left as they were. A
    transformer's token is followed through half its squared length instead: a layer norm's output
    sums to its bias over the channels whatever the picture, so the sum's gradient would vanish.
    """
    check_layers(model, [layer])
    x = x[:1].detach().clone().requires_grad_(True)
    with exclusive_eval(model), torch.enable_grad(), capture_outputs(model, [layer]) as captured:
        model(x)
        output = captured[layer]
        i, j = cell
        if not (0 <= i < output.shape[-2] and 0 <= j < output.shape[-1]):
            raise ValueError(f"Cell ({i}, {j}) is outside {layer!r}'s {output.shape[-2]}x{output.shape[-1]} cells.")
        values = output[0, :, i, j]
        (gradient,) = torch.autograd.grad(values.sum() if family(model) == "CNN" else values.square().sum() / 2, x)
    return gradient[0].abs().sum(dim=0)


def _spans(root, x: torch.Tensor) -> tuple[_Span, _Span] | None:
    """The (rows, columns) spans of ``root``'s output cell 0 in ``x``'s pixels; ``None`` if it never reaches ``x``.

    A depth-first walk of the autograd graph with its own stack (a deep network would overflow
    Python's), each node settled once its inputs are.
    """
    memo: dict = {}
    stack = [root]
    while stack:
        node = stack[-1]
        if node is None or node in memo:
            stack.pop()
            continue
        pending = [child for child, _ in node.next_functions if child is not None and child not in memo]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        memo[node] = _node_spans(node, [memo.get(child) for child, _ in node.next_functions], x)
    return memo.get(root)


def _node_spans(node, inputs: list, x: torch.Tensor) -> tuple[_Span, _Span] | None:
    """One autograd node's spans, from its inputs' (``None`` for inputs that never reach ``x``)."""
    name = re.sub(r"Backward\d*$", "", type(node).__name__)
    if name == "AccumulateGrad":
        return (_Span(0, 0, 1), _Span(0, 0, 1)) if node.variable is x else None
    reaching = [spans for spans in inputs if spans is not None]
    if not reaching:
        return None
    if name == "Convolution":
        if node._saved_transposed:
            raise ValueError("Transposed convolutions are not supported.")
        kernel = node._saved_weight.shape[-2:]
        return tuple(span.through(k, s, p, d) for span, k, s, p, d in
                     zip(inputs[0], kernel, node._saved_stride, node._saved_padding, node._saved_dilation))
    if name in ("MaxPool2DWithIndices", "AvgPool2D"):
        dilation = getattr(node, "_saved_dilation", (1, 1))
        stride = node._saved_stride or node._saved_kernel_size
        return tuple(span.through(k, s, p, d) for span, k, s, p, d in
                     zip(inputs[0], node._saved_kernel_size, stride, node._saved_padding, dilation))
    if name == "ConstantPadNd":
        left, _, top, _ = (list(node._saved_pad) + [0, 0, 0, 0])[:4]  # (left, right, top, bottom)
        rows, columns = inputs[0]
        return (_Span(rows.lo - top * rows.jump, rows.hi - top * rows.jump, rows.jump),
                _Span(columns.lo - left * columns.jump, columns.hi - left * columns.jump, columns.jump))
    if name in _CELLWISE:
        return tuple(_Span(min(s.lo for s in axis), max(s.hi for s in axis), _same_jump(axis, name))
                     for axis in zip(*reaching))
    raise ValueError(
        f"Cannot follow the receptive field through {name}: it does not keep "
        "cells in place like a convolution, a pooling or an elementwise operation."
    )


def _same_jump(spans, name: str) -> int:
    jumps = {span.jump for span in spans}
    if len(jumps) != 1:
        raise ValueError(f"Paths of different strides meet at {name}; their cells do not line up.")
    return jumps.pop()
