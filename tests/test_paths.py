"""gradcam_core.explainers.paths: the network's first affine layer, and the network run from its output.

Integrated Gradients' path starts at that layer's output (tests/test_integrated_gradients.py); here,
which layer is taken for the stem, which is refused, and that the network from the stem's output is
the network.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_hooks
from torch import nn

from gradcam_core.explainers.paths import first_affine_layer, from_stem


def test_the_stem_of_the_shipped_networks(resnet34, efficientnet, tiny, tiny_vit, small_batch, tiny_input):
    stem, logits = first_affine_layer(resnet34.module, small_batch)
    assert stem is resnet34.module.conv1
    with torch.no_grad():
        torch.testing.assert_close(logits, resnet34.module(small_batch))
    assert first_affine_layer(efficientnet.module, torch.zeros(1, 3, 64, 64))[0] is efficientnet.module.stem[0]
    assert first_affine_layer(tiny, tiny_input)[0] is tiny.conv1
    # a ViT's patch embedding is a convolution too
    assert first_affine_layer(tiny_vit, tiny_input)[0] is tiny_vit.patch_embed.proj
    for model in (resnet34.module, tiny, tiny_vit):
        assert_no_hooks(model)


def test_the_network_from_its_stem_is_the_network(resnet34, small_batch):
    model = resnet34.module
    with torch.no_grad():
        got = from_stem(model, model.conv1, model.conv1(small_batch), small_batch.shape)
        torch.testing.assert_close(got, model(small_batch), rtol=1e-5, atol=1e-5)
    assert_no_hooks(model)


def test_a_stem_that_runs_twice_is_a_runtime_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(self.conv(x)).mean(dim=(2, 3))

    model, x = Twice(), torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="the stem runs more than once"):
        from_stem(model, model.conv, model.conv(x), x.shape)
    assert_no_hooks(model)


class FusedConvReLU(nn.Conv2d):
    """A convolution class that is not affine: a subclass may add a non-linearity."""

    def forward(self, x):
        return torch.relu(super().forward(x))


def clamped_conv() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.LazyLinear(2))
    model[0].register_forward_hook(lambda module, args, output: output.clamp(max=0.1))
    return model


@pytest.mark.parametrize("model", [
    nn.Sequential(FusedConvReLU(3, 2, 1), nn.Flatten(), nn.Linear(32, 2)),
    clamped_conv(),
    nn.Sequential(nn.ReLU(), nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(32, 2)),
    nn.Sequential(nn.Flatten(), nn.Linear(48, 2)),
], ids=["a subclass of Conv2d", "a convolution with a hook of its own", "a non-linearity first", "flatten first"])
def test_no_stem(model):
    stem, logits = first_affine_layer(model, torch.randn(2, 3, 4, 4))
    assert stem is None and logits.shape == (2, 2)
