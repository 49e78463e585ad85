"""Transformer attribution, the gradient-weighted attention rollout (Chefer, Gur and Wolf,
"Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
Transformers", ICCV 2021; the follow-up of "Transformer Interpretability Beyond Attention
Visualization", CVPR 2021)."""

from __future__ import annotations

import torch

from ..tokens import attention_gradients, capture_attention, pooled_row
from .base import InputExplainer, Pass, class_scores

__all__ = ["TransformerAttribution"]


class TransformerAttribution(InputExplainer):
    r"""Attention rollout in which each attention weighs by how much it raises the class score.

    Each block's attention probabilities :math:`A^{(l)}` are multiplied by the gradient of the
    class score there, the negative products cut, the heads averaged, and the relevance of every
    token to every other accumulated from the identity, block after block:

    .. math::
        \bar A^{(l)} = \mathbb{E}_h\big[(\nabla A^{(l)}_h \odot A^{(l)}_h)^+\big], \qquad
        R \leftarrow R + \bar A^{(l)} R, \quad R^{(0)} = I

    The map is the class token's row of :math:`R` over the patches, ``(N, h, w)`` on the patch
    grid. This is the ICCV 2021 paper's rule for self-attention, the one their ViT code and most
    libraries use; the CVPR 2021 "Transformer Attribution" weighs the attention's
    LRP relevance instead of :math:`A` itself, which this package does not compute. One forward and
    one backward pass; the gradient at each block's probabilities comes from the gradient at its
    heads' output (see :func:`gradcam_core.tokens.attention_gradients`).

    Works on timm Vision Transformers (ViT, DeiT); a CNN has no attention maps, a ``ValueError``.

    Example:
        >>> m = TransformerAttribution(vit)(x, target=243)   # (N, 14, 14)
    """

    families = ("ViT",)
    refusal = "it reads a Vision Transformer's attention maps (timm's ViT or DeiT), which this network has not."

    def from_pass(self, p: Pass) -> torch.Tensor:
        # A frozen model or a caller's no_grad still gives a graph: the input asks for gradients.
        with torch.enable_grad(), capture_attention(p.model) as records:
            logits = p.model(p.x.clone().requires_grad_())
            grads = attention_gradients(class_scores(logits, p.targets), records)
        relevance = None
        for record, grad in zip(records, grads):
            weighted = (grad * record.probabilities.detach()).clamp(min=0).mean(dim=1)
            if relevance is None:
                relevance = torch.eye(weighted.shape[-1], dtype=weighted.dtype, device=weighted.device)
                relevance = relevance.expand_as(weighted)
            relevance = relevance + weighted @ relevance
        return pooled_row(p.model, relevance)
