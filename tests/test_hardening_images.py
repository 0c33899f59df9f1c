"""Pictures that lie about their size or hold what the grey-scale path cannot read: refused from the
header by the declared size (digits.handwriting.check_declared_size), or an ImageError naming the file,
never a traceback. Each file here is a few hundred bytes: nothing is decoded at the declared size."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from digits.handwriting import MAX_SIDE, ImageError, load_image


def progressive_jpeg(mode: str, declared: tuple[int, int]) -> bytes:
    """A tiny progressive JPEG whose frame header (SOF2) declares ``declared`` (width, height)."""
    buffer = io.BytesIO()
    Image.new(mode, (8, 8)).save(buffer, "JPEG", progressive=True, quality=10)
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc2")  # SOF2: length (2), precision (1), height (2), width (2)
    data[at + 5 : at + 7] = declared[1].to_bytes(2, "big")
    data[at + 7 : at + 9] = declared[0].to_bytes(2, "big")
    return bytes(data)


def png_header(width: int, height: int, colour_type: int = 6) -> bytes:
    """A PNG that declares ``width`` x ``height`` (RGBA by default) and holds one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )


def gif_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_issues_progressive_cmyk_bomb_is_refused_from_its_header(tmp_path):
    """13,376 x 13,376 x 4 components: its 1/4 draft passed max_pixels, its decoder's buffers are 1.4 GB."""
    bomb = write(tmp_path, "bomb.jpg", progressive_jpeg("CMYK", (13_376, 13_376)))
    assert bomb.stat().st_size < 1000
    with pytest.raises(ImageError, match="is 13376x13376 pixels, more than the 100,000,000 read here"):
        load_image(bomb)


@pytest.mark.parametrize("mode, components", [("CMYK", 4), ("RGB", 3), ("L", 1)])
def test_a_progressive_jpeg_counts_its_coefficients_per_component(tmp_path, mode, components):
    """Within max_pixels but not within the coefficient bound (2 bytes x components x pixels <= 4 x max_pixels)."""
    side = 60  # 3,600 pixels, under max_pixels=4,000; 2 x components x 3,600 vs 16,000
    path = write(tmp_path, f"p-{mode}.jpg", progressive_jpeg(mode, (side, side)))
    if 2 * components * side * side > 4 * 4_000:
        with pytest.raises(ImageError, match=f"progressive JPEG of 60x60 pixels and {components} components"):
            load_image(path, max_pixels=4_000)
    else:  # within both bounds: decoded (its 8x8 data padded to the declared size)
        assert load_image(path, max_pixels=4_000).size == (side, side)


@pytest.mark.parametrize(
    "name, data, message",
    [
        # above max_pixels and below Pillow's own bomb limit (2 x 89 MP), which refuses at open
        ("huge.png", png_header(12_000, 12_000), "is 12000x12000 pixels, more than"),
        ("thin.png", png_header(39_990_000, 1), "a side longer than"),  # the issue's 40-megapixel row
        ("wide.png", png_header(MAX_SIDE + 1, 1, 0), "a side longer than"),
        ("tall.png", png_header(1, MAX_SIDE + 1, 0), "a side longer than"),
        ("huge.bmp", b"BM" + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 12_000, 12_000, 1, 24, 0, 0, 0, 0, 0, 0),
         "is 12000x12000 pixels"),
        ("huge.gif", gif_declaring(12_000, 12_000), "is 12000x12000 pixels"),
    ],
)  # fmt: skip
def test_declared_sizes_are_refused_before_decoding(tmp_path, name, data, message):
    with pytest.raises(ImageError, match=message):
        load_image(write(tmp_path, name, data))


def dds_of_an_unknown_format() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(buffer, "DDS")
    data = bytearray(buffer.getvalue())
    flags_at = 4 + 72 + 4  # after the magic: size ... pixel format (size, flags, fourcc)
    data[flags_at : flags_at + 4] = struct.pack("<I", 0x4)  # DDPF_FOURCC
    data[flags_at + 4 : flags_at + 8] = b"ZZZZ"
    return bytes(data)


def lab_tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("LAB", (8, 8)).save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [("lab.tif", lab_tiff()), ("dds-named.png", dds_of_an_unknown_format())],
    ids=["lab_tiff", "dds_named_png"],
)
def test_pictures_the_grey_path_cannot_read_are_an_image_error(tmp_path, name, data):
    with pytest.raises(ImageError, match=f"{name} is not an image that can be read"):
        load_image(write(tmp_path, name, data))


def test_a_fuzzed_float_tiff_is_an_image_error_or_read(tmp_path):
    """Every single-byte change of a small float TIFF: read, or an ImageError; nothing else escapes."""
    buffer = io.BytesIO()
    Image.new("F", (6, 6), 0.5).save(buffer, "TIFF")
    original = buffer.getvalue()
    for at in range(0, len(original)):
        for value in (0x00, 0xFF, 0x7F):
            data = bytearray(original)
            data[at] = value
            path = write(tmp_path, "fuzzed.tif", bytes(data))
            try:
                load_image(path)
            except ImageError:
                pass


def test_control_characters_in_a_file_name_are_escaped(tmp_path):
    """ESC, BEL and a newline in a name: shown as escapes, never sent raw to the terminal or the log."""
    path = write(tmp_path, "evil\x1b[2J\x07\nname.png", b"not a picture")
    with pytest.raises(ImageError) as caught:
        load_image(path)
    message = str(caught.value)
    assert "\x1b" not in message and "\x07" not in message and "\n" not in message
    assert "evil\\x1b[2J\\x07\\nname.png" in message


def test_a_dollar_in_a_file_name_is_a_title_not_mathtext(tmp_path):
    import torch

    from digits.evaluation.figures import save_contact_sheet

    save_contact_sheet(torch.zeros(2, 1, 28, 28), ["digit$\\foo^$.png\nsaid 3", "plain.png"], tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 0
