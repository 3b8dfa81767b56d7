"""Safe image decoding: one function turns any accepted file into model pixels.

Every path (scan, feature extraction, training, the live classifier, export
checks) goes through ``load_rgb`` so the same pixels reach the model everywhere.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from core.errors import BadImage

# Pillow's decompression-bomb guard, made explicit: an image over this many
# pixels is rejected before it is decoded (Pillow's default warns at ~89 MP).
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024
STRIP_ROWS = 256  # rows converted at a time from 16-bit / float to 8-bit
# Images over this many pixels are reduced (by a whole factor) before their RGB copy, and
# their decodes take turns (one at a time per process): a scan decodes on several threads,
# and a few large images at once would multiply the memory.
LARGE_PIXELS = 16_000_000
_large_decodes = threading.Semaphore(1)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# What every photo uploader accepts: exactly what ``load_rgb`` decodes, so no uploader
# refuses a file another one takes (Streamlit's ``type=`` wants names without the dot).
UPLOAD_TYPES = sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS)
UPLOAD_TYPES_TEXT = "JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF"
RESAMPLE = Image.Resampling.BILINEAR

Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

Source = Union[str, os.PathLike, bytes, BinaryIO]


@dataclass(frozen=True)
class ImageInfo:
    """What a header (and a full decode) tells about one image file."""

    width: int
    height: int
    mode: str
    format: str
    frames: int
    file_bytes: int


def is_image_name(name: str | os.PathLike) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _open(source: Source) -> tuple[Image.Image, int]:
    if isinstance(source, (bytes, bytearray)):
        size = len(source)
        stream: BinaryIO | str = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError as exc:
            raise BadImage(f"cannot read file: {exc.strerror or exc}") from exc
        stream = os.fspath(source)
    else:
        data = source.read(MAX_FILE_BYTES + 1)
        return _open(data)
    if size == 0:
        raise BadImage("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise BadImage(f"file too large ({size / 1e6:.1f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(_reason(exc)) from exc
    except OSError as exc:
        raise BadImage(f"cannot open image: {exc}") from exc
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise BadImage(
            f"image too large: {w} x {h} = {w * h / 1e6:.0f} MP exceeds the "
            f"{MAX_PIXELS / 1e6:.0f} MP decompression bomb limit"
        )
    if w < 1 or h < 1:
        raise BadImage(f"image has no pixels ({w} x {h})")
    return img, size


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        # One limit in one unit: Pillow's own text quotes its hard limit (twice ours) in pixels.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} MP " if found else ""
        return f"image too large: {size}exceeds the {MAX_PIXELS / 1e6:.0f} MP decompression bomb limit"
    return str(exc)


def _orientation(img: Image.Image) -> int:
    return int(img.getexif().get(ExifTags.Base.Orientation, 1) or 1)


def _to_eight_bits(img: Image.Image, lo: float, top: float) -> Image.Image:
    """``img`` scaled from [lo, top] to 8-bit grey, a strip of rows at a time in float32: a
    16-bit or float image never gets a full-size array copy (an 8000 x 8000 16-bit PNG of
    124 kB took 1.5 GB through float64 arrays)."""
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    scale = 255.0 / (top - lo)
    for y in range(0, h, STRIP_ROWS):
        block = np.asarray(img.crop((0, y, w, min(h, y + STRIP_ROWS))), dtype=np.float32)
        out[y:y + STRIP_ROWS] = np.clip((block - lo) * scale + 0.5, 0, 255)
    return Image.fromarray(out, "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, any mode converted to 8-bit RGB."""
    try:
        img.seek(0)
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"corrupt or truncated image data: {exc}") from exc
    if _orientation(img) != 1:  # exif_transpose copies even an upright image (0.15 ms at 500 x 375)
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        top = 65535.0 if mode.startswith("I;16") or img.getextrema()[1] > 255 else 255.0
        img = _to_eight_bits(img, 0.0, top)
    elif mode == "F":
        lo, hi = img.getextrema()
        img = _to_eight_bits(img, lo, hi if hi > lo else np.inf)
    if img.size[0] * img.size[1] > LARGE_PIXELS and img.mode != "P":  # nothing needs more: reduce before a copy
        img = img.reduce(math.ceil(math.sqrt(img.size[0] * img.size[1] / LARGE_PIXELS)))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def _turn(img: Image.Image):
    """Hold the large-decode turn while a large image is decoded (nothing for small ones)."""
    return _large_decodes if img.size[0] * img.size[1] > LARGE_PIXELS else nullcontext()


def probe(source: Source) -> ImageInfo:
    """Fully decode ``source`` once and describe it; raise ``BadImage`` with the reason."""
    img, size = _open(source)
    with img, _turn(img):
        info = ImageInfo(
            width=img.size[0],
            height=img.size[1],
            mode=img.mode,
            format=img.format or "",
            frames=int(getattr(img, "n_frames", 1) or 1),
            file_bytes=size,
        )
        _to_rgb(img)
    return info


def _pillow_rgb(img: Image.Image, min_side: int | None) -> Image.Image:
    if min_side and img.format == "JPEG":
        img.draft("RGB", (min_side, min_side))
    return _to_rgb(img)


def open_rgb(source: Source, min_side: int | None = None) -> Image.Image:
    """Decode ``source`` into an RGB PIL image (first frame, EXIF applied).

    ``min_side`` lets a JPEG decode at a reduced DCT scale (much faster) as
    long as both sides stay at least that long; callers that resize anyway pass it.
    """
    img, _ = _open(source)
    with img, _turn(img):
        return _pillow_rgb(img, min_side).copy()


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize the whole image (no crop) to ``size`` = (height, width)."""
    height, width = size
    if img.size == (width, height):
        return img
    return img.resize((width, height), RESAMPLE, reducing_gap=None)


def load_rgb(source: Source, size: tuple[int, int] | None = None) -> np.ndarray:
    """The model's pixels: uint8 array (H, W, 3), resized to ``size`` = (H, W) if given."""
    if size is None:
        return np.asarray(open_rgb(source), dtype=np.uint8)
    img, _ = _open(source)
    with img, _turn(img):  # resized while open: no copy of the full-size decode
        return np.asarray(resize(_pillow_rgb(img, max(size)), size), dtype=np.uint8)
