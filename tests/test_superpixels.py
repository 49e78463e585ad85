"""gradcam_core.explainers.superpixels: SLIC superpixels, and what LIME and Kernel SHAP share.

A coalition keeps some superpixels and sets the others to 0 in the model's input space; the
picture that keeps them all is the shared pass's and is never run again.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import count_calls, make_tiny

import gradcam_core as gc
from gradcam_core.explainers.superpixels import superpixels

QUARTERS = torch.tensor([[0] * 4 + [1] * 4] * 4 + [[2] * 4 + [3] * 4] * 4)


def test_a_photo_gets_about_fifty_superpixels_numbered_from_zero(cat_dog_x):
    labels = superpixels(cat_dog_x)
    assert labels.shape == (1, 224, 224) and labels.dtype == torch.long
    count = int(labels.max()) + 1
    assert 20 <= count <= 60
    assert torch.equal(torch.unique(labels), torch.arange(count))
    assert torch.equal(superpixels(cat_dog_x[0]), labels)  # (C, H, W) is one picture; deterministic


def test_a_tiny_input_gets_a_few_compact_superpixels(tiny_input):
    labels = superpixels(tiny_input)
    assert labels.shape == (3, 8, 8)
    for picture in labels:
        count = int(picture.max()) + 1
        assert 2 <= count <= 6
        assert torch.equal(torch.unique(picture), torch.arange(count))


def test_n_segments_and_compactness_are_slic_s(cat_dog_x):
    from skimage.segmentation import slic

    labels = superpixels(cat_dog_x, n_segments=12, compactness=20)
    picture = cat_dog_x[0].permute(1, 2, 0).double().numpy()
    picture = (picture - picture.min()) / (picture.max() - picture.min())
    expected = slic(picture, n_segments=12, compactness=20, start_label=0, channel_axis=-1)
    # the same partition, whatever the numbering
    assert np.array_equal(np.unique(expected * 1000 + labels[0].numpy()).size, np.unique(expected).size)
    assert int(labels.max()) + 1 == np.unique(expected).size


@pytest.mark.parametrize("option, value", [("n_segments", 0), ("n_segments", 2.5), ("compactness", 0),
                                           ("compactness", "tight")])
def test_bad_superpixel_options_are_refused(tiny_input, option, value):
    with pytest.raises(ValueError, match=option):
        superpixels(tiny_input, **{option: value})


@pytest.mark.parametrize("cls", [gc.LIME, gc.KernelSHAP])
def test_the_default_segments_are_slic_s(cls, tiny, tiny_input):
    got = cls(tiny, samples=20)(tiny_input, target=1)
    labels = superpixels(tiny_input)
    for i in range(3):
        # a batch of three and one picture alone go through different matrix-multiply blockings:
        # equal up to float32 rounding, not always to the last bit
        alone = cls(tiny, segments=labels[i], samples=20)(tiny_input[i], target=1)[0]
        torch.testing.assert_close(got[i], alone, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [gc.LIME, gc.KernelSHAP])
def test_labels_are_only_names_and_each_pixel_gets_its_superpixel_s_weight(cls, tiny, tiny_input):
    renamed = torch.tensor([-3, 7, 11, 40])[QUARTERS]  # the same order, other names
    a = cls(tiny, segments=QUARTERS, samples=30)(tiny_input, target=2)
    assert torch.equal(a, cls(tiny, segments=renamed.numpy(), samples=30)(tiny_input, target=2))
    for quarter in range(4):
        values = a[:, QUARTERS == quarter]
        assert torch.equal(values, values[:, :1].expand_as(values))


@pytest.mark.parametrize("cls", [gc.LIME, gc.KernelSHAP])
def test_segments_per_image(cls, tiny, tiny_input):
    per_image = torch.stack([QUARTERS, QUARTERS.T, QUARTERS // 2])
    got = cls(tiny, segments=per_image, samples=20)(tiny_input, target=0)
    for i in range(3):
        torch.testing.assert_close(got[i], cls(tiny, segments=per_image[i], samples=20)(tiny_input[i], 0)[0])


@pytest.mark.parametrize("cls", [gc.LIME, gc.KernelSHAP])
@pytest.mark.parametrize("segments", [torch.zeros(8, 7, dtype=torch.long), torch.zeros(2, 8, 8, dtype=torch.long)])
def test_segments_of_the_wrong_shape_are_a_value_error(cls, tiny, tiny_input, segments):
    with pytest.raises(ValueError, match="segments"):
        cls(tiny, segments=segments)(tiny_input, target=0)


@pytest.mark.parametrize("cls", [gc.LIME, gc.KernelSHAP])
@pytest.mark.parametrize(
    "option, value",
    [("segments", torch.zeros(8, 8)), ("segments", torch.zeros(8, dtype=torch.long)), ("segments", "slic"),
     ("samples", 0), ("samples", 10.0), ("seed", "one"), ("seed", False), ("batch_size", 0)],
)
def test_bad_options_are_refused(cls, tiny, option, value):
    with pytest.raises(ValueError, match=option):
        cls(tiny, **{option: value})


def test_the_unperturbed_picture_is_never_run_again(tiny_input):
    # one superpixel: LIME's draws keep it (the shared pass's picture) or not (blank); only the
    # blank ones run
    model = make_tiny()
    explainer = gc.LIME(model, segments=torch.zeros(8, 8, dtype=torch.long), samples=40, batch_size=8)
    blanks = int((explainer.coalitions(1) == 0).sum())
    assert 0 < blanks < 40
    calls = []
    explainer.progress = lambda d, t: calls.append((d, t))
    with count_calls(model) as counts:
        explainer(tiny_input[:1], target=0)
    assert counts == [1 + math.ceil(blanks / 8)]
    assert calls[-1] == (blanks, blanks)


@pytest.mark.parametrize("cls", [gc.LIME, gc.KernelSHAP])
def test_progress_and_batch_size(cls, tiny, tiny_input):
    explainer = cls(tiny, segments=QUARTERS, samples=9, batch_size=4)
    rows = explainer.coalitions(4)
    count = int((rows < 1).any(dim=1).sum())  # the ones that need a forward pass
    calls = []
    explainer.progress = lambda d, t: calls.append((d, t))
    with count_calls(tiny) as counts:
        got = explainer(tiny_input[:2], target=3)
    assert counts == [1 + 2 * math.ceil(count / 4)]
    assert calls[0] == (4, 2 * count) and calls[-1] == (2 * count, 2 * count)
    for batch_size in (1, 100):
        other = cls(tiny, segments=QUARTERS, samples=9, batch_size=batch_size)(tiny_input[:2], target=3)
        torch.testing.assert_close(other, got, rtol=1e-4, atol=1e-6)
