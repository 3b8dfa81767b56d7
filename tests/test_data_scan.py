"""Scanning a folder with broken files: each is listed with its reason, the rest is usable."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from core.data import stats
from core.data.dataset import scan_folder

from tests.helpers import write_images


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_bad_files_listed_with_reasons(image_folder):
    bad_dir = image_folder / "train" / "a"
    (bad_dir / "zero.jpg").write_bytes(b"")
    (bad_dir / "text.jpg").write_text("hello, I am not a picture")
    (bad_dir / "header_only.jpg").write_bytes(jpeg_bytes()[:300])
    (bad_dir / "truncated.jpg").write_bytes(jpeg_bytes()[: len(jpeg_bytes()) // 2])
    (bad_dir / "notes.txt").write_text("labelled by Ann")
    (bad_dir / ".hidden.jpg").write_bytes(b"")  # hidden files are ignored, not reported

    ds = scan_folder(image_folder)
    reasons = {Path(b.path).name: b.reason for b in ds.bad_files}
    assert set(reasons) == {"zero.jpg", "text.jpg", "header_only.jpg", "truncated.jpg", "notes.txt"}
    assert "empty file" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["header_only.jpg"].lower()
    assert "truncated" in reasons["truncated.jpg"].lower()
    assert "not an image file type (.txt)" == reasons["notes.txt"]
    assert ds.counts()["train"] == {"a": 12, "b": 12}
    assert len(stats.image_frame(ds)) == 32


def test_good_jpeg_and_rgba_png_are_records(tmp_path):
    root = tmp_path / "mixed"
    write_images(root / "a", 0, 3)
    (root / "b").mkdir()
    (root / "b" / "photo.jpg").write_bytes(jpeg_bytes())
    Image.new("RGBA", (20, 10), (0, 0, 0, 0)).save(root / "b" / "clear.png")
    Image.new("RGB", (20, 10)).save(root / "b" / "three.png")
    ds = scan_folder(root)
    assert ds.bad_files == []
    modes = {Path(r.path).name: (r.mode, r.format, r.width, r.height) for r in ds.records}
    assert modes["photo.jpg"] == ("RGB", "JPEG", 64, 48)
    assert modes["clear.png"] == ("RGBA", "PNG", 20, 10)
