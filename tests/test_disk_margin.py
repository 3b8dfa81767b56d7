"""The free-disk margin (TRANSFER_LAB_MIN_FREE_MB): an upload, a zip extraction or a feature
cache entry that would leave less free space is refused with the reason before its first
byte, so nothing is half-written. Measured on a private 16 MB tmpfs when this machine lets
the test mount one (root, as on CI); elsewhere on the real disk with a margin above its free space."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import settings
from core.data import archives, builder, uploads
from core.errors import LowDiskSpace
from tests.helpers import unescaped

MB = uploads.MB


@pytest.fixture
def disk(tmp_path):
    """(folder, private): a 16 MB tmpfs of the test's own if it can be mounted, else tmp_path."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                          capture_output=True, text=True) if os.geteuid() == 0 else None
    private = bool(done and done.returncode == 0)
    try:
        yield mnt, private
    finally:
        if private:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def leave_free(folder: Path, private: bool, free_mb: float) -> None:
    """On the private disk: a ballast file so that about ``free_mb`` stays free."""
    if private:
        ballast = max(uploads.free_bytes(folder) - int(free_mb * MB), 0)
        (folder / "ballast.bin").write_bytes(b"\0" * ballast)


def set_margin(monkeypatch, folder: Path, private: bool, mb: float) -> None:
    """``mb`` on the private disk; elsewhere above the real free space (a refusal whatever it writes)."""
    value = mb if private else uploads.free_bytes(folder) / MB + 1024
    monkeypatch.setenv(settings.MIN_FREE_ENV, f"{value}")


def noise_zip(n_bytes: int) -> bytes:
    """A zip of one incompressible photo-sized member: it unpacks to ``n_bytes``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("photos/a/noise.bin", np.random.default_rng(0).bytes(n_bytes))
    return buf.getvalue()


def test_zip_extraction_refused_with_the_reason_and_nothing_written(disk, monkeypatch):
    folder, private = disk
    leave_free(folder, private, 4)
    set_margin(monkeypatch, folder, private, 2)  # a small margin: 2 MB
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(LowDiskSpace) as err:
        archives.extract_zip(noise_zip(3 * MB), folder / "big")  # would leave about 1 MB
    text = str(err.value)
    assert "Not enough free disk space for unpacking big" in text and settings.MIN_FREE_ENV in text
    assert "3.0 MB" in text and "Nothing was written" in text
    assert sorted(p.name for p in folder.iterdir()) == before  # no folder, no .partial left behind
    if private:  # the same margin lets a small zip through
        report = archives.extract_zip(noise_zip(MB // 2), folder / "small")
        assert report.files == 1 and (folder / "small" / "photos" / "a" / "noise.bin").stat().st_size == MB // 2


def test_dataset_zip_upload_refused_in_the_data_directory(disk, monkeypatch):
    folder, private = disk
    monkeypatch.setenv(settings.HOME_ENV, str(folder / "home"))
    leave_free(folder, private, 4)
    set_margin(monkeypatch, folder, private, 2)
    with pytest.raises(LowDiskSpace, match="unpacking pets"):
        archives.dataset_from_zip(noise_zip(3 * MB), "pets.zip")
    assert list((folder / "home" / "users" / "local" / "datasets").iterdir()) == []


def png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size, size, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_photo_uploads_refused_one_by_one_with_the_reason(disk, monkeypatch):
    folder, private = disk
    leave_free(folder, private, 3)
    big, small = png(700), png(16)  # about 1.5 MB of noise, and a few hundred bytes
    set_margin(monkeypatch, folder, private, 2)
    report = builder.save_photos(folder / "inbox", [("big.png", big), ("small.png", small)])
    reasons = {r.name: r.reason for r in report.rejected}
    assert "Not enough free disk space for big.png" in reasons["big.png"]
    if private:  # the small one still fits above the margin
        assert [p.name for p in report.added] == ["small.png"]
        assert sorted(p.name for p in (folder / "inbox").iterdir()) == ["small.png"]  # no temp file left
    else:
        assert "small.png" in reasons and not report.added


def test_no_margin_and_plenty_of_space_accept(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.MIN_FREE_ENV, "0")
    uploads.ensure_free_space(tmp_path, MB, "a photo")
    monkeypatch.delenv(settings.MIN_FREE_ENV)
    assert settings.min_free_mb() == settings.DEFAULT_MIN_FREE_MB
    uploads.ensure_free_space(tmp_path / "not" / "made", 0, "nothing")  # measured on the nearest parent


def test_feature_cache_entry_refused_before_writing(disk, monkeypatch, image_folder):
    from core.data.dataset import scan_folder
    from core.features.cache import extract_features
    from tests.helpers import make_local_backbone

    folder, private = disk
    weights = folder.parent / "weights"
    make_local_backbone(weights)
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(weights))
    monkeypatch.setenv(settings.HOME_ENV, str(folder / "home"))
    ds = scan_folder(image_folder)
    free = uploads.free_bytes(folder)
    # the entry needs at least its 64 KiB of bookkeeping: leave 16 KiB less than that above the margin
    monkeypatch.setenv(settings.MIN_FREE_ENV, f"{(free - 48 * 1024) / MB}" if private else f"{free / MB + 1024}")
    with pytest.raises(LowDiskSpace, match=r"the feature cache of .* \(train, 24 images\)"):
        extract_features(ds, "tiny", split="train")
    assert list((folder / "home" / "features").iterdir()) == []
    monkeypatch.setenv(settings.MIN_FREE_ENV, "0")
    fs = extract_features(ds, "tiny", split="train")
    assert fs.X.shape[0] == 24


def test_sample_download_refused_before_its_first_byte(disk, monkeypatch, tmp_path):
    from core.data import samples

    folder, private = disk
    archive = tmp_path / "sample.zip"
    archive.write_bytes(noise_zip(3 * MB))
    monkeypatch.setenv(settings.HOME_ENV, str(folder / "home"))
    leave_free(folder, private, 8)
    set_margin(monkeypatch, folder, private, 4)  # the zip and its photos need about 6 MB: 2 MB would be left
    with pytest.raises(LowDiskSpace, match="the sample"):
        samples.download_sample(archive.as_uri())
    assert list((folder / "home" / "samples").iterdir()) == []  # no partial zip, no folder


def test_dataset_page_says_why_a_zip_is_refused(disk, monkeypatch):
    """Through the page (AppTest drives the uploader): the reason is shown, no dataset appears,
    nothing is left in the data directory; with room for it the same zip becomes the dataset."""
    from streamlit.testing.v1 import AppTest

    from tests.helpers import REPO
    from tests.test_uploads import dataset_zip

    folder, private = disk
    monkeypatch.setenv(settings.HOME_ENV, str(folder / "home"))
    leave_free(folder, private, 4)
    set_margin(monkeypatch, folder, private, 3)  # the 1.6 MB zip would leave about 2.4 MB
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("app_pages/dataset.py").run()
    at.radio(key="tl_source").set_value("Upload a zip").run()
    at.file_uploader(key="tl_zip").set_value(("pets.zip", dataset_zip(int(1.6 * MB)), "application/zip"))
    at.run()
    assert not at.exception
    errors = unescaped(" ".join(e.value for e in at.error))
    assert errors.startswith("Zip rejected: Not enough free disk space for unpacking pets") and "MIN_FREE_MB" in errors
    assert "tl_dataset" not in at.session_state
    assert [p.name for p in (folder / "home" / "users" / "local" / "datasets").iterdir()] == []
    monkeypatch.setenv(settings.MIN_FREE_ENV, "0")
    at.file_uploader(key="tl_zip").set_value(("pets.zip", dataset_zip(int(1.6 * MB)), "application/zip"))
    at.run()
    assert not at.error and {m.label: m.value for m in at.metric}["Usable images"] == "8"
