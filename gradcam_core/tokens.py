"""Transformer tokens seen as feature maps: the ``(N, C, h, w)`` view of a layer's output.

A CNN's layer gives ``(N, C, h, w)`` maps, which every layer method weighs. A Vision Transformer's
block gives tokens instead: timm's ViT and DeiT ``(N, T, C)``, the class (and distillation, and
register) tokens first, then one token per patch in row-major order; Swin ``(N, H, W, C)``,
channels last, its windows already merged back at a stage's or block's output. :func:`layout`
says how a module's output of a given model maps onto a grid, so that
:func:`gradcam_core.hooks.capture_outputs` can record the grid and hand the rest of the network
a tensor rebuilt from it: the gradient at the recorded grid is then exactly the gradient at the
patch tokens, and every layer method works on a transformer unchanged. A CNN's layers have no
layout (``None``), and their outputs are recorded as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Attention",
    "TokenLayout",
    "attention_gradients",
    "attention_modules",
    "capture_attention",
    "family",
    "is_vision_transformer",
    "layout",
    "patch_grid",
    "pooled_row",
]


@dataclass(frozen=True)
class TokenLayout:
    """How one layer's output lays its patches out.

    Attributes:
        prefix: the tokens before the patches (class, distillation, registers), left out of the
            grid (0 for Swin and for ViT's patch embedding).
        grid: ``(h, w)`` patches.
        channels_last: ``(N, h, w, C)`` (Swin) rather than ``(N, T, C)`` tokens (ViT).
    """

    prefix: int
    grid: tuple[int, int]
    channels_last: bool = False

    def to_grid(self, output: torch.Tensor) -> torch.Tensor:
        """The ``(N, C, h, w)`` copy of ``output``'s patches, still in the autograd graph."""
        if self.channels_last:
            patches = output
        else:
            patches = output[:, self.prefix :].unflatten(1, self.grid)
        return patches.permute(0, 3, 1, 2).contiguous()

    def from_grid(self, grid: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``output`` rebuilt with its patches read from ``grid``: equal in value, a new tensor.

        The network goes on from this tensor, so the score depends on the patches through
        ``grid`` alone and ``d score / d grid`` is exactly the gradient at the patch tokens.
        """
        patches = grid.permute(0, 2, 3, 1)
        if self.channels_last:
            return patches.contiguous()
        return torch.cat([output[:, : self.prefix], patches.flatten(1, 2)], dim=1)


def _timm_class(module: str, name: str) -> type | None:
    # A model can only be timm's once timm is imported: a session that never imported it
    # (a torchvision CNN's) does not pay for the import here.
    if "timm" not in sys.modules:
        return None
    try:
        return getattr(__import__(f"timm.models.{module}", fromlist=[name]), name)
    except (ImportError, AttributeError):
        return None


def _is_swin(model: nn.Module) -> bool:
    swin = _timm_class("swin_transformer", "SwinTransformer")
    return swin is not None and isinstance(model, swin)


def is_vision_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is a timm Vision Transformer (ViT, DeiT and their subclasses)."""
    vit = _timm_class("vision_transformer", "VisionTransformer")
    return vit is not None and isinstance(model, vit)


def family(model: nn.Module) -> str:
    """``"ViT"`` for a timm ViT or DeiT, ``"Swin"`` for a timm Swin Transformer, ``"CNN"`` for any other network.

    The methods say which families they explain (:attr:`gradcam_core.Method.families`): the
    attention methods need a ViT's attention maps, and a few CNN methods assume what a
    transformer has not (a pooled linear head, ReLUs, second derivatives of every layer).
    """
    if is_vision_transformer(model):
        return "ViT"
    return "Swin" if _is_swin(model) else "CNN"


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of each block's self-attention of a timm ViT, first block first.

    Raises:
        ValueError: ``model`` is not a timm Vision Transformer, so it has no attention maps.
    """
    attention = _timm_class("vision_transformer", "Attention")
    found = [(name, m) for name, m in model.named_modules() if attention is not None and isinstance(m, attention)]
    if not is_vision_transformer(model) or not found:
        raise ValueError(
            f"this method needs a Vision Transformer's attention maps (a timm VisionTransformer); "
            f"{type(model).__name__} has none."
        )
    return found


def layout(model: nn.Module, name: str, module: nn.Module, output: torch.Tensor) -> TokenLayout | None:
    """How ``output``, the output of ``model``'s layer ``name``, maps onto the patch grid.

    ``None`` for a CNN, and for the layers of a transformer whose output is not one token per
    patch (the head, a convolution, the attention of Swin's windows).
    """
    if _is_swin(model):
        if output.dim() != 4 or isinstance(module, nn.Conv2d) or "attn" in name.split("."):
            return None
        return TokenLayout(0, (output.shape[1], output.shape[2]), channels_last=True)
    if is_vision_transformer(model) and output.dim() == 3:
        h, w = model.patch_embed.grid_size
        for prefix in (model.num_prefix_tokens, 0):  # 0: the patch embedding, before the class token
            if output.shape[1] == prefix + h * w:
                return TokenLayout(prefix, (h, w))
    return None


@dataclass
class Attention:
    """One block's self-attention in one forward pass, recomputed from its ``qkv`` projection.

    timm fuses the attention (``F.scaled_dot_product_attention``), so its probabilities never
    exist as a tensor; they are recomputed from the same queries and keys, and the heads' mixed
    values are recorded where the module uses them, in the autograd graph.

    Attributes:
        probabilities: ``(N, heads, T, T)`` ``softmax(q k^T / sqrt(d))``, each row a query.
        values: ``(N, heads, T, d)``.
        mixed: ``(N, T, heads * d)`` ``A v``, the heads side by side, as the module goes on with it.
    """

    probabilities: torch.Tensor | None = None
    values: torch.Tensor | None = None
    mixed: torch.Tensor | None = None


def patch_grid(model: nn.Module) -> tuple[int, tuple[int, int]]:
    """``(prefix tokens, (h, w) patches)`` of a timm ViT."""
    return model.num_prefix_tokens, tuple(model.patch_embed.grid_size)


def pooled_row(model: nn.Module, matrix: torch.Tensor) -> torch.Tensor:
    """``(N, T, T)`` token-to-token matrix -> ``(N, h, w)``: the row of the token the head reads, over the patches.

    The class token's row for a ViT that has one; the mean of the patches' rows for one that
    averages its patch tokens instead.
    """
    prefix, grid = patch_grid(model)
    rows = matrix[:, 0] if getattr(model, "cls_token", None) is not None else matrix[:, prefix:].mean(dim=1)
    return rows[:, prefix:].unflatten(1, grid)


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[Attention]]:
    """Record each block's :class:`Attention` during the forward passes inside the block.

    Two hooks per block: one on ``attn.qkv``'s output (the queries, keys and values) and one
    before ``attn.norm`` (the heads' output ``A v``, which the module passes through it; an
    ``nn.Identity`` unless the model normalizes it). Neither changes what the model computes, and
    both are removed on the way out. An attention mask or active attention dropout would make
    the recomputed probabilities differ from the model's: timm's ViT uses neither in eval mode.

    Raises:
        ValueError: ``model`` is not a timm Vision Transformer.
    """
    modules = [m for _, m in attention_modules(model)]
    records = [Attention() for _ in modules]

    def on_qkv(record: Attention, attn: nn.Module):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            n, t, _ = output.shape
            q, k, v = output.reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            q, k = attn.q_norm(q), attn.k_norm(k)
            record.probabilities = (q * attn.scale @ k.transpose(-2, -1)).softmax(dim=-1)
            record.values = v

        return hook

    def on_mixed(record: Attention):
        def hook(module: nn.Module, inputs) -> None:
            record.mixed = inputs[0]

        return hook

    handles = []
    try:
        for record, attn in zip(records, modules):
            handles.append(attn.qkv.register_forward_hook(on_qkv(record, attn)))
            # timm releases before ``scale_norm`` have no ``norm``: the heads' output goes to ``proj``
            handles.append(getattr(attn, "norm", attn.proj).register_forward_pre_hook(on_mixed(record)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def attention_gradients(
    score: torch.Tensor, records: list[Attention], retain_graph: bool = False
) -> list[torch.Tensor]:
    r"""``d score / d A`` at each block's attention probabilities, ``(N, heads, T, T)`` each.

    The block uses its probabilities only through :math:`X = A V` (per head), so by the chain rule
    :math:`\partial s / \partial A_{ij} = \sum_d \partial s / \partial X_{id} \, V_{jd}`: one
    backward pass to the mixed values gives every block's gradient, exactly.
    """
    grads = torch.autograd.grad(score, [r.mixed for r in records], retain_graph=retain_graph)
    out = []
    for g, r in zip(grads, records):
        n, heads, t, d = r.values.shape
        out.append(g.reshape(n, t, heads, d).transpose(1, 2) @ r.values.detach().transpose(-2, -1))
    return out
