"""gradcam_core.tokens: a transformer's tokens explained as the ``(N, C, h, w)`` grid of its patches.

Grad-CAM at a ViT block must equal the computation by hand on the tokens themselves: the gradient
of the class score at each token by autograd, averaged over the patch tokens (the class token left
out), the weighted sum over channels, rectified, reshaped to the grid. Likewise for Swin's
channels-last stages. The network's output is unchanged by the rebuilt tokens.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks
from pytorch_grad_cam_reference import as_library, correlations, library_maps
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

import gradcam_core as gc
from gradcam_core.tokens import TokenLayout, layout


def tiny_vit(seed: int = 0, **kwargs) -> VisionTransformer:
    torch.manual_seed(seed)
    options = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 5}
    return VisionTransformer(**{**options, **kwargs}).eval()


def tiny_swin(seed: int = 0) -> SwinTransformer:
    torch.manual_seed(seed)
    return SwinTransformer(
        img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 2), num_classes=5
    ).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def tokens_and_gradients(model, layer: str, x: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's own output and ``d y^c / d output`` by autograd, without the package."""
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.update(t=o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    score = logits.gather(1, torch.as_tensor(targets)[:, None]).sum()
    (grad,) = torch.autograd.grad(score, seen["t"])
    return seen["t"].detach(), grad


def grad_cam_by_hand(tokens: torch.Tensor, grads: torch.Tensor, prefix: int, side: int) -> torch.Tensor:
    """``(N, T, C)`` tokens: per-token Grad-CAM over the patches, reshaped by hand to ``side x side``."""
    a, g = tokens[:, prefix:], grads[:, prefix:]
    weights = g.mean(dim=1)  # (N, C): alpha_k^c, the mean over the patch tokens
    cam = (a * weights[:, None, :]).sum(dim=2).clamp(min=0)  # (N, patches)
    return cam.reshape(-1, side, side)


@pytest.mark.parametrize(
    ("layer", "pool"), [("blocks.0", "token"), ("blocks.1.norm1", "token"), ("blocks.1", "avg"), ("norm", "avg")]
)
def test_grad_cam_at_a_vit_block_equals_the_per_token_computation(layer, pool, x):
    model = tiny_vit(global_pool=pool).double()
    targets = [0, 3, 4]
    tokens, grads = tokens_and_gradients(model, layer, x.double(), targets)
    assert tokens.shape == (3, 17, 32)  # the class token, then 4 x 4 patches
    r = gc.GradCAM(model, [layer])(x.double(), target=targets)
    expected = grad_cam_by_hand(tokens, grads, prefix=1, side=4)
    assert (expected > 0).any()
    torch.testing.assert_close(r.maps[layer], expected, rtol=1e-12, atol=1e-14)
    # the activations are the patch tokens on their grid, channels first
    torch.testing.assert_close(r.activations[layer], tokens[:, 1:].reshape(3, 4, 4, 32).permute(0, 3, 1, 2))
    torch.testing.assert_close(r.weights[layer], grads[:, 1:].mean(dim=1), rtol=1e-12, atol=1e-15)
    assert_no_hooks(model)


def test_after_the_last_attention_only_the_class_token_reaches_the_head(x):
    """So Grad-CAM at the last block of a class-token ViT is blank: explain its ``norm1``."""
    model = tiny_vit()
    r = gc.GradCAM(model, ["blocks.1", "blocks.1.norm1"])(x, target=1)
    assert torch.equal(r.weights["blocks.1"], torch.zeros(3, 32))
    assert (r.maps["blocks.1.norm1"] > 0).any()


def test_the_rebuilt_tokens_leave_the_logits_bit_for_bit(x):
    model = tiny_vit()
    with torch.no_grad():
        plain = model(x)
    r = gc.explain(model, x, 2, ["blocks.0", "blocks.1", "patch_embed"], ["grad_cam", "layer_cam", "hires_cam"])
    for result in r.values():
        assert torch.equal(result.logits, plain)
        assert all(m.shape == (3, 4, 4) for m in result.maps.values())


def test_distilled_deit_leaves_out_its_two_prefix_tokens(x):
    torch.manual_seed(1)
    model = VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5
    ).eval().double()
    assert model.num_prefix_tokens == 2
    tokens, grads = tokens_and_gradients(model, "blocks.1", x.double(), [1, 2, 3])
    r = gc.GradCAM(model, ["blocks.1"])(x.double(), target=[1, 2, 3])
    torch.testing.assert_close(r.maps["blocks.1"], grad_cam_by_hand(tokens, grads, prefix=2, side=4),
                               rtol=1e-12, atol=1e-14)


def test_the_patch_embedding_has_no_class_token(x):
    model = tiny_vit()
    seen = {}
    handle = model.patch_embed.register_forward_hook(lambda m, i, o: seen.update(t=o))
    model(x)
    handle.remove()
    got = layout(model, "patch_embed", model.patch_embed, seen["t"])
    assert got == TokenLayout(0, (4, 4))
    assert layout(model, "head", model.head, model.head(seen["t"][:, 0])) is None


@pytest.mark.parametrize("layer", ["layers.0", "layers.1", "layers.1.blocks.0", "norm"])
def test_grad_cam_at_a_swin_stage_equals_the_computation_on_its_channels_last_output(layer, x):
    model = tiny_swin().double()
    targets = [4, 1, 0]
    tokens, grads = tokens_and_gradients(model, layer, x.double(), targets)  # (N, H, W, C)
    weights = grads.mean(dim=(1, 2))
    expected = torch.einsum("nhwc,nc->nhw", tokens, weights).clamp(min=0)
    r = gc.GradCAM(model, [layer])(x.double(), target=targets)
    assert r.maps[layer].shape == tokens.shape[:3]
    torch.testing.assert_close(r.maps[layer], expected, rtol=1e-12, atol=1e-14)
    assert_no_hooks(model)


def test_a_swin_convolution_and_its_windowed_attention_keep_their_own_layout(x):
    model = tiny_swin()
    r = gc.GradCAM(model, ["patch_embed.proj"])(x, target=0)
    assert r.maps["patch_embed.proj"].shape == (3, 8, 8)  # NCHW already
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        gc.GradCAM(model, ["layers.0.blocks.0.attn"])(x, target=0)


def test_a_cnn_layer_has_no_layout(tiny, tiny_input):
    assert layout(tiny, "conv2", tiny.conv2, tiny.conv2(tiny.relu1(tiny.conv1(tiny_input)))) is None


def test_grad_cam_on_a_vit_agrees_with_pytorch_grad_cam_and_its_reshape_transform(x):
    """pytorch-grad-cam's ViT tutorial: ``reshape_transform`` drops the class token and reshapes."""
    from pytorch_grad_cam import GradCAM

    model = tiny_vit(seed=3)

    def reshape_transform(tokens, side=4):
        return tokens[:, 1:].reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)

    theirs = library_maps(GradCAM, model, "blocks.1.norm1", x, [2, 0, 1], reshape_transform=reshape_transform)
    ours = gc.GradCAM(model, ["blocks.1.norm1"])(x, target=[2, 0, 1]).maps["blocks.1.norm1"]
    assert min(correlations(as_library(ours, (32, 32)), theirs)) > 0.999
