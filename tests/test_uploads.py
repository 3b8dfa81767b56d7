"""Upload size limits enforced in code: the helper, and every page that takes uploads
(AppTest drives ``st.file_uploader`` and ``st.camera_input``). Oversize files are valid
photos or zips padded with trailing bytes, so without the check they would go through."""

from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from streamlit import config
from streamlit.testing.v1 import AppTest

from core.data import builder as db
from core.data import uploads
from core.errors import TransferLabError, UploadTooLarge
from tests.helpers import REPO, texts
from tests.test_app_classifier import finished_run  # noqa: F401  (fixture)
from tests.test_app_label import tiny  # noqa: F401  (autouse there and here: the tiny backbone)

APP = str(REPO / "streamlit_app.py")
MB = uploads.MB


def jpeg(size_bytes: int = 0, seed: int = 0) -> bytes:
    """A valid 48x40 JPEG, padded after its end marker to ``size_bytes`` (decoders ignore the tail)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 48, 3), np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    return data + b"\0" * max(0, size_bytes - len(data))


@pytest.fixture
def server_limit_mb():
    """Set ``server.maxUploadSize`` (MB) as a config file would; restored afterwards."""
    before = config.get_option("server.maxUploadSize")

    def set_limit(mb: int) -> int:
        config.set_option("server.maxUploadSize", mb)
        return mb

    yield set_limit
    config.set_option("server.maxUploadSize", before)


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    return ok(at.switch_page(page).run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at



# ---------------------------------------------------------------- the helper

def test_check_size_names_the_file_its_size_and_the_limit():
    uploads.check_size("photo.jpg", 200 * MB, 200)  # exactly at the limit: accepted
    with pytest.raises(UploadTooLarge) as err:
        uploads.check_size("photo.jpg", int(250.3 * MB), 200)
    assert str(err.value) == "photo.jpg is 250.3 MB; the limit is 200 MB."
    assert isinstance(err.value, TransferLabError)  # pages show it as a friendly error
    with pytest.raises(UploadTooLarge):
        uploads.check_size("a.zip", 200 * MB + 1, 200)


def test_photo_limit_is_50_mb_or_the_lower_server_limit():
    assert uploads.photo_limit_mb(200) == 50
    assert uploads.photo_limit_mb(10) == 10


def test_within_limit_keeps_the_others_in_order():
    files = [("a.jpg", SimpleNamespace(size=MB)), ("huge.jpg", SimpleNamespace(size=3 * MB)),
             ("b.jpg", SimpleNamespace(size=2 * MB))]
    kept, rejected = uploads.within_limit(files, 2)
    assert [name for name, _ in kept] == ["a.jpg", "b.jpg"]
    assert rejected == ["huge.jpg is 3.0 MB; the limit is 2 MB."]


# ---------------------------------------------------------------- the pages

def test_classifier_rejects_a_photo_over_50_mb_and_classifies_the_rest(finished_run):  # noqa: F811
    at = open_page("app_pages/classifier.py")
    at.file_uploader(key="tl_clf_files").set_value([
        ("small.jpg", jpeg(seed=1), "image/jpeg"),
        ("huge.jpg", jpeg(51 * MB, seed=2), "image/jpeg"),  # the decoder alone would take it (64 MiB)
    ])
    ok(at.run())
    assert "Rejected: huge.jpg is 51.0 MB; the limit is 50 MB; the other 1 photo went on." in texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Photos"] == "1" and metrics["Classified"] == "1"
    assert list(at.dataframe[0].value["file"]) == ["small.jpg"]


def test_classifier_applies_the_server_limit_to_the_camera(finished_run, server_limit_mb):  # noqa: F811
    server_limit_mb(1)
    at = open_page("app_pages/classifier.py")
    ok(at.toggle(key="tl_clf_use_camera").set_value(True).run())
    ok(at.camera_input(key="tl_clf_camera").set_value(("image.jpg", jpeg(int(1.5 * MB)), "image/jpeg")).run())
    assert "camera-1.jpg is 1.5 MB; the limit is 1 MB." in texts(at.error)
    assert not at.metric  # nothing classified
    assert "Upload photos or take one" in texts(at.info)


def dataset_zip(size_bytes: int) -> bytes:
    """A valid two-class dataset zip, its photos padded so the zip is about ``size_bytes``."""
    buf = io.BytesIO()
    per_photo = size_bytes // 8
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for cls in ("cats", "dogs"):
            for i in range(4):
                zf.writestr(f"pets/{cls}/{i}.jpg", jpeg(per_photo, seed=i + 10 * len(cls)))
    return buf.getvalue()


def test_dataset_page_rejects_a_zip_over_the_server_limit(server_limit_mb):
    server_limit_mb(1)
    at = open_page("app_pages/dataset.py")
    ok(at.radio(key="tl_source").set_value("Upload a zip").run())
    at.file_uploader(key="tl_zip").set_value(("pets.zip", dataset_zip(int(1.6 * MB)), "application/zip"))
    ok(at.run())
    assert texts(at.error).startswith("Zip rejected: pets.zip is 1.6 MB; the limit is 1 MB.")
    assert "No dataset yet" in texts(at.info)

    server_limit_mb(2)  # the same zip under a higher limit is a dataset
    at.file_uploader(key="tl_zip").set_value(("pets.zip", dataset_zip(int(1.6 * MB)), "application/zip"))
    ok(at.run())
    assert not at.error
    assert {m.label: m.value for m in at.metric}["Usable images"] == "8"


def test_label_page_rejects_an_oversize_photo_and_adds_the_rest(server_limit_mb):
    server_limit_mb(1)
    db.create_dataset("pets", ["cats", "dogs"])
    at = open_page("app_pages/label.py")
    assert at.selectbox(key="tl_lab_ds").value == "pets"
    at.file_uploader[0].set_value([("a.jpg", jpeg(seed=1), "image/jpeg"),
                                   ("big.jpg", jpeg(int(1.2 * MB), seed=2), "image/jpeg"),
                                   ("b.jpg", jpeg(seed=3), "image/jpeg")])
    ok(at.run())
    ok(next(b for b in at.button if b.label.startswith("Add 3 photos")).click().run())
    assert "Rejected: big.jpg is 1.2 MB; the limit is 1 MB." in texts(at.error)
    assert "Added to 'cats': 2 photos" in texts(at.success)
    assert sorted(p.name for p in db.photos("pets")["cats"]) == ["a.jpg", "b.jpg"]


def test_backbones_page_rejects_an_oversize_image(server_limit_mb):
    server_limit_mb(1)
    at = open_page("app_pages/backbones.py")
    assert at.button_group(key="tl_fm_source").value == "Upload"  # no dataset loaded
    ok(at.file_uploader(key="tl_fm_upload").set_value(("big.jpg", jpeg(2 * MB), "image/jpeg")).run())
    assert "big.jpg is 2.0 MB; the limit is 1 MB." in texts(at.error)
    assert not [img for el in at.get("image") for img in el.proto.imgs if img.caption.startswith("Layer ")]


def test_label_page_camera_snapshot_over_the_limit_is_rejected(server_limit_mb):
    server_limit_mb(1)
    db.create_dataset("cam", ["me", "you"])
    at = open_page("app_pages/label.py")
    ok(at.toggle(key="tl_lab_camera_on").set_value(True).run())
    ok(at.camera_input[0].set_value(("image.jpg", jpeg(int(1.5 * MB)), "image/jpeg")).run())
    ok(next(b for b in at.button if b.label.startswith("Add the snapshot")).click().run())
    assert "is 1.5 MB; the limit is 1 MB." in texts(at.error)
    assert db.photos("cam")["me"] == []


def test_label_inbox_rejects_an_oversize_photo_and_zip(server_limit_mb):
    server_limit_mb(1)
    db.create_dataset("pets", ["cats", "dogs"])
    at = open_page("app_pages/label.py")
    at.file_uploader(key="tl_lab_inbox_up_0").set_value([("a.jpg", jpeg(seed=1), "image/jpeg"),
                                                         ("big.jpg", jpeg(int(1.2 * MB), seed=2), "image/jpeg")])
    ok(at.run())
    ok(next(b for b in at.button if b.label == "Use these 2 photos").click().run())
    assert "Rejected: big.jpg is 1.2 MB; the limit is 1 MB." in texts(at.error)
    assert "**1 photos** to label" in texts(at.caption)

    ok(at.radio(key="tl_lab_src").set_value("Upload a zip").run())
    at.file_uploader(key="tl_lab_inbox_zip_1").set_value(("more.zip", dataset_zip(int(1.6 * MB)), "application/zip"))
    ok(at.run())
    ok(next(b for b in at.button if b.label == "Unpack and use it").click().run())
    assert "Rejected: more.zip is 1.6 MB; the limit is 1 MB." in texts(at.error)
    assert "**1 photos** to label" in texts(at.caption)  # still the photo from before, not the zip's 8
