"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt and Kuehne, "LeGrad: An Explainability Method
for Vision Transformers via Feature Formation Sensitivity", arXiv 2024, ICCV 2025)."""

from __future__ import annotations

import torch
from torch import nn

from ..tokens import attention_gradients, capture_attention, patch_grid
from .base import InputExplainer, Pass

__all__ = ["LeGrad"]


class LeGrad(InputExplainer):
    r"""The positive gradient of each block's own class score at that block's attention maps.

    Each block :math:`l` is read out as if it were the last: its tokens :math:`z^{(l)}` averaged,
    passed through the model's final norm and head, give a score :math:`s^{(l)}`. Its gradient at
    the block's attention probabilities is rectified and averaged over the heads :math:`h` and the
    queries :math:`i`, which leaves one value per key token; the patches' values are averaged over
    the blocks:

    .. math::
        s^{(l)} = \operatorname{head}\big(\operatorname{norm}(\tfrac1T \textstyle\sum_t z^{(l)}_t)\big)_c,
        \qquad E = \frac{1}{|L|} \sum_{l \in L} \frac{1}{H T} \sum_{h, i}
        \Big(\frac{\partial s^{(l)}}{\partial A^{(l)}_{h, i, \cdot}}\Big)^+

    The average of all the tokens (the class token too) is the authors' read-out and torchcam's;
    the attention values themselves are not multiplied in. ``blocks`` keeps the last blocks only
    (all by default; the authors' CLIP code keeps two). One forward pass and one backward pass per
    block; ``(N, h, w)`` on the patch grid.

    Works on timm Vision Transformers (ViT, DeiT); a CNN has no attention maps, a ``ValueError``.

    Example:
        >>> m = LeGrad(vit, blocks=4)(x, target=243)   # (N, 14, 14)
    """

    families = ("ViT",)
    refusal = "it reads a Vision Transformer's attention maps (timm's ViT or DeiT), which this network has not."

    def __init__(self, model: nn.Module, blocks: int | None = None):
        super().__init__(model)
        if blocks is not None and (isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1):
            raise ValueError(f"blocks must be a positive number of blocks (or None for all), got {blocks!r}.")
        self.blocks = blocks

    def from_pass(self, p: Pass) -> torch.Tensor:
        model = p.model
        outputs: list[torch.Tensor] = []
        # A frozen model or a caller's no_grad still gives a graph: the input asks for gradients.
        with torch.enable_grad(), capture_attention(model) as records:
            handles = [block.register_forward_hook(lambda m, i, o: outputs.append(o)) for block in model.blocks]
            try:
                model(p.x.clone().requires_grad_())
            finally:
                for handle in handles:
                    handle.remove()
            chosen = range(len(records))[-self.blocks :] if self.blocks else range(len(records))
            relevance = []
            for n, l in enumerate(chosen):
                scores = model.head(model.fc_norm(model.norm(outputs[l].mean(dim=1))))
                score = scores.gather(1, p.targets[:, None]).sum()
                (grad,) = attention_gradients(score, [records[l]], retain_graph=n < len(chosen) - 1)
                relevance.append(grad.clamp(min=0).mean(dim=(1, 2)))
        prefix, grid = patch_grid(model)
        return torch.stack(relevance).mean(dim=0)[:, prefix:].unflatten(1, grid)
