"""Format sniffing, sizes from headers, the pixel limit, and what inspect_image keeps or rejects."""

import io

import pytest
from PIL import Image

from tests import fixtures as fx
from tfmetric.data import image_header as ih


def progressive_jpeg(size):
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, "JPEG", progressive=True, exif=Image.Exif().tobytes())
    return out.getvalue()


@pytest.mark.parametrize(
    "fmt, expected",
    [("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tiff")],
)
def test_sniffs_and_sizes_formats(fmt, expected):
    data = fx.image_bytes(fmt, size=(7, 5))
    assert ih.sniff_format(data) == expected
    assert ih.image_size(data) == (expected, 5, 7)


def test_jpeg_size_skips_app_segments_and_reads_progressive_frames():
    assert ih.jpeg_size(progressive_jpeg((33, 17))) == (17, 33)
    assert ih.jpeg_size(fx.jpeg_claiming_size(60000, 1234)) == (60000, 1234)


def test_jpeg_size_tolerates_stray_bytes_between_segments():
    data = fx.jpeg_bytes((21, 13))
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    assert ih.jpeg_size(data[:app0_end] + b"\x00\x17" + data[app0_end:]) == (13, 21)


def test_sizes_of_unrecognised_or_broken_headers():
    assert ih.sniff_format(b"hello") is None
    with pytest.raises(ih.ImageError) as e:
        ih.image_size(b"")
    assert e.value.reason == "empty"
    with pytest.raises(ih.ImageError) as e:
        ih.image_size(b"plain text, no pixels")
    assert e.value.reason == "unsupported_format"
    with pytest.raises(ih.ImageError) as e:
        ih.jpeg_size(fx.jpeg_bytes()[:20])
    assert e.value.reason == "truncated"
    with pytest.raises(ih.ImageError) as e:
        ih.png_size(fx.png_bytes()[:16])
    assert e.value.reason == "truncated"


def test_pixel_limit():
    ih.check_pixels(100, 100, 10_000)
    ih.check_pixels(10**6, 10**6, 0)  # 0 disables the check
    with pytest.raises(ih.ImageError) as e:
        ih.check_pixels(100, 101, 10_000)
    assert e.value.reason == "too_many_pixels" and "10100" in e.value.detail


def test_bombs_are_rejected_before_any_decode(monkeypatch):
    def no_decode(*args):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(ih, "_decode", no_decode)
    png = bytearray(fx.png_bytes())
    png[16:24] = (100000).to_bytes(4, "big") * 2  # IHDR claims 100000 x 100000
    for data in (fx.jpeg_claiming_size(60000, 60000), bytes(png)):
        with pytest.raises(ih.ImageError) as e:
            ih.inspect_image(data)
        assert e.value.reason == "too_many_pixels"
    with pytest.raises(ih.ImageError) as e:
        ih.inspect_image(fx.jpeg_bytes((32, 32)), max_pixels=1000)
    assert e.value.reason == "too_many_pixels"


def test_jpeg_and_png_keep_their_bytes():
    for data, fmt in (
        (fx.jpeg_bytes((9, 4)), "jpeg"),
        (fx.png_bytes((9, 4)), "png"),
        (progressive_jpeg((9, 4)), "jpeg"),
        (fx.image_bytes("JPEG", (9, 4), mode="L"), "jpeg"),
    ):
        info = ih.inspect_image(data)
        assert (info.format, info.height, info.width, info.encoded, info.reencoded) == (fmt, 4, 9, data, False)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats_are_reencoded_to_jpeg(fmt):
    info = ih.inspect_image(fx.image_bytes(fmt, (9, 4), (250, 10, 10)))
    assert (info.format, info.height, info.width, info.reencoded) == ("jpeg", 4, 9, True)
    decoded = Image.open(io.BytesIO(info.encoded))
    assert decoded.format == "JPEG" and decoded.mode == "RGB"
    assert decoded.getpixel((4, 2))[0] > 200


def test_transparency_is_composited_on_white():
    out = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(out, "WEBP", lossless=True)
    info = ih.inspect_image(out.getvalue())
    assert min(Image.open(io.BytesIO(info.encoded)).getpixel((1, 1))) > 240


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (fx.truncated_jpeg_bytes(), "truncated"),
        (fx.corrupt_jpeg_bytes(), "corrupt"),
        (fx.png_bytes((40, 40))[:-30], "truncated"),
        (b"%PDF-1.4 not an image", "unsupported_format"),
        (b"GIF89a" + b"\x00" * 3, "corrupt"),
    ],
)
def test_unusable_images_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ih.ImageError) as e:
        ih.inspect_image(data)
    assert e.value.reason == reason
    assert e.value.reason in ih.REASONS
