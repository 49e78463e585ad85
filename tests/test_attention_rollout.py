"""gradcam_core.explainers.attention_rollout: Abnar and Zuidema's attention rollout.

By hand on a two-block toy ViT: the attention probabilities read from an unfused copy of the model
(``fused_attn = False``, the softmax's output caught after ``attn_drop``), fused over the heads,
the smallest entries discarded image by image in a Python loop, the identity added, rows
normalized, the two blocks multiplied, the class token's row over the patches reshaped by hand.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, make_tiny_vit, snapshot

import gradcam_core as gc
from gradcam_core.tokens import capture_attention


def unfused_probabilities(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Each block's ``(N, heads, T, T)`` softmax, from timm's own unfused code on a copy."""
    twin = copy.deepcopy(model)
    probabilities = []
    for block in twin.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: probabilities.append(o))
    logits = twin(x.clone().requires_grad_())
    return probabilities, logits


def rollout_by_hand(probabilities, fusion: str, discard: float) -> torch.Tensor:
    n, _, t, _ = probabilities[0].shape
    side = int((t - 1) ** 0.5)
    maps = []
    for i in range(n):
        rollout = torch.eye(t, dtype=torch.float64)
        for a in probabilities:
            heads = a[i].detach()
            fused = {"mean": heads.mean(0), "max": heads.max(0).values, "min": heads.min(0).values}[fusion]
            flat = fused.flatten().clone()
            for index in flat.argsort()[: int(t * t * discard)].tolist():
                if index != 0:
                    flat[index] = 0.0
            step = (flat.view(t, t) + torch.eye(t, dtype=torch.float64)) / 2
            step = step / step.sum(dim=1, keepdim=True)
            rollout = step @ rollout
        maps.append(rollout[0, 1:].reshape(side, side))
    return torch.stack(maps)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.5])
def test_rollout_equals_the_hand_computation(fusion, discard, tiny_input):
    model = make_tiny_vit(seed=3).double()
    x = tiny_input.double()
    probabilities, _ = unfused_probabilities(model, x)
    got = gc.AttentionRollout(model, head_fusion=fusion, discard_ratio=discard)(x)
    assert got.shape == (3, 4, 4)
    torch.testing.assert_close(got, rollout_by_hand(probabilities, fusion, discard), rtol=1e-12, atol=1e-14)
    assert_no_hooks(model)


def test_the_recomputed_probabilities_are_timms_with_qk_norm_too(tiny_input):
    model = make_tiny_vit(seed=4, qk_norm=True).double()
    x = tiny_input.double()
    expected, _ = unfused_probabilities(model, x)
    with capture_attention(model) as records:
        model(x)
    assert len(records) == 2
    for record, probabilities in zip(records, expected):
        torch.testing.assert_close(record.probabilities, probabilities, rtol=1e-12, atol=1e-15)
        # A v is what the block mixed: the recorded heads' output
        n, heads, t, d = record.values.shape
        mixed = (probabilities @ record.values).transpose(1, 2).reshape(n, t, heads * d)
        torch.testing.assert_close(record.mixed, mixed, rtol=1e-12, atol=1e-14)
    assert_no_hooks(model)


def test_the_rollout_is_the_same_for_every_class_and_its_rows_are_shares(tiny_vit, tiny_input):
    rollout = gc.AttentionRollout(tiny_vit)
    m = rollout(tiny_input, 0)
    assert torch.equal(rollout(tiny_input, 3), m)
    # each row of R sums to 1: the class token's share taken from the patches is below 1
    assert (m >= 0).all() and (m.sum(dim=(1, 2)) < 1).all()


def test_without_a_class_token_the_patch_rows_are_averaged(tiny_input):
    model = make_tiny_vit(seed=5, class_token=False, global_pool="avg").double()
    x = tiny_input.double()
    probabilities, _ = unfused_probabilities(model, x)
    rollout = None
    for a in probabilities:
        step = (a.mean(dim=1) + torch.eye(16, dtype=torch.float64)) / 2
        rollout = step if rollout is None else step @ rollout
    expected = rollout.mean(dim=1).reshape(3, 4, 4)
    torch.testing.assert_close(gc.AttentionRollout(model)(x), expected, rtol=1e-12, atol=1e-14)


def test_a_cnn_has_no_attention_to_roll_out(tiny, tiny_input):
    before = snapshot(tiny)
    with pytest.raises(ValueError, match="explains ViTs only, and TinyCNN is a CNN: it reads a Vision Transformer's attention maps"):
        gc.AttentionRollout(tiny)(tiny_input)
    assert_no_hooks(tiny)
    assert_same_state(before, tiny)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"head_fusion": "median"}, "head_fusion must be one of mean, max, min"),
        ({"discard_ratio": 1.0}, r"discard_ratio must be a number in \[0, 1\)"),
        ({"discard_ratio": -0.1}, "discard_ratio"),
        ({"discard_ratio": True}, "discard_ratio"),
    ],
)
def test_bad_options_are_value_errors(options, message, tiny_vit):
    with pytest.raises(ValueError, match=message):
        gc.AttentionRollout(tiny_vit, **options)


def test_one_forward_pass_besides_the_shared_one_and_no_backward_pass(tiny_vit, tiny_input, monkeypatch):
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    forwards = []
    handle = tiny_vit.patch_embed.register_forward_pre_hook(lambda m, i: forwards.append(1))
    try:
        gc.AttentionRollout(tiny_vit)(tiny_input)
    finally:
        handle.remove()
    assert len(forwards) == 2 and calls == []
