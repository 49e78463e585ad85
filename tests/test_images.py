"""gradcam_core.images.load_image: any source, any mode in; one upright 8-bit RGB picture out."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import CAT_DOG
from PIL import Image, ImageFile

import gradcam_core as gc
from gradcam_core.images import MAX_PIXELS, MIN_SIDE


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    return np.asarray(image)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` 8-bit grey pixels but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def assert_plain_value_error(info: pytest.ExceptionInfo, *words: str) -> None:
    """A ValueError itself (not a PIL exception type), with no PIL traceback chained to it."""
    error = info.value
    assert type(error) is ValueError
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    message = str(error)
    assert message[0].isupper() and message.rstrip().endswith(".")
    for word in words:
        assert word in message, message


RGB = np.zeros((40, 48, 3), np.uint8)
RGB[:, :, 0] = np.arange(48, dtype=np.uint8)[None] * 5
RGB[:, :, 1] = np.arange(40, dtype=np.uint8)[:, None] * 6
RGB[:, :, 2] = 77


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def test_path_str_and_pathlib():
    for source in (str(CAT_DOG), CAT_DOG):
        image = gc.load_image(source)
        assert image.size == (224, 224) and image.mode == "RGB"
    assert np.array_equal(pixels(gc.load_image(CAT_DOG)), np.asarray(Image.open(CAT_DOG).convert("RGB")))


def test_bytes_bytearray_and_memoryview():
    data = encode(Image.fromarray(RGB), "PNG")
    for source in (data, bytearray(data), memoryview(data)):
        assert np.array_equal(pixels(gc.load_image(source)), RGB)


def test_pil_image_is_not_changed():
    original = Image.fromarray(RGB)
    out = gc.load_image(original)
    assert out is not original
    assert np.array_equal(pixels(out), RGB)
    out.putpixel((0, 0), (1, 2, 3))
    assert original.getpixel((0, 0)) == tuple(RGB[0, 0])


def test_arrays():
    assert np.array_equal(pixels(gc.load_image(RGB)), RGB)
    gray = RGB[:, :, 1].copy()
    assert np.array_equal(pixels(gc.load_image(gray)), np.stack([gray] * 3, axis=-1))
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 30
    rgba[:20, :, 3] = 255  # top half opaque, bottom half transparent
    out = pixels(gc.load_image(rgba))
    assert out[0, 0].tolist() == [30, 30, 30]
    assert out[-1, -1].tolist() == [255, 255, 255]
    assert np.array_equal(pixels(gc.load_image(RGB[:, ::-1])), RGB[:, ::-1])  # not contiguous


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (RGB.astype(np.float32), ["uint8", "float32"]),
        (np.zeros((40, 40, 2), np.uint8), ["(H, W)", "(40, 40, 2)"]),
        (np.zeros((2, 40, 40, 3), np.uint8), ["(H, W, 3)"]),
    ],
)
def test_bad_arrays(array, words):
    with pytest.raises(ValueError) as info:
        gc.load_image(array)
    assert_plain_value_error(info, *words)


def test_missing_path_directory_and_other_types(tmp_path):
    with pytest.raises(ValueError) as info:
        gc.load_image(tmp_path / "nope.png")
    assert_plain_value_error(info, "There is no image file at", "nope.png")
    with pytest.raises(ValueError) as info:
        gc.load_image(str(tmp_path))
    assert_plain_value_error(info, "There is no image file")
    with pytest.raises(ValueError) as info:
        gc.load_image(12)
    assert_plain_value_error(info, "Cannot read an image from a int")


# --------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------


def _marked_jpeg(orientation: int) -> bytes:
    """64 wide, 40 high, black with a red 10x10 marker in the stored top-left corner."""
    a = np.zeros((40, 64, 3), np.uint8)
    a[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(a), "JPEG", exif=exif, quality=95)


def _red_corner(image: Image.Image) -> str:
    a = pixels(image).astype(int)
    corners = {"top-left": a[:8, :8], "top-right": a[:8, -8:], "bottom-left": a[-8:, :8], "bottom-right": a[-8:, -8:]}
    red = [name for name, block in corners.items() if block[..., 0].mean() > 200 and block[..., 1].mean() < 50]
    assert len(red) == 1, red
    return red[0]


def test_exif_orientation_6_rotates_the_picture_upright():
    # Orientation 6: the stored picture must be turned 90 degrees clockwise to be upright, so
    # 64x40 becomes 40x64 and the stored top-left corner ends at the top right.
    plain = gc.load_image(_marked_jpeg(1))
    assert plain.size == (64, 40) and _red_corner(plain) == "top-left"
    turned = gc.load_image(_marked_jpeg(6))
    assert turned.size == (40, 64)
    assert _red_corner(turned) == "top-right"


@pytest.mark.parametrize(("orientation", "size", "corner"), [(3, (64, 40), "bottom-right"), (8, (40, 64), "bottom-left")])
def test_other_exif_orientations(orientation, size, corner):
    image = gc.load_image(_marked_jpeg(orientation))
    assert image.size == size
    assert _red_corner(image) == corner


def test_exif_orientation_of_a_pil_image_source():
    opened = Image.open(io.BytesIO(_marked_jpeg(6)))
    image = gc.load_image(opened)
    assert image.size == (40, 64) and _red_corner(image) == "top-right"


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------


def test_grey_l():
    a = np.full((40, 40), 90, np.uint8)
    out = pixels(gc.load_image(encode(Image.fromarray(a), "PNG")))
    assert out.shape == (40, 40, 3) and (out == 90).all()


def test_la_composited_on_white():
    a = np.zeros((40, 40, 2), np.uint8)
    a[..., 0] = 60
    a[:, :20, 1] = 255  # left opaque, right transparent
    data = encode(Image.fromarray(a), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "LA"
    out = pixels(gc.load_image(data))
    assert out[5, 5].tolist() == [60, 60, 60]
    assert out[5, 35].tolist() == [255, 255, 255]


def test_rgba_composited_on_white():
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 3] = 255
    a[0, 0] = (200, 10, 10, 0)  # fully transparent: white, whatever its colour
    a[0, 1] = (0, 0, 0, 128)  # half transparent black: 255 * (1 - 128 / 255) = 127
    out = pixels(gc.load_image(encode(Image.fromarray(a), "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert np.abs(out[0, 1].astype(int) - 127).max() <= 1
    assert out[10, 10].tolist() == [0, 0, 0]


def test_palette_with_a_transparent_entry():
    p = Image.new("P", (40, 40), 1)
    p.putpalette([0, 0, 0] + [255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 253)
    p.paste(0, (0, 0, 10, 10))  # index 0 is transparent
    p.paste(2, (30, 30, 40, 40))
    data = encode(p, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = pixels(gc.load_image(data))
    assert out[5, 5].tolist() == [255, 255, 255]
    assert out[20, 20].tolist() == [255, 0, 0]
    assert out[35, 35].tolist() == [0, 0, 255]
    # a palette image without transparency keeps its colours
    assert pixels(gc.load_image(encode(p, "PNG")))[5, 5].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_transparent_grey_level_or_colour_becomes_white_too(mode):
    # PNG's tRNS chunk on a grey or RGB image: one value is transparent (no alpha channel)
    a = np.full((40, 40, 3), 100, np.uint8)
    a[:10, :10] = (7, 7, 7)
    image = Image.fromarray(a).convert(mode)
    key = 7 if mode == "L" else (7, 7, 7)
    data = encode(image, "PNG", transparency=key)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == mode and opened.info["transparency"] == key
    out = pixels(gc.load_image(data))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[20, 20].tolist() == [100, 100, 100]


def test_cmyk():
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red in CMYK
    cmyk.paste((0, 0, 0, 255), (0, 0, 10, 10))  # black
    for source in (cmyk, encode(cmyk, "TIFF")):
        out = pixels(gc.load_image(source))
        assert out[20, 20].tolist() == [255, 0, 0]
        assert out[0, 0].tolist() == [0, 0, 0]
    out = pixels(gc.load_image(encode(cmyk, "JPEG", quality=95)))  # CMYK JPEG, lossy
    assert np.abs(out[30, 30].astype(int) - [255, 0, 0]).max() <= 12


def test_sixteen_bit_png():
    a = np.zeros((40, 40), np.uint16)
    a[:, :10] = 65535
    a[:, 10:20] = 257 * 100
    a[:, 20:30] = 257 * 3 + 100  # 871 / 257 = 3.39 -> 3
    data = encode(Image.fromarray(a), "PNG")
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I")
    out = pixels(gc.load_image(data))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 15].tolist() == [100, 100, 100]
    assert out[0, 25].tolist() == [3, 3, 3]
    assert out[0, 35].tolist() == [0, 0, 0]


def test_float_image_is_scaled_to_its_range():
    a = np.zeros((40, 40), np.float32)
    a[:, 20:] = 2.0
    a[:, 30:] = 4.0
    out = pixels(gc.load_image(Image.fromarray(a, mode="F")))
    assert out[0, 0, 0] == 0 and out[0, 25, 0] == 128 and out[0, 35, 0] == 255


def test_animated_gif_gives_its_first_frame():
    red = Image.new("RGB", (40, 40), (255, 0, 0))
    blue = Image.new("RGB", (40, 40), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    opened = Image.open(io.BytesIO(data))
    assert getattr(opened, "n_frames", 1) == 2
    out = pixels(gc.load_image(data))
    assert out.shape == (40, 40, 3)
    assert out[20, 20].tolist() == [255, 0, 0]


def test_other_formats():
    for fmt in ("BMP", "TIFF", "WEBP"):
        kwargs = {"lossless": True} if fmt == "WEBP" else {}
        assert np.array_equal(pixels(gc.load_image(encode(Image.fromarray(RGB), fmt, **kwargs))), RGB), fmt


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Any attempt to decode pixels fails the test: a refusal must come from the header alone."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (8000, 5001), (40_000_001, 1)])
def test_too_many_pixels_refused_before_decoding(width, height, no_decoding):
    assert width * height > MAX_PIXELS
    with pytest.raises(ValueError) as info:
        gc.load_image(png_header(width, height))
    assert_plain_value_error(info, "too large", "40 megapixels")


def test_a_lazy_pil_image_too_large_is_refused_before_decoding(no_decoding):
    lazy = Image.open(io.BytesIO(png_header(8000, 6000)))  # Image.open reads the header only
    with pytest.raises(ValueError) as info:
        gc.load_image(lazy)
    assert_plain_value_error(info, "too large", "8000x6000")


def test_forty_megapixels_exactly_is_not_too_large():
    # 8000 x 5000 = MAX_PIXELS: accepted by the size check, so decoding is tried (and the
    # header-only file is then found truncated)
    with pytest.raises(ValueError) as info:
        gc.load_image(png_header(8000, 5000))
    assert_plain_value_error(info, "truncated or damaged")
    assert "too large" not in str(info.value)


def test_a_small_file_that_decompresses_to_a_huge_image():
    bomb = encode(Image.new("1", (6400, 6400)), "PNG")  # 41 MP of zeros, a few kB on disk
    assert len(bomb) < 200_000
    with pytest.raises(ValueError) as info:
        gc.load_image(bomb)
    assert_plain_value_error(info, "too large", "6400x6400")


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(ValueError) as info:
        gc.load_image(b"")
    assert_plain_value_error(info, "empty")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        gc.load_image(empty)
    assert_plain_value_error(info, "empty")


def test_truncated_jpeg():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    for cut in (len(data) // 2, 200):
        with pytest.raises(ValueError) as info:
            gc.load_image(data[:cut])
        assert_plain_value_error(info, "damaged")


@pytest.mark.parametrize("data", [b"this is not an image", b"\0" * 512, b"GIF89a", b"%PDF-1.4\n" + b"x" * 100])
def test_bytes_that_are_not_an_image(data):
    with pytest.raises(ValueError) as info:
        gc.load_image(data)
    assert_plain_value_error(info, "not an image that can be read")


@pytest.mark.parametrize("size", [(31, 100), (100, 31), (1, 1)])
def test_too_small(size):
    image = Image.new("RGB", size)
    for source in (encode(image, "PNG"), image, np.zeros((size[1], size[0], 3), np.uint8)):
        with pytest.raises(ValueError) as info:
            gc.load_image(source)
        assert_plain_value_error(info, f"{size[0]}x{size[1]} pixels", f"at least {MIN_SIDE} pixels")


def test_thirty_two_pixels_is_enough():
    assert gc.load_image(encode(Image.new("RGB", (32, 32)), "PNG")).size == (32, 32)


@pytest.mark.filterwarnings("ignore")
def test_every_damaged_file_is_a_value_error():
    """Cuts and byte flips of files in every format: never a PIL or struct exception."""
    rng = np.random.default_rng(1)
    picture = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        data = encode(picture.convert("P") if fmt == "GIF" else picture, fmt)
        variants = [data[:n] for n in range(0, min(len(data), 64), 3)]
        for _ in range(20):
            damaged = bytearray(data)
            for i in rng.integers(0, len(data), 3):
                damaged[i] = int(rng.integers(0, 256))
            variants.append(bytes(damaged))
        for variant in variants:
            try:
                image = gc.load_image(variant)
            except ValueError as error:
                assert type(error) is ValueError
            else:
                assert image.mode == "RGB"
