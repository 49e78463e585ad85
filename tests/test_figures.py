"""ui.figures: the pictures sent to the browser (compact: smaller where a student would see no
difference), and how a method's map is drawn (method_picture)."""

import io

import numpy as np
import torch
from conftest import CAT_DOG
from PIL import Image

import gradcam_core as gc
from ui import figures
from ui.figures import JPEG_QUALITY, SMALL_PICTURE, compact


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_photo_goes_as_a_jpeg_near_the_original_at_well_under_half_streamlits_bytes():
    photo = np.asarray(Image.open(CAT_DOG).convert("RGB"))
    image = decoded(compact(photo))
    assert image.format == "JPEG" and image.size == (photo.shape[1], photo.shape[0])
    squared = ((np.asarray(image, dtype=np.float64) - photo) ** 2).mean()
    psnr = 10 * np.log10(255**2 / squared)
    assert psnr > 35, psnr  # dB: beyond what an eye tells apart on a screen (30 dB shows blocks)
    streamlit_own = io.BytesIO()
    Image.fromarray(photo).save(streamlit_own, format="JPEG", quality=100)  # what st.image makes of an array
    assert len(compact(photo)) < 0.5 * len(streamlit_own.getvalue())
    assert JPEG_QUALITY == 90


def test_a_small_picture_goes_as_an_exact_png():
    tag = np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((8, 8), dtype=np.uint8))  # 32x32, black and white
    assert tag.size <= SMALL_PICTURE
    image = decoded(compact(tag))
    assert image.format == "PNG" and np.array_equal(np.asarray(image), tag)


def test_floats_in_zero_one_and_pictures_with_alpha_are_taken():
    ramp = np.linspace(0.0, 1.0, 200 * 200 * 3).reshape(200, 200, 3)
    image = decoded(compact(ramp))
    assert image.format == "JPEG" and abs(float(np.asarray(image).mean()) - 127.5) < 2
    rgba = Image.new("RGBA", (300, 300), (10, 200, 30, 128))
    assert decoded(compact(rgba)).mode == "RGB"


def test_a_pixel_space_map_with_both_signs_is_shown_in_red_and_blue():
    """LIME's weights against the class used to be clipped away; now they show in blue."""
    base = np.full((4, 4, 3), 128, dtype=np.uint8)
    weights = torch.tensor([[2.0, 2.0, -2.0, -2.0]] * 4)
    assert figures.signed("lime", weights) and not figures.signed("lime", weights.clamp(min=0))
    assert not figures.signed("grad_cam", weights)  # a layer map keeps the CAM convention: ReLU
    picture = figures.method_picture("lime", weights, base, "jet", 0.8)
    left, right = picture[:, 0].astype(int), picture[:, -1].astype(int)
    assert (left[:, 0] > left[:, 2] + 50).all() and (right[:, 2] > right[:, 0] + 50).all()
    # non-negative maps are the heat overlay, as before
    assert np.array_equal(figures.method_picture("rise", weights.clamp(min=0), base, "jet", 0.5),
                          gc.overlay(base, weights.clamp(min=0), "jet", 0.5))
