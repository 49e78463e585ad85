"""gradcam_core.explainers.activations: FeatureMaps."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, snapshot

import gradcam_core as gc


def test_bn1_is_recorded_before_the_inplace_relu(resnet34, small_batch):
    model = resnet34.module
    x = small_batch[:2]
    with torch.no_grad():
        expected = model.bn1(model.conv1(x))  # computed by the test, no hook involved
    maps = gc.FeatureMaps(model, ["bn1", "relu"])(x)
    assert (maps["bn1"] < 0).any(), "bn1's map has no negative value: the in-place ReLU reached it"
    assert torch.allclose(maps["bn1"], expected, atol=1e-6)
    assert torch.allclose(maps["relu"], expected.clamp(min=0), atol=1e-6)
    assert (maps["relu"] >= 0).all()


def test_a_map_is_not_changed_by_the_inplace_add_that_follows_it(resnet34, small_batch):
    """BasicBlock does ``out = bn2(...); out += identity; out = relu(out)``, all in place."""
    model = resnet34.module
    x = small_batch[:1]
    block = model.layer1[0]
    with torch.no_grad():
        x0 = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        expected_bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x0)))))
        expected_out = torch.relu(expected_bn2 + x0)
    maps = gc.FeatureMaps(model, ["layer1.0.bn2", "layer1.0"])(x)
    assert torch.allclose(maps["layer1.0.bn2"], expected_bn2, atol=1e-5)
    assert torch.allclose(maps["layer1.0"], expected_out, atol=1e-5)
    assert (maps["layer1.0.bn2"] < 0).any()


def test_stage_shapes_and_order_on_resnet34(resnet34, small_batch):
    maps = gc.FeatureMaps(resnet34.module, resnet34.stages)(small_batch)
    assert list(maps) == ["layer1", "layer2", "layer3", "layer4"]
    assert maps["layer1"].shape == (3, 64, 16, 16)
    assert maps["layer2"].shape == (3, 128, 8, 8)
    assert maps["layer3"].shape == (3, 256, 4, 4)
    assert maps["layer4"].shape == (3, 512, 2, 2)
    for m in maps.values():
        assert not m.requires_grad
        assert (m >= 0).all()  # each stage ends in a ReLU


def test_stage_shapes_on_efficientnet(efficientnet, cat_dog_x):
    # the EfficientNetLite docstring: 24 x 56x56, 40 x 28x28, 112 x 14x14, 1280 x 7x7 at 224
    maps = gc.FeatureMaps(efficientnet.module, efficientnet.stages)(cat_dog_x)
    assert maps["layer1"].shape == (1, 24, 56, 56)
    assert maps["layer2"].shape == (1, 40, 28, 28)
    assert maps["layer3"].shape == (1, 112, 14, 14)
    assert maps["layer4"].shape == (1, 1280, 7, 7)
    # layer4 ends in BN + ReLU6
    assert maps["layer4"].min() >= 0 and maps["layer4"].max() <= 6


def test_one_layer_by_name_and_a_single_image(tiny):
    x = torch.randn(3, 8, 8)
    maps = gc.FeatureMaps(tiny, "conv1")(x)  # (C, H, W) is a batch of one
    with torch.no_grad():
        expected = tiny.conv1(x[None])
    assert list(maps) == ["conv1"]
    assert torch.allclose(maps["conv1"], expected, atol=1e-6)
    assert (maps["conv1"] < 0).any()  # before relu1, which is in place


@pytest.mark.parametrize("layers", [["layer2", "layer4"], ["bn1"]])
def test_a_batch_gives_what_each_image_alone_gives(resnet34, small_batch, layers):
    explainer = gc.FeatureMaps(resnet34.module, layers)
    batch = explainer(small_batch)
    for i in range(3):
        alone = explainer(small_batch[i : i + 1])
        for layer in layers:
            scale = alone[layer].abs().max()
            assert torch.allclose(batch[layer][i], alone[layer][0], rtol=1e-4, atol=1e-5 * scale)


def test_returned_maps_are_the_callers_to_change(tiny):
    x = torch.randn(1, 3, 8, 8)
    explainer = gc.FeatureMaps(tiny, ["conv2"])
    first = explainer(x)
    kept = first["conv2"].clone()
    first["conv2"].zero_()
    assert torch.equal(explainer(x)["conv2"], kept)


def test_model_left_alone_and_no_grad_restored(tiny):
    before = snapshot(tiny)
    maps = gc.FeatureMaps(tiny, ["conv1", "bn"])(torch.randn(2, 3, 8, 8))
    assert_same_state(before, tiny)
    assert_no_hooks(tiny)
    assert torch.is_grad_enabled()
    assert all(m.grad_fn is None for m in maps.values())


def test_layers_that_give_no_map_are_still_returned(tiny):
    # FeatureMaps is not limited to convolutional layers: the logits come back as they are
    x = torch.randn(2, 3, 8, 8)
    maps = gc.FeatureMaps(tiny, ["fc", "pool"])(x)
    with torch.no_grad():
        logits = tiny(x)
    assert torch.allclose(maps["fc"], logits, atol=1e-6)
    assert maps["pool"].shape == (2, 6, 1, 1)


def test_wrong_layer_and_wrong_input(tiny):
    with pytest.raises(ValueError, match="Valid layer names: conv1"):
        gc.FeatureMaps(tiny, ["conv3"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gc.FeatureMaps(tiny, ["conv1"])(torch.zeros(2, 1, 3, 8, 8))
    assert_no_hooks(tiny)
