"""The shapes lab's Vision Transformer: ``load_model("shapes_vit")``, its architecture and training path.

No weights are shipped for it yet (see ``gradcam_core/shapes/networks.py``): the tests load it with
random weights, and check that the layer methods and the attention methods explain it on the 8x8
patch grid of its 64x64 pictures.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks

import gradcam_core as gc
from gradcam_core import shapes


@pytest.fixture(scope="module")
def vit() -> gc.Classifier:
    torch.manual_seed(0)
    return gc.load_model("shapes_vit", pretrained=False)


def test_shapes_vit_is_a_timm_vit_with_its_token_layers(vit):
    from timm.models.vision_transformer import VisionTransformer

    assert isinstance(vit.module, VisionTransformer) and vit.module.patch_embed.grid_size == (8, 8)
    assert vit.categories == list(shapes.CLASSES) and vit.input_size == (64, 64)
    assert vit.stages == list(shapes.VIT_STAGES) and vit.cam_layer == "blocks.3.norm1" and vit.fc == "head"
    assert not vit.module.training and "random weights" in vit.description
    assert "shapes_vit" not in shapes.NETWORKS and "shapes_vit" in gc.MODELS
    assert sum(p.numel() for p in vit.module.parameters()) * 4 < 5_000_000  # float32 weights under 5 MB


def test_its_weights_are_not_shipped_yet():
    if shapes.weights_file("shapes_vit").is_file():
        pytest.fail("shapes_vit.pt is shipped: replace this test with its accuracy")
    with pytest.raises(gc.WeightsUnavailableError, match="shapes_vit.s weights are not shipped yet"):
        gc.load_model("shapes_vit")


def test_every_stage_and_every_attention_method_explains_the_patch_grid(vit):
    batch = shapes.render(4, seed=11)
    attention = [name for name, m in gc.METHODS.items() if m.kind == "attention"]
    names = ["grad_cam", "layer_cam", *attention]
    results = gc.explain(vit.module, batch.images, batch.labels, vit.stages, names)
    for name in ("grad_cam", "layer_cam"):
        assert [m.shape for m in results[name].maps.values()] == [(4, 8, 8)] * 4
    for name in attention:
        assert results[name].maps["input"].shape == (4, 8, 8) and (results[name].maps["input"] > 0).any()
    assert_no_hooks(vit.module)
