"""gradcam_core.maps: upsample, normalize, to_image, overlay, signed_overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CAT_DOG
from PIL import Image

import gradcam_core as gc
from gradcam_core.maps import to_image

# --------------------------------------------------------------------------------------------
# upsample
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((7, 7), (224, 224)), ((2, 7, 7), (2, 224, 224)), ((2, 3, 7, 7), (2, 3, 224, 224)), ((1, 5, 3), (1, 40, 24))],
)
def test_upsample_shapes(shape, expected):
    out = gc.upsample(torch.rand(shape), expected[-2:])
    assert out.shape == expected
    assert out.dtype == torch.float32


def test_upsample_values_by_hand():
    # 2x2 -> 4x4, align_corners=False: output i samples source (i + 0.5) / 2 - 0.5, clamped at 0:
    # -0.25 -> 0, 0.25, 0.75, 1.25 -> 1 (the last cell). With m[r, c] = 2 r + c, the result is
    # 2 a_i + a_j with a = [0, 0.25, 0.75, 1].
    m = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    a = [0.0, 0.25, 0.75, 1.0]
    expected = torch.tensor([[2 * ai + aj for aj in a] for ai in a])
    assert torch.allclose(gc.upsample(m, (4, 4)), expected, atol=1e-6)
    # the same map in a batch, and with channels
    assert torch.allclose(gc.upsample(m[None], (4, 4))[0], expected, atol=1e-6)
    assert torch.allclose(gc.upsample(m[None, None].expand(1, 3, 2, 2), (4, 4))[0, 2], expected, atol=1e-6)


def test_upsample_keeps_a_constant_map_and_accepts_arrays():
    out = gc.upsample(np.full((3, 3), 0.7, dtype=np.float64), (10, 6))
    assert out.shape == (10, 6)
    assert torch.allclose(out, torch.full((10, 6), 0.7))


def test_upsample_samples_are_independent():
    m = torch.zeros(2, 3, 3)
    m[1, 1, 1] = 1.0
    out = gc.upsample(m, (9, 9))
    assert torch.equal(out[0], torch.zeros(9, 9))
    assert out[1].max() == 1.0 and out[1, 4, 4] == 1.0


@pytest.mark.parametrize("shape", [(5,), (1, 1, 1, 2, 2)])
def test_upsample_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=r"\(h, w\), \(N, h, w\) or \(N, C, h, w\)"):
        gc.upsample(torch.zeros(shape), (4, 4))


# --------------------------------------------------------------------------------------------
# normalize
# --------------------------------------------------------------------------------------------


def test_normalize_by_hand():
    out = gc.normalize(torch.tensor([[0.0, 2.0], [4.0, 8.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    out = gc.normalize(torch.tensor([[-2.0, 0.0], [2.0, 6.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, 0.25], [0.5, 1.0]]))


def test_normalize_each_sample_on_its_own():
    m = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[10.0, 10.0], [10.0, 30.0]], [[5.0, 5.0], [5.0, 5.0]]])
    out = gc.normalize(m)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.allclose(out[1], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(out[2], torch.zeros(2, 2))  # constant -> zeros
    for sample in out[:2]:
        assert sample.min() == 0.0 and sample.max() == 1.0


def test_normalize_scales_channels_of_a_sample_together():
    # (N, C, h, w): one scale over C, h, w, so a guided-backprop picture keeps its colours
    m = torch.zeros(1, 3, 1, 2)
    m[0, 0] = torch.tensor([0.0, 4.0])
    m[0, 1] = torch.tensor([1.0, 1.0])
    m[0, 2] = torch.tensor([-4.0, 0.0])
    out = gc.normalize(m)
    assert torch.allclose(out[0, :, 0], torch.tensor([[0.5, 1.0], [0.625, 0.625], [0.0, 0.5]]))


@pytest.mark.parametrize("shape", [(7, 7), (3, 7, 7), (2, 3, 5, 5)])
def test_an_all_zero_map_normalizes_to_zeros_not_nan(shape):
    out = gc.normalize(torch.zeros(shape))
    assert not torch.isnan(out).any()
    assert torch.equal(out, torch.zeros(shape))


def test_normalize_of_tiny_spans_and_an_all_zero_explanation():
    out = gc.normalize(torch.tensor([[0.0, 1e-30], [0.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    # a Grad-CAM map that is zero everywhere (no positive evidence) stays zero, not NaN
    assert not torch.isnan(gc.normalize(torch.zeros(4, 7, 7).clamp(min=0))).any()


def test_normalize_range_on_random_maps():
    g = torch.Generator().manual_seed(0)
    out = gc.normalize(torch.randn(5, 3, 9, 9, generator=g) * 100)
    flat = out.flatten(1)
    assert torch.allclose(flat.min(dim=1).values, torch.zeros(5))
    assert torch.allclose(flat.max(dim=1).values, torch.ones(5))


# --------------------------------------------------------------------------------------------
# to_image
# --------------------------------------------------------------------------------------------


def test_to_image_centres_on_grey_by_hand():
    # mean 1.75, population std sqrt(8.75 / 4) = 1.47902; 0.5 + 0.1 * (m - 1.75) / 1.47902 gives
    # 0.38168, 0.44929, 0.51690, 0.65213, times 255: 97.33, 114.57, 131.81, 166.29
    out = to_image(torch.tensor([[0.0, 1.0], [2.0, 4.0]]))
    assert out.dtype == np.uint8 and out.shape == (2, 2)
    assert out.tolist() == [[97, 115, 132, 166][0:2], [97, 115, 132, 166][2:4]]


def test_to_image_clips_outliers_and_keeps_the_rest_visible():
    m = torch.zeros(100, 100)
    m[0, 0] = 1000.0  # one extreme gradient: min-max scaling would leave every other pixel at 0
    m[50, :] = 1.0
    out = to_image(m)
    assert out[0, 0] == 255
    assert out[50, 0] != out[10, 10]


def test_to_image_scales_the_three_channels_together():
    # one (3, H, W) sample: mean 10/12 and std over all 12 values; a per-channel scaling would give
    # channel 0 the picture it gives alone, and the constant channel 1 flat grey (128)
    m = torch.zeros(3, 2, 2)
    m[0] = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    m[1] = 0.5
    m[2] = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    out = to_image(m)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() != to_image(m[0]).tolist()
    assert set(out[..., 1].flatten().tolist()) == {120}  # 0.5 + 0.1 * (0.5 - 0.8333) / 1.1055 = 0.4698


def test_to_image_of_a_constant_sample_is_flat_grey():
    assert set(to_image(torch.full((4, 4), 3.0)).flatten().tolist()) == {128}


def test_to_image_refuses_a_batch():
    with pytest.raises(ValueError, match="one"):
        to_image(torch.zeros(2, 3, 4, 4))


# --------------------------------------------------------------------------------------------
# overlay
# --------------------------------------------------------------------------------------------


def test_overlay_shape_dtype_and_values_by_hand():
    image = np.full((6, 4, 3), 100, dtype=np.uint8)
    m = torch.zeros(3, 2)
    m[0, 0] = 1.0
    out = gc.overlay(image, m, cmap="jet", alpha=0.5)
    assert out.shape == (6, 4, 3) and out.dtype == np.uint8
    # where the upsampled map is 0: jet(0) = (0, 0, 0.5) -> 0.5 * 100 + 0.5 * 255 * (0, 0, 0.5)
    assert out[5, 3].tolist() == [50, 50, 114]
    # the peak: the top-left pixel maps to source (-0.25, -0.25) -> cell (0, 0): jet(1) = (0.5, 0, 0)
    assert out[0, 0].tolist() == [114, 50, 50]


def test_overlay_alpha_zero_is_the_image_and_one_is_the_colormap():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    m = torch.rand(5, 5)
    assert np.array_equal(gc.overlay(image, m, alpha=0.0), image)
    full = gc.overlay(image, m, cmap="gray", alpha=1.0)
    # gray colormap: all three channels equal the normalized upsampled map
    heat = gc.normalize(gc.upsample(m, (20, 30))).numpy()
    assert np.abs(full[..., 0].astype(int) - np.round(heat * 255)).max() <= 1
    assert np.array_equal(full[..., 0], full[..., 2])


def test_overlay_accepts_a_pil_image_and_an_array_map():
    image = Image.new("RGB", (40, 32), (10, 200, 30))
    out = gc.overlay(image, np.zeros((4, 5), np.float32), alpha=0.25)
    assert out.shape == (32, 40, 3)
    # an all-zero map is jet(0) everywhere, never NaN garbage
    assert np.array_equal(out[0, 0], out[-1, -1])


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_overlay_refuses_a_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        gc.overlay(np.zeros((8, 8, 3), np.uint8), torch.zeros(2, 2), alpha=alpha)


@pytest.mark.parametrize(
    "image",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_overlay_refuses_an_image_that_is_not_uint8_rgb(image):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        gc.overlay(image, torch.zeros(2, 2))


@pytest.mark.parametrize("shape", [(1, 2, 2), (2,), (1, 1, 2, 2)])
def test_overlay_refuses_a_map_that_is_not_one_hw_map(shape):
    with pytest.raises(ValueError, match=r"one \(h, w\) map"):
        gc.overlay(np.zeros((8, 8, 3), np.uint8), torch.zeros(shape))


def test_signed_overlay_by_hand():
    """Red for the class, blue against it, the photo untouched where the map is 0; both signs on one
    scale (the largest absolute value)."""
    image = np.full((1, 4, 3), 100, dtype=np.uint8)
    m = torch.tensor([[-1.0, -0.5, 0.0, 1.0]])  # already at the image's size: upsampling keeps it
    out = gc.signed_overlay(image, m, alpha=1.0, cmap="bwr")
    # bwr: 0 -> (0, 0, 1), 0.5 -> (1, 1, 1), 1 -> (1, 0, 0)
    assert out[0, 0].tolist() == [0, 0, 255]
    assert out[0, 3].tolist() == [255, 0, 0]
    assert out[0, 2].tolist() == [100, 100, 100]
    # -0.5: bwr(0.25) = (0.5, 0.5, 1), half opaque over 100 -> 50 + 0.5 * 255 * (0.5, 0.5, 1)
    assert np.abs(out[0, 1].astype(int) - np.array([114, 114, 178])).max() <= 1


def test_signed_overlay_of_zeros_is_the_image_and_refuses_bad_input():
    image = np.random.default_rng(0).integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
    assert np.array_equal(gc.signed_overlay(image, torch.zeros(2, 2)), image)
    with pytest.raises(ValueError, match="alpha"):
        gc.signed_overlay(image, torch.zeros(2, 2), alpha=2.0)
    with pytest.raises(ValueError, match="one \\(h, w\\) map"):
        gc.signed_overlay(image, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="Unknown colormap"):
        gc.signed_overlay(image, torch.zeros(2, 2), cmap="nope")


def test_overlay_on_a_real_grad_cam(efficientnet, cat_dog_x):
    r = gc.GradCAM(efficientnet.module, "layer4")(cat_dog_x, target=243)
    picture = np.asarray(gc.load_image(CAT_DOG))
    out = gc.overlay(picture, r.maps["layer4"][0])
    assert out.shape == picture.shape and out.dtype == np.uint8
    assert not np.array_equal(out, picture)


# --------------------------------------------------------------------------------------------
# correlation
# --------------------------------------------------------------------------------------------


def test_correlation_by_hand():
    # a = (0, 1, 2), b = (1, 0, 2): centred (-1, 0, 1) and (0, -1, 1); dot 1, norms sqrt(2) and sqrt(2)
    assert gc.maps.correlation(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 0.0, 2.0])) == pytest.approx(0.5)
    assert gc.maps.correlation(torch.eye(3), -torch.eye(3)) == pytest.approx(-1.0)


def test_correlation_of_a_constant_map_is_nan_and_shapes_must_match():
    assert np.isnan(gc.maps.correlation(torch.zeros(4, 4), torch.rand(4, 4)))
    with pytest.raises(ValueError, match="cell by cell"):
        gc.maps.correlation(torch.zeros(4, 4), torch.zeros(5, 5))
