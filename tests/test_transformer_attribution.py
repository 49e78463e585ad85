"""gradcam_core.explainers.transformer_attribution: Chefer et al.'s gradient-weighted rollout.

By hand on a two-block toy ViT: the attention probabilities of an unfused copy of the model
(``fused_attn = False``, caught after ``attn_drop``) and their gradients by autograd, which checks
the package's gradient at the probabilities (taken at the heads' output, the model left fused)
too; then ``R += mean_h((grad * A)^+) R`` from the identity, the class token's row reshaped by hand.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, make_tiny_vit, snapshot
from test_attention_rollout import unfused_probabilities

import gradcam_core as gc
from gradcam_core.tokens import attention_gradients, capture_attention


def attribution_by_hand(model, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    probabilities, logits = unfused_probabilities(model, x)
    score = sum(logits[i, c] for i, c in enumerate(targets))
    grads = torch.autograd.grad(score, probabilities)
    n, _, t, _ = probabilities[0].shape
    maps = []
    for i in range(n):
        relevance = torch.eye(t, dtype=torch.float64)
        for a, g in zip(probabilities, grads):
            relevance = relevance + (g[i] * a[i].detach()).clamp(min=0).mean(dim=0) @ relevance
        maps.append(relevance[0, 1:].reshape(4, 4))
    return torch.stack(maps)


@pytest.mark.parametrize("options", [{}, {"qk_norm": True}, {"scale_attn_norm": True}])
def test_transformer_attribution_equals_the_hand_computation(options, tiny_input):
    model = make_tiny_vit(seed=6, **options).double()
    x, targets = tiny_input.double(), [4, 0, 2]
    got = gc.TransformerAttribution(model)(x, targets)
    expected = attribution_by_hand(model, x, targets)
    assert got.shape == (3, 4, 4) and (expected > 0).any()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)
    assert_no_hooks(model)


def test_the_gradient_at_the_probabilities_is_autograds(tiny_input):
    model = make_tiny_vit(seed=7).double()
    x = tiny_input.double()
    probabilities, logits = unfused_probabilities(model, x)
    expected = torch.autograd.grad(logits[:, 1].sum(), probabilities)
    with capture_attention(model) as records:
        got = attention_gradients(model(x.clone().requires_grad_())[:, 1].sum(), records)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-14)


def test_the_map_depends_on_the_class(tiny_vit, tiny_input):
    explainer = gc.TransformerAttribution(tiny_vit)
    assert not torch.equal(explainer(tiny_input, 0), explainer(tiny_input, 1))


def test_a_cnn_has_no_attention_to_weigh(tiny, tiny_input):
    before = snapshot(tiny)
    with pytest.raises(ValueError, match="explains ViTs only, and TinyCNN is a CNN: it reads a Vision Transformer's attention maps"):
        gc.TransformerAttribution(tiny)(tiny_input, 1)
    assert_no_hooks(tiny)
    assert_same_state(before, tiny)


def test_one_forward_and_one_backward_pass_besides_the_shared_forward(tiny_vit, tiny_input, monkeypatch):
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    forwards = []
    handle = tiny_vit.patch_embed.register_forward_pre_hook(lambda m, i: forwards.append(1))
    try:
        gc.TransformerAttribution(tiny_vit)(tiny_input, [0, 1, 2])
    finally:
        handle.remove()
    assert len(forwards) == 2 and len(calls) == 1
