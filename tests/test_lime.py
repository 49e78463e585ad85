"""gradcam_core.explainers.lime: LIME on superpixels.

The reference is captum's ``Lime`` given the same superpixels (``feature_mask``), the same
coalitions (a ``perturb_func`` that yields them, after the unperturbed picture that LIME always
includes), the same kernel (``similarity_func``) and scikit-learn's ``Ridge(alpha=1)``
(``SkLearnRidge``): the weights agree to float rounding (about 1e-5 of the largest).
"""

from __future__ import annotations

import math

import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import Lime
from conftest import make_tiny
from torch import nn

import gradcam_core as gc

QUARTERS = torch.tensor([[0] * 4 + [1] * 4] * 4 + [[2] * 4 + [3] * 4] * 4)


def captum_lime(model, x, target, segments, explainer) -> torch.Tensor:
    """captum's Lime for one image, on ``explainer``'s coalitions and kernel."""
    m = int(segments.max()) + 1
    rows = explainer.coalitions(m)

    def coalitions(_, **kwargs):
        yield torch.ones(1, m, dtype=torch.long)
        for row in rows:
            yield row[None].long()

    def similarity(original, perturbed, z, **kwargs):
        return explainer.similarity(z.double()).float()

    lime = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity,
                perturb_func=coalitions)
    return lime.attribute(x, target=target, feature_mask=segments[None, None], n_samples=len(rows) + 1)[0, 0]


def test_lime_equals_captum_on_the_same_coalitions():
    model = make_tiny()
    x = 3 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    segments = QUARTERS.clone()
    segments[2:6, 2:6] = 4
    explainer = gc.LIME(model, segments=segments, samples=60, seed=3, batch_size=16)
    got = explainer(x, target=[2, 0])
    for i, target in enumerate([2, 0]):
        expected = captum_lime(model, x[i:i + 1], target, segments, explainer)
        torch.testing.assert_close(got[i], expected, rtol=0, atol=1e-5 * expected.abs().max())


def test_lime_on_efficientnet_equals_captum(efficientnet, cat_dog_x):
    # 4x4 blocks of 56 pixels, 30 coalitions: enough to compare the fit, cheap enough to run
    segments = torch.arange(16).view(4, 4).repeat_interleave(56, 0).repeat_interleave(56, 1)
    explainer = gc.LIME(efficientnet.module, segments=segments, samples=30, seed=1)
    got = explainer(cat_dog_x, target=243)[0]
    expected = captum_lime(efficientnet.module, cat_dog_x, 243, segments, explainer)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * expected.abs().max())


def test_lime_on_resnet34_equals_captum(resnet34, small_batch):
    segments = torch.arange(6).view(2, 3).repeat_interleave(32, 0).repeat_interleave(22, 1)[:, :64]
    explainer = gc.LIME(resnet34.module, segments=segments, samples=40, seed=2)
    got = explainer(small_batch[:1], target=5)[0]
    expected = captum_lime(resnet34.module, small_batch[:1], 5, segments, explainer)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * expected.abs().max())


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def test_the_kernel_by_hand():
    # M = 4: all kept, d = 0 -> 1; one kept, d = 1 - sqrt(1/4) = 1/2 -> sqrt(exp(-0.25 / 0.0625))
    # = exp(-2); none kept, d = 1 -> sqrt(exp(-16)) = exp(-8)
    z = torch.tensor([[1.0, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    got = gc.LIME(nn.Identity()).similarity(z)
    torch.testing.assert_close(got, torch.tensor([1, math.exp(-2), math.exp(-8)], dtype=torch.float64))


class QuarterSum(nn.Module):
    """Class 0's logit is the sum of the top-right quarter of channel 0 (an 8x8 input); class 1's is
    the sum of everything."""

    def forward(self, x):
        return torch.stack([x[:, 0, :4, 4:].sum(dim=(1, 2)), x.sum(dim=(1, 2, 3))], dim=1)


def test_a_score_that_depends_on_one_superpixel_puts_the_weight_there():
    x = torch.ones(1, 3, 8, 8)
    w = gc.LIME(QuarterSum(), segments=QUARTERS, samples=200)(x, target=0)[0]
    weights = torch.stack([w[QUARTERS == q][0] for q in range(4)])
    # the quarter adds 16 when kept; the ridge shrinks that a little, the others stay near 0
    assert 14 < weights[1] < 16
    assert weights[[0, 2, 3]].abs().max() < 0.05 * weights[1]


def test_an_additive_score_gets_each_superpixel_s_share_up_to_the_ridge():
    # class 1: each quarter adds 3 * 16 = 48 when kept. The ridge (alpha 1 against a weighted
    # sum of squares of about 40 per superpixel with 400 draws) shrinks that by a few percent
    w = gc.LIME(QuarterSum(), segments=QUARTERS, samples=400)(torch.ones(1, 3, 8, 8), target=1)[0]
    weights = torch.stack([w[QUARTERS == q][0] for q in range(4)])
    assert ((weights > 45) & (weights < 48)).all(), weights


def test_the_same_seed_gives_the_same_map_and_another_seed_another(tiny, tiny_input):
    a = gc.LIME(tiny, segments=QUARTERS, samples=20, seed=5)(tiny_input, target=1)
    assert torch.equal(a, gc.LIME(tiny, segments=QUARTERS, samples=20, seed=5)(tiny_input, target=1))
    assert not torch.allclose(a, gc.LIME(tiny, segments=QUARTERS, samples=20, seed=6)(tiny_input, target=1))


def test_the_coalitions_keep_each_superpixel_with_probability_one_half():
    z = gc.LIME(nn.Identity(), samples=4000).coalitions(10)
    assert z.shape == (4000, 10)
    assert set(z.unique().tolist()) == {0.0, 1.0}
    assert (z.mean(dim=0) - 0.5).abs().max() < 0.03
