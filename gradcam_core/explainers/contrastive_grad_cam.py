"""Contrastive Grad-CAM: "why c, rather than b?" (Prabhushankar et al., "Contrastive Explanations
in Neural Networks", ICIP 2020), as the gradient of a difference of logits."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

from .base import Pass
from .contrast import ContrastCAM

__all__ = ["ContrastiveGradCAM"]


class ContrastiveGradCAM(ContrastCAM):
    r"""Grad-CAM of the difference between the class's score and another class's: why ``c``, not ``b``?

    .. math::
        \alpha_k = \frac{1}{Z} \sum_{i,j} \frac{\partial (y^c - y^b)}{\partial A^k_{ij}}, \qquad
        L^{c \setminus b} = \mathrm{ReLU}\Big(\sum_k \alpha_k A^k\Big)

    ``versus`` is the class ``b``: one class for every image, one per image, or ``None`` for each
    image's runner-up (its highest-scoring class other than ``c``). What both classes share (the
    fur of a cat and of a dog) cancels; what is left is the evidence that tells them apart. At a
    layer followed by global average pooling and a linear layer,
    :math:`\alpha_k = (w^c_k - w^b_k) / Z`. One forward and one backward pass of its own.

    Prabhushankar et al. ask the same question with the gradient of a loss that takes ``b`` as the
    label; the difference of the two logits answers it without the softmax, so the maps of
    ``c`` against ``b`` and of ``b`` against ``c`` are each other's negative before the ReLU.

    Example:
        >>> r = ContrastiveGradCAM(model, ["layer4"], versus=281)(x, target=243)   # dog, not cat
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, versus: int | Sequence[int] | None = None):
        super().__init__(model, layers)
        if versus is not None:
            values = versus.tolist() if isinstance(versus, torch.Tensor) else versus
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
                raise ValueError(f"versus must be a class index, one per image, or None, got {versus!r}.")
        self.versus = versus

    def score(self, logits: torch.Tensor, p: Pass) -> torch.Tensor:
        versus = self.contrasted(p)
        return logits.gather(1, p.targets[:, None])[:, 0] - logits.gather(1, versus[:, None])[:, 0]

    def contrasted(self, p: Pass) -> torch.Tensor:
        """``(N,)``: the class each image's target is contrasted with."""
        n, num_classes = p.logits.shape
        if self.versus is None:
            others = p.logits.scatter(1, p.targets[:, None], -torch.inf)
            return others.argmax(dim=1)
        versus = torch.as_tensor(self.versus, device=p.logits.device).long()
        if versus.dim() == 1 and versus.numel() != n:
            raise ValueError(f"versus names {versus.numel()} classes for a batch of {n} images.")
        versus = versus.expand(n)
        if ((versus < 0) | (versus >= num_classes)).any():
            raise ValueError(f"versus: class out of range, this model has {num_classes} classes "
                             f"(0 to {num_classes - 1}).")
        if (versus == p.targets).any():
            raise ValueError("versus must differ from the class explained: y^c - y^c is 0 everywhere.")
        return versus
