"""Attention rollout (Abnar and Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020)."""

from __future__ import annotations

import torch
from torch import nn

from ..tokens import capture_attention, pooled_row
from .base import InputExplainer, Pass

__all__ = ["AttentionRollout"]

_FUSIONS = ("mean", "max", "min")


class AttentionRollout(InputExplainer):
    r"""How much of the class token comes from each patch, following the attention through every block.

    Each block's attention probabilities are fused over the heads (``head_fusion``: mean, max or
    min), the residual connection added as the identity, the rows normalized to 1, and the blocks
    multiplied, first block last:

    .. math::
        \tilde A^{(l)} = \operatorname{rownorm}\big(\tfrac12 \operatorname{fuse}_h A^{(l)}_h + \tfrac12 I\big),
        \qquad R = \tilde A^{(L)} \cdots \tilde A^{(1)}

    The map is the class token's row of :math:`R` over the patches, ``(N, h, w)`` on the patch grid.
    ``discard_ratio`` zeroes that share of each fused matrix's smallest entries before the identity
    is added, sparing the class token's attention to itself, as jacobgil/vit-explain does (whose
    normalization divides by the column sums, a slip; here each row is divided by its own sum).
    No gradient and no class: one forward pass, the same map for every class.

    Works on timm Vision Transformers (ViT, DeiT); a CNN has no attention maps, a ``ValueError``.

    Example:
        >>> m = AttentionRollout(vit, head_fusion="max", discard_ratio=0.9)(x)   # (N, 14, 14)
    """

    families = ("ViT",)
    refusal = "it reads a Vision Transformer's attention maps (timm's ViT or DeiT), which this network has not."

    def __init__(self, model: nn.Module, head_fusion: str = "mean", discard_ratio: float = 0.0):
        super().__init__(model)
        if head_fusion not in _FUSIONS:
            raise ValueError(f"head_fusion must be one of {', '.join(_FUSIONS)}, got {head_fusion!r}.")
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) or not 0 <= discard_ratio < 1:
            raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}.")
        self.head_fusion, self.discard_ratio = head_fusion, float(discard_ratio)

    def from_pass(self, p: Pass) -> torch.Tensor:
        with torch.no_grad(), capture_attention(p.model) as records:
            p.model(p.x)
        rollout = None
        for record in records:
            a = self._fused(record.probabilities)
            t = a.shape[-1]
            a = 0.5 * a + 0.5 * torch.eye(t, dtype=a.dtype, device=a.device)
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        return pooled_row(p.model, rollout)

    def _fused(self, probabilities: torch.Tensor) -> torch.Tensor:
        fused = getattr(probabilities, self.head_fusion)(dim=1)
        fused = fused if self.head_fusion == "mean" else fused.values
        k = int(fused[0].numel() * self.discard_ratio)
        if k == 0:
            return fused
        flat = fused.flatten(1)
        drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1, largest=False).indices, True)
        drop[:, 0] = False  # the class token's attention to itself stays
        return flat.masked_fill(drop, 0).view_as(fused)
