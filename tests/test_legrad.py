"""gradcam_core.explainers.legrad: LeGrad, against torchcam's ``LeGrad`` and by hand.

torchcam's LeGrad takes torchvision's ViT (``nn.MultiheadAttention``); the toy timm ViT's weights
are copied into a torchvision ViT of the same shape (the same logits to 1e-12), and both explain
the same pictures. By hand: each block's read-out score, the gradient at the probabilities of an
unfused copy by autograd, rectified, averaged over heads, queries and blocks.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, make_tiny_vit, snapshot
from test_attention_rollout import unfused_probabilities

import gradcam_core as gc


def torchvision_twin(model):
    """torchvision's ViT with ``model``'s (a timm ViT of make_tiny_vit's shape) weights."""
    from torchvision.models.vision_transformer import VisionTransformer

    twin = VisionTransformer(image_size=8, patch_size=2, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=32,
                             num_classes=5).double().eval()
    with torch.no_grad():
        twin.conv_proj.load_state_dict(model.patch_embed.proj.state_dict())
        twin.class_token.copy_(model.cls_token)
        twin.encoder.pos_embedding.copy_(model.pos_embed)
        for block, layer in zip(model.blocks, twin.encoder.layers):
            layer.ln_1.load_state_dict(block.norm1.state_dict())
            layer.ln_2.load_state_dict(block.norm2.state_dict())
            layer.self_attention.in_proj_weight.copy_(block.attn.qkv.weight)
            layer.self_attention.in_proj_bias.copy_(block.attn.qkv.bias)
            layer.self_attention.out_proj.load_state_dict(block.attn.proj.state_dict())
            layer.mlp[0].load_state_dict(block.mlp.fc1.state_dict())
            layer.mlp[3].load_state_dict(block.mlp.fc2.state_dict())
        twin.encoder.ln.load_state_dict(model.norm.state_dict())
        twin.heads.head.load_state_dict(model.head.state_dict())
    return twin


def test_legrad_equals_torchcams(tiny_input):
    from torchcam.methods import LeGrad as TorchcamLeGrad

    model = make_tiny_vit(seed=8).double()
    x, targets = tiny_input.double(), [1, 3, 0]
    twin = torchvision_twin(model)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=1e-12, atol=1e-12)
    with TorchcamLeGrad(twin, ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]) as extractor:
        scores = twin(x)
        (theirs,) = extractor(targets, scores, normalized=False)
    ours = gc.LeGrad(model)(x, targets)
    assert ours.shape == theirs.shape == (3, 4, 4) and (ours > 0).any()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)


def legrad_by_hand(model, x, targets, blocks) -> torch.Tensor:
    twin = copy.deepcopy(model)
    outputs = []
    for block in twin.blocks:
        block.register_forward_hook(lambda m, i, o: outputs.append(o))
    probabilities, _ = unfused_probabilities(twin, x)
    layers = []
    for l in blocks:
        scores = twin.head(twin.norm(outputs[l].mean(dim=1)))
        (grad,) = torch.autograd.grad(sum(scores[i, c] for i, c in enumerate(targets)), probabilities[l],
                                      retain_graph=True)
        layers.append(grad.clamp(min=0).mean(dim=(1, 2))[:, 1:])
    return (sum(layers) / len(layers)).reshape(-1, 4, 4)


@pytest.mark.parametrize(("blocks", "used"), [(None, [0, 1]), (1, [1]), (2, [0, 1]), (5, [0, 1])])
def test_legrad_equals_the_hand_computation(blocks, used, tiny_input):
    model = make_tiny_vit(seed=9).double()
    x, targets = tiny_input.double(), [2, 2, 4]
    expected = legrad_by_hand(model, x, targets, used)
    torch.testing.assert_close(gc.LeGrad(model, blocks=blocks)(x, targets), expected, rtol=1e-10, atol=1e-14)
    assert_no_hooks(model)


def test_a_cnn_has_no_attention_to_differentiate(tiny, tiny_input):
    before = snapshot(tiny)
    with pytest.raises(ValueError, match="explains ViTs only, and TinyCNN is a CNN: it reads a Vision Transformer's attention maps"):
        gc.LeGrad(tiny)(tiny_input, 1)
    assert_no_hooks(tiny)
    assert_same_state(before, tiny)


@pytest.mark.parametrize("blocks", [0, -1, 1.5, True, "all"])
def test_bad_blocks_are_value_errors(blocks, tiny_vit):
    with pytest.raises(ValueError, match="blocks must be a positive number of blocks"):
        gc.LeGrad(tiny_vit, blocks=blocks)


def test_one_forward_pass_and_one_backward_pass_per_block(tiny_vit, tiny_input, monkeypatch):
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    forwards = []
    handle = tiny_vit.patch_embed.register_forward_pre_hook(lambda m, i: forwards.append(1))
    try:
        gc.LeGrad(tiny_vit)(tiny_input, [0, 1, 2])
    finally:
        handle.remove()
    assert len(forwards) == 2 and len(calls) == 2  # besides the shared forward pass; two blocks
