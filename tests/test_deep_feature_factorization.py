"""gradcam_core.explainers.deep_feature_factorization: DFF, the NMF of a layer's activations.

A layer made of two known non-negative parts is split back into them; the factorization is
scikit-learn's NMF to rounding (same start, same coordinate descent); the whole method is
pytorch-grad-cam's ``DeepFeatureFactorization`` on EfficientNet-Lite0 (the cat_dog picture) and on
ResNet34 (random weights, a batch of two), concept by concept in the same order.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, count_calls, make_tiny, snapshot
from torch import nn

import gradcam_core as gc
from gradcam_core import shapes
from gradcam_core.explainers.deep_feature_factorization import _nmf
from gradcam_core.maps import correlation


class Given(nn.Module):
    """The input is the layer's activation, then global average pooling and a linear head."""

    def __init__(self, channels: int, classes: int = 3):
        super().__init__()
        self.layer = nn.Identity()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.layer(x).mean(dim=(2, 3)))


def reference(model: nn.Module, layer: str, x: torch.Tensor, concepts: int, fc: bool):
    """pytorch-grad-cam on a copy of ``model``: concept vectors ``(K, k)``, ``(N, k, H, W)`` maps
    scaled to [0, 1] and resized to the input, and the head's scores ``(k, classes)`` or None."""
    from pytorch_grad_cam import DeepFeatureFactorization

    twin = copy.deepcopy(model).eval()
    dff = DeepFeatureFactorization(twin, twin.get_submodule(layer), computation_on_concepts=twin.fc if fc else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's "maximum number of iterations reached"
        out = dff(x, concepts)
    return torch.from_numpy(out[0]), torch.from_numpy(np.stack(out[1])), torch.from_numpy(out[2]) if fc else None


def as_library(maps: torch.Tensor, size) -> torch.Tensor:
    """Our ``(N, k, h, w)`` maps as the library shows them: each scaled to [0, 1] and resized."""
    return torch.stack([gc.normalize(gc.upsample(gc.normalize(m), tuple(size))) for m in maps])


def test_two_known_parts_come_back():
    """``A = v1 p1 + v2 p2`` with disjoint non-negative parts: NMF's only answer (up to order and
    scale), so the maps are p1 and p2 and the vectors v1 and v2."""
    p1 = torch.zeros(6, 6, dtype=torch.float64)
    p1[:, :3] = torch.linspace(1, 2, 18, dtype=torch.float64).view(6, 3)
    p2 = torch.zeros(6, 6, dtype=torch.float64)
    p2[1:5, 3:] = torch.linspace(3, 1, 12, dtype=torch.float64).view(4, 3)
    v1 = torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=torch.float64)
    v2 = torch.tensor([0.0, 3.0, 1.0, 0.0], dtype=torch.float64)
    a = (v1[:, None, None] * p1 + v2[:, None, None] * p2)[None]
    c = gc.deep_feature_factorization(Given(4).double().eval(), a, "layer", concepts=2, iterations=2000)
    assert c.maps.shape == (1, 2, 6, 6) and c.vectors.shape == (2, 4) and c.scores is None
    order = [0, 1] if correlation(c.maps[0, 0], p1) > correlation(c.maps[0, 0], p2) else [1, 0]
    for j, (part, vector) in zip(order, [(p1, v1), (p2, v2)]):
        m = c.maps[0, j]
        torch.testing.assert_close(m / m.max(), part / part.max(), atol=1e-4, rtol=0)
        torch.testing.assert_close(c.vectors[j] / c.vectors[j].max(), vector / vector.max(), atol=1e-4, rtol=0)
    # the scale NMF leaves free sits between the two factors: their product is A itself
    torch.testing.assert_close(torch.einsum("kc,nkhw->nchw", c.vectors, c.maps), a, atol=1e-4, rtol=0)


def test_the_factorization_is_scikit_learns_nmf():
    from sklearn.decomposition import NMF

    data = torch.rand(40, 150, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for seed, k in [(0, 3), (7, 5)]:
        nmf = NMF(n_components=k, init="random", random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = nmf.fit_transform(data.numpy())
        ours_w, ours_h = _nmf(data, k, seed, 200)
        torch.testing.assert_close(ours_w, torch.from_numpy(w), atol=1e-10, rtol=0)
        torch.testing.assert_close(ours_h, torch.from_numpy(nmf.components_), atol=1e-10, rtol=0)


def check_against_reference(clf: gc.Classifier, x: torch.Tensor, layer: str, concepts: int, fc: bool) -> None:
    c = gc.deep_feature_factorization(clf.module, x, layer, concepts=concepts, fc=clf.fc if fc else None)
    vectors, maps, scores = reference(clf.module, layer, x, concepts, fc)
    # the same start and the same updates, so the same concepts in the same order
    # (measured: correlation 1.000000 for every map, vectors and scores within 1e-5 relative)
    ours = as_library(c.maps, x.shape[2:])
    assert min(correlation(a, b) for a, b in zip(ours.flatten(0, 1), maps.flatten(0, 1))) >= 0.999
    torch.testing.assert_close(c.vectors, vectors.T.float(), atol=1e-4 * float(vectors.abs().max()), rtol=0)
    if fc:
        torch.testing.assert_close(c.scores, scores, atol=1e-4 * float(scores.abs().max()), rtol=0)


@pytest.mark.parametrize(("layer", "concepts"), [("layer4", 4), ("layer3", 6)])
def test_agrees_with_pytorch_grad_cam_on_efficientnet(efficientnet, cat_dog_x, layer, concepts):
    """layer3 ends in a BatchNorm, not a ReLU: its negative values are shifted away per channel."""
    check_against_reference(efficientnet, cat_dog_x, layer, concepts, fc=layer == "layer4")


@pytest.mark.parametrize(("layer", "concepts"), [("layer4", 3), ("layer3", 5)])
def test_agrees_with_pytorch_grad_cam_on_resnet34(resnet34, layer, concepts):
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(128))
    check_against_reference(resnet34, x, layer, concepts, fc=layer == "layer4")


def test_the_scores_are_the_head_applied_to_the_concept_vectors(resnet34, small_batch):
    c = gc.deep_feature_factorization(resnet34.module, small_batch, "layer4", concepts=3, fc="fc")
    by_hand = c.vectors @ resnet34.module.fc.weight.detach().T + resnet34.module.fc.bias.detach()
    torch.testing.assert_close(c.scores, by_hand)
    assert c.scores.shape == (3, 1000) and not c.scores.requires_grad


def test_one_forward_pass_and_the_same_seed_gives_the_same_concepts(tiny, tiny_input):
    with count_calls(tiny) as calls:
        first = gc.deep_feature_factorization(tiny, tiny_input, "relu2", concepts=3, seed=4)
    assert calls == [1]
    again = gc.deep_feature_factorization(tiny, tiny_input, "relu2", concepts=3, seed=4)
    other = gc.deep_feature_factorization(tiny, tiny_input, "relu2", concepts=3, seed=5)
    assert torch.equal(first.maps, again.maps) and torch.equal(first.vectors, again.vectors)
    assert not torch.equal(first.maps, other.maps)
    assert first.maps.shape == (3, 3, 8, 8) and bool((first.maps >= 0).all())


def test_leaves_the_model_as_it_was():
    model = make_tiny().train()
    model.conv1.weight.requires_grad_(False)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    c = gc.deep_feature_factorization(model, x, "relu2", concepts=2, fc="fc")
    assert_no_hooks(model)
    assert_same_state(before, model)
    with torch.no_grad():
        inside = gc.deep_feature_factorization(model, x, "relu2", concepts=2, fc="fc")
    assert torch.equal(c.maps, inside.maps) and torch.equal(c.scores, inside.scores)
    assert not (c.maps.requires_grad or c.vectors.requires_grad or c.scores.requires_grad)
    with pytest.raises(RuntimeError):
        gc.deep_feature_factorization(make_tiny(fail_after="relu2"), x, "relu2")
    assert_no_hooks(model)


@pytest.mark.parametrize(("options", "message"), [
    ({"layer": "nope"}, "no layer named 'nope'"),
    ({"layer": "fc"}, r"\(N, K, h, w\)"),
    ({"concepts": 0}, "concepts must be a positive int"),
    ({"concepts": True}, "concepts must be a positive int"),
    ({"concepts": 2.0}, "concepts must be a positive int"),
    ({"concepts": 7}, "at most 'relu2''s 6 channels"),
    ({"iterations": 0}, "iterations must be a positive int"),
    ({"seed": "0"}, "seed must be an int"),
    ({"fc": "relu2"}, "'relu2' is ReLU"),
    ({"fc": "nope"}, "'nope' is nothing"),
    ({"layer": "relu1", "fc": "fc"}, "'fc' takes 6 features and 'relu1' has 4 channels"),
    ({"layer": "bn", "fc": "fc"}, "other layers come between"),
])
def test_bad_options_are_clear_value_errors(tiny, tiny_input, options, message):
    options = {"layer": "relu2", **options}
    with pytest.raises(ValueError, match=message):
        gc.deep_feature_factorization(tiny, tiny_input, **options)
    assert_no_hooks(tiny)


def test_a_vits_concepts_have_maps_but_no_classes_and_it_says_why():
    vit = gc.load_model("shapes_vit")
    x = shapes.render(2, 3).images
    with pytest.raises(ValueError, match="A ViT's head reads its class token"):
        gc.deep_feature_factorization(vit.module, x, "blocks.3.norm1", fc="head")
    found = gc.deep_feature_factorization(vit.module, x, "blocks.3.norm1", concepts=3)
    assert found.maps.shape == (2, 3, 8, 8)
