"""core.data.images: every accepted file decodes to the right 8-bit RGB pixels, every
unusable one raises BadImage with a reason a user can read."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import images
from core.errors import BadImage, TransferLabError
from core.data.images import load_rgb, probe


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit grayscale PNG built by hand: tiny on disk, huge in pixels."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- rejected files

def test_text_file_named_jpg_is_rejected(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n" * 20)
    with pytest.raises(BadImage, match="not an image"):
        load_rgb(path)
    with pytest.raises(BadImage, match="not an image"):
        probe(path)
    assert issubclass(BadImage, TransferLabError)


def test_zero_byte_file_is_rejected(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(BadImage, match=r"empty file \(0 bytes\)"):
        load_rgb(path)
    with pytest.raises(BadImage, match="empty"):
        load_rgb(b"")


def test_missing_file_is_rejected_with_reason(tmp_path):
    with pytest.raises(BadImage, match="cannot read file"):
        load_rgb(tmp_path / "gone.jpg")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_rejected(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_noise(96, 96)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImage, match="truncated|corrupt"):
        load_rgb(path)
    with pytest.raises(BadImage, match="truncated|corrupt"):
        load_rgb(path, (32, 32))  # the reduced-scale JPEG decode path too
    with pytest.raises(BadImage):
        probe(path)
    # the intact file decodes: the error above is about the truncation only
    assert load_rgb(data).shape == (96, 96, 3)


def test_decompression_bomb_over_pillow_hard_limit(tmp_path):
    # 12,000 x 12,000 = 144 MP, over twice the limit: Pillow's DecompressionBombError
    data = _bilevel_png(12_000, 12_000)
    assert len(data) < 100_000  # small on disk: that is what makes it a bomb
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(BadImage, match="decompression bomb"):
        load_rgb(path)
    with pytest.raises(BadImage, match="decompression bomb"):
        probe(path)


def test_decompression_bomb_between_limit_and_twice_limit(tmp_path):
    # 9,000 x 9,000 = 81 MP: over MAX_PIXELS (64 MP) but under Pillow's error threshold,
    # where Pillow would only warn and go on decoding.
    assert 9_000 * 9_000 > images.MAX_PIXELS
    path = tmp_path / "bomb81.png"
    path.write_bytes(_bilevel_png(9_000, 9_000))
    with pytest.raises(BadImage, match="decompression bomb|too large"):
        load_rgb(path)


def test_pixel_limit_is_enforced_by_core(tmp_path, monkeypatch):
    path = _save(Image.fromarray(_noise(20, 30)), tmp_path / "small.png")
    assert load_rgb(path).shape == (20, 30, 3)
    monkeypatch.setattr(images, "MAX_PIXELS", 500)  # 600 pixels is now too many
    with pytest.raises(BadImage, match=r"too large: 30 x 20"):
        load_rgb(path)
    with pytest.raises(BadImage, match="too large"):
        probe(path)


def test_file_size_limit(tmp_path, monkeypatch):
    path = _save(Image.fromarray(_noise(40, 40)), tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(BadImage, match="file too large"):
        load_rgb(path)


# ---------------------------------------------------------------- modes -> RGB

def test_one_by_one_pixel(tmp_path):
    path = _save(Image.new("RGB", (1, 1), (12, 200, 77)), tmp_path / "dot.png")
    out = load_rgb(path)
    assert out.shape == (1, 1, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [12, 200, 77]
    assert load_rgb(path, (8, 6)).shape == (8, 6, 3)


def test_rgb_png_is_exact_from_path_bytes_and_stream(tmp_path):
    arr = _noise(17, 23, seed=5)
    path = _save(Image.fromarray(arr), tmp_path / "rgb.png")
    assert np.array_equal(load_rgb(path), arr)
    assert np.array_equal(load_rgb(str(path)), arr)
    assert np.array_equal(load_rgb(path.read_bytes()), arr)
    with open(path, "rb") as fh:
        assert np.array_equal(load_rgb(fh), arr)


def test_sixteen_bit_png_maps_full_range(tmp_path):
    values = np.array([[0, 65535, 32768, 257], [65535, 0, 1000, 60000]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # really a 16-bit file
    out = load_rgb(path)
    assert out.shape == (2, 4, 3) and out.dtype == np.uint8
    expected = np.round(values.astype(np.float64) / 65535 * 255).astype(np.uint8)
    assert out[0, :, 0].tolist() == [0, 255, 128, 1]
    assert np.array_equal(out[..., 0], expected)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_sixteen_bit_png_with_small_values_is_not_clipped(tmp_path):
    # a dark 16-bit image (all values <= 255) is still 16-bit: 255/65535 is black, not white
    values = np.full((4, 4), 255, dtype=np.uint16)
    values[0, 0] = 0
    path = _save(Image.fromarray(values), tmp_path / "dark16.png")
    out = load_rgb(path)
    assert out.max() <= 1


def test_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    out = load_rgb(path)
    assert out.shape == (24, 24, 3)
    assert np.abs(out.reshape(-1, 3).mean(0) - [255, 0, 0]).max() < 8  # pure red


def test_palette_png_with_transparency_is_composited_on_white(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([0, 0, 0, 0, 0, 255, 255, 0, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 0, 1, 1, 0, 2, 1, 2])
    # index 0 fully transparent black, index 1 opaque blue, index 2 half-transparent red
    path = _save(img, tmp_path / "pal.png", transparency=bytes([0, 255, 128]))
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    out = load_rgb(path).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent -> white, not black
    assert out[0, 2].tolist() == [0, 0, 255]
    r, g, b = out[1, 1]
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1


def test_palette_png_single_transparent_index(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    path = _save(img, tmp_path / "pal1.png", transparency=0)
    out = load_rgb(path)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 100, 50]


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((1, 3, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)   # opaque red
    arr[0, 1] = (0, 0, 255, 0)     # fully transparent blue
    arr[0, 2] = (0, 0, 0, 128)     # half black
    path = _save(Image.fromarray(arr, "RGBA"), tmp_path / "rgba.png")
    out = load_rgb(path).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in out[0, 2])


def test_grayscale_and_grayscale_alpha(tmp_path):
    gray = np.array([[0, 77, 255]], np.uint8)
    out = load_rgb(_save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert out.shape == (1, 3, 3)
    assert out[..., 0].tolist() == [[0, 77, 255]]
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])

    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    out = load_rgb(_save(la, tmp_path / "la.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]

    bilevel = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    out = load_rgb(_save(bilevel, tmp_path / "one.png"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    # stored 64 wide x 32 tall with four coloured quadrants; orientation 6 = rotate 90 CW
    colours = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:16, :32], arr[:16, 32:] = colours["tl"], colours["tr"]
    arr[16:, :32], arr[16:, 32:] = colours["bl"], colours["br"]
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(Image.fromarray(arr), tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        assert raw.size == (64, 32) and raw.getexif()[0x0112] == 6

    out = load_rgb(path).astype(int)
    assert out.shape == (64, 32, 3)  # width and height swapped

    def near(y, x, colour):
        return np.abs(out[y, x] - colour).max() < 30

    # rotated clockwise: old bottom-left is new top-left, old top-left is new top-right, ...
    assert near(8, 8, colours["bl"])
    assert near(8, 24, colours["tl"])
    assert near(56, 8, colours["br"])
    assert near(56, 24, colours["tr"])

    resized = load_rgb(path, (20, 10))
    assert resized.shape == (20, 10, 3)
    assert np.abs(resized[3, 7].astype(int) - colours["tl"]).max() < 40
    info = probe(path)
    assert (info.width, info.height) == (64, 32)  # the header's stored size


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    info = probe(path)
    assert info.frames == 3 and info.format == "GIF"
    out = load_rgb(path)
    assert out.shape == (8, 10, 3)
    assert (out.reshape(-1, 3) == [255, 0, 0]).all()


# ---------------------------------------------------------------- resizing

@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_load_rgb_resizes_to_height_width(tmp_path, fmt):
    arr = np.zeros((90, 120, 3), np.uint8)
    arr[:, :60] = (250, 10, 10)
    arr[:, 60:] = (10, 10, 250)
    path = _save(Image.fromarray(arr), tmp_path / f"wide.{fmt}", **({"quality": 95} if fmt == "jpg" else {}))
    out = load_rgb(path, (30, 50))
    assert out.shape == (30, 50, 3) and out.dtype == np.uint8
    # whole image, no crop: left stays red, right stays blue
    assert np.abs(out[15, 5].astype(int) - (250, 10, 10)).max() < 30
    assert np.abs(out[15, 45].astype(int) - (10, 10, 250)).max() < 30
    square = load_rgb(path, (64, 64))
    assert square.shape == (64, 64, 3)
    up = load_rgb(path, (200, 150))
    assert up.shape == (200, 150, 3)


def test_probe_reports_header(tmp_path):
    path = _save(Image.fromarray(_noise(21, 13)), tmp_path / "p.png")
    info = probe(path)
    assert (info.width, info.height, info.mode, info.format, info.frames) == (13, 21, "RGB", "PNG", 1)
    assert info.file_bytes == path.stat().st_size


def test_is_image_name():
    assert images.is_image_name("a/B.JPG") and images.is_image_name("x.webp")
    assert not images.is_image_name("notes.txt") and not images.is_image_name("noext")


BIG16 = """
import sys
import numpy as np
from PIL import Image
Image.fromarray(np.zeros((8000, 8000), np.uint16)).save(sys.argv[1])  # 124 kB on disk, 64 MP of 16 bits
def peak_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
from core.data.images import load_rgb, probe
before = peak_mb()
assert probe(sys.argv[1]).mode == "I;16"
assert load_rgb(sys.argv[1], (224, 224)).shape == (224, 224, 3)
print(peak_mb() - before)
"""


def test_a_huge_16_bit_png_decodes_in_bounded_memory(tmp_path):
    """8000 x 8000 at 16 bits, all but free to upload: through float64 arrays it cost 1.5 GB;
    strips of rows and a reduction before the RGB copy keep it near the decode itself (~210 MB)."""
    import subprocess
    import sys

    from tests.helpers import REPO

    out = subprocess.run([sys.executable, "-c", BIG16, str(tmp_path / "big.png")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 400
