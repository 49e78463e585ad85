"""gradcam_core.split: the rest of a network after one of its layers, as a function of its output.

``split_at(model, layer).rest(A, *side_inputs)`` must give the model's own logits from the layer's
output ``A``; the side inputs are what the rest needs from before the layer (a skip connection
around it), none at the boundary between stages.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks, assert_same_state, snapshot
from torch import nn

from gradcam_core.split import side_inputs, split_at


def output_and_logits(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    captured = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, i, o: captured.update(a=o.clone())
    )  # returns None: the model goes on with its own tensor
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    return captured["a"], logits


def check_rest_gives_the_logits(model: nn.Module, layer: str, x: torch.Tensor, stage_boundary: bool) -> None:
    before = snapshot(model)
    split = split_at(model, layer)
    assert split.layer == layer
    assert (split.prefix is None) == stage_boundary
    a, logits = output_and_logits(model, layer, x)
    with torch.no_grad():
        got = split.rest(a, *side_inputs(split, x))
    assert got.shape == logits.shape
    torch.testing.assert_close(got, logits, rtol=1e-5, atol=1e-6 * logits.abs().max())
    assert_no_hooks(model)
    assert_same_state(before, model)


@pytest.mark.parametrize("layer", ["conv1", "layer1", "layer2", "layer3", "layer4", "avgpool"])
def test_rest_reproduces_resnet34_logits_at_each_stage(resnet34, small_batch, layer):
    check_rest_gives_the_logits(resnet34.module, layer, small_batch[:2], stage_boundary=True)


def test_rest_reproduces_efficientnet_logits_at_each_stage(efficientnet):
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(96))
    assert efficientnet.stages == ["layer1", "layer2", "layer3", "layer4"]
    for layer in efficientnet.stages:
        check_rest_gives_the_logits(efficientnet.module, layer, x, stage_boundary=True)


def test_rest_reproduces_shapes_gap_logits_at_each_stage(shapes_gap, shapes_images):
    x, _ = shapes_images
    for layer in shapes_gap.stages:
        check_rest_gives_the_logits(shapes_gap.module, layer, x, stage_boundary=True)
    # layer4's rest is the head alone: pooling and fc
    rest = split_at(shapes_gap.module, "layer4").rest
    called = [node.target for node in rest.graph.nodes if node.op == "call_module"]
    assert called == ["avgpool", "fc"]


@pytest.mark.parametrize(
    "layer", ["layer4.0.conv1", "layer4.0.bn2", "layer3.2.conv2", "layer4.0.downsample.0", "layer2.1.bn1"]
)
def test_rest_reproduces_resnet34_logits_inside_a_residual_block(resnet34, small_batch, layer):
    """The rest needs the block's input (the skip connection) besides the layer's output."""
    check_rest_gives_the_logits(resnet34.module, layer, small_batch[:2], stage_boundary=False)
    split = split_at(resnet34.module, layer)
    assert len(side_inputs(split, small_batch[:1])) >= 1


def test_the_rest_runs_the_models_own_modules(resnet34):
    """It shares their weights: nothing is copied."""
    model = resnet34.module
    rest = split_at(model, "layer3").rest
    modules = dict(rest.named_modules())
    assert modules["fc"] is model.fc
    assert modules["layer4"] is model.layer4
    assert "layer3" not in modules and "conv1" not in modules  # the layers before are not in it


def test_side_inputs_broadcast_over_a_batch_of_copies(resnet34, small_batch):
    """Ablation-CAM runs many changed copies of one image's output with that image's side inputs."""
    model = resnet34.module
    x = small_batch[:1]
    split = split_at(model, "layer4.0.conv1")
    a, logits = output_and_logits(model, "layer4.0.conv1", x)
    with torch.no_grad():
        got = split.rest(a.repeat(3, 1, 1, 1), *side_inputs(split, x))
    assert got.shape == (3, 1000)
    for row in got:
        torch.testing.assert_close(row, logits[0], rtol=1e-5, atol=1e-6 * logits.abs().max())


# --------------------------------------------------------------------------------------------
# What cannot be split says so
# --------------------------------------------------------------------------------------------


def test_a_layer_called_twice_is_a_value_error(resnet34):
    # torchvision's BasicBlock calls its one ReLU module twice
    with pytest.raises(
        ValueError, match=r"'layer1\.0\.relu' is called 2 times in the forward pass; it must be called once"
    ):
        split_at(resnet34.module, "layer1.0.relu")


def test_a_module_called_twice_in_a_small_model_is_a_value_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="'conv' is called 2 times"):
        split_at(Twice(), "conv")


def test_a_layer_never_called_is_a_value_error(tiny):
    tiny.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="'unused' is called 0 times"):
        split_at(tiny, "unused")


def test_a_model_that_cannot_be_traced_is_a_value_error():
    class Branchy(nn.Module):
        """Python control flow on a tensor's value: torch.fx cannot trace it."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            a = self.conv(x)
            if a.sum() > 0:
                a = a * 2
            return self.fc(a.mean(dim=(2, 3)))

    model = Branchy()
    with pytest.raises(ValueError, match="Branchy cannot be traced by torch.fx") as info:
        split_at(model, "conv")
    assert "'conv'" in str(info.value)
    assert_no_hooks(model)


def test_an_output_that_does_not_depend_on_the_layer_is_a_value_error():
    class SideBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.probe = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            self.probe(x)  # computed, never used
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="does not depend on 'probe'"):
        split_at(SideBranch(), "probe")
