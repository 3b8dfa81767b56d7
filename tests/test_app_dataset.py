"""AppTest of the Dataset page: sources, scan, charts, thumbnails, problems, errors."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.helpers import REPO, unescaped, write_images
from tests.test_app_backbones import offline  # noqa: F401  (fixture)

APP = str(REPO / "streamlit_app.py")


def open_dataset_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/dataset.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def scan_folder(at: AppTest, path) -> AppTest:
    at.radio(key="tl_source").set_value("Local folder").run()
    at.text_input(key="tl_folder").set_value(str(path)).run()
    next(b for b in at.button if b.label == "Scan folder").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def zip_bytes(root: Path, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(root).as_posix())
    return buf.getvalue()


@pytest.fixture
def problem_folder(tmp_path) -> Path:
    """Imbalanced, with an unreadable file, a non-image, an exact leak, a near duplicate and a
    class with no validation photos."""
    root = tmp_path / "problems"
    a = write_images(root / "train" / "a", 0, 24, size=(64, 48), seed=5)
    write_images(root / "train" / "b", 1, 3, size=(48, 64), seed=5)
    write_images(root / "validation" / "a", 0, 2, seed=6)
    write_images(root / "validation" / "b", 1, 2, seed=6)
    write_images(root / "train" / "c", 2, 12, seed=7)
    shutil.copy(a[0], root / "validation" / "a" / "leak.png")
    Image.open(a[1]).resize((128, 96)).save(root / "train" / "a" / "bigger_copy.png")
    (root / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "train" / "b" / "notes.txt").write_text("hello")
    return root


def test_empty_page_offers_sources():
    at = open_dataset_page()
    assert at.title[0].value == "Dataset"
    assert any("No dataset yet" in i.value for i in at.info)
    assert at.radio(key="tl_source").options == ["Sample dataset", "Local folder", "Upload a zip"]


def test_scan_local_folder_draws_everything(image_folder):
    at = scan_folder(open_dataset_page(), image_folder)
    m = metrics(at)
    assert (m["Usable images"], m["Classes"], m["Training"], m["Validation"], m["Unreadable files"]) == (
        "32", "2", "24", "8", "0")
    assert len(at.get("plotly_chart")) == 3  # one image size: said in words, not a chart
    assert any(i.value.startswith("All 32 images are 48 × 40 pixels") for i in at.info)
    assert len(at.get("image")) == 16  # class 'a': 12 train + 4 validation thumbnails
    assert any("Every file decoded" in s.value for s in at.success)
    assert any("No picture appears in both" in s.value for s in at.success)
    assert not at.error and not at.warning
    assert "ds" in " ".join(m.value for m in at.sidebar.markdown)  # the sidebar shows it at once


def test_thumbnail_grid_filters_and_pages(image_folder, tmp_path):
    write_images(image_folder / "train" / "b", 1, 30, seed=9)  # overwrites 12, adds 18: 30 train 'b'
    at = scan_folder(open_dataset_page(), image_folder)
    at.selectbox(key="tl_grid_class").set_value("b").run()
    at.button_group(key="tl_grid_split").set_value("train").run()
    assert len(at.get("image")) == 18  # one page of 6 x 3
    pager = at.get("pagination")[0]
    assert "30 images · page 1 of 2" in " ".join(c.value for c in at.caption)
    pager.set_value(2).run()
    assert not at.exception
    assert len(at.get("image")) == 12
    assert "page 2 of 2" in " ".join(c.value for c in at.caption)


def test_problems_are_shown(problem_folder):
    at = scan_folder(open_dataset_page(), problem_folder)
    m = metrics(at)
    assert m["Unreadable files"] == "2" and m["Usable images"] == "45"
    assert len(at.get("plotly_chart")) == 4  # several image sizes: a scatter of them
    assert m["Exact copies"] == "1" and m["Train/validation leaks"] == "1"
    assert int(m["Near duplicates"]) >= 1
    warnings = " ".join(w.value for w in at.warning)
    assert "imbalanced" in warnings and "Too few training images" in warnings
    assert "2 files could not be read" in warnings
    assert "No validation photos for 'c'" in warnings
    assert "1 picture in both train and validation" in warnings
    table = at.dataframe[0].value
    assert set(table["file"]) == {"train/a/broken.png", "train/b/notes.txt"}
    assert table.set_index("file").loc["train/b/notes.txt", "reason"].startswith("not an image file type")
    captions = unescaped(" ".join(img.caption for el in at.get("image") for img in el.proto.imgs))  # pairs side by side
    assert "train: train/a/img_000.png" in captions and "validation: validation/a/leak.png" in captions
    assert not at.error


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_bad_folders_are_friendly_errors(tmp_path, kind):
    target = {"missing": tmp_path / "nope", "file": tmp_path / "f.txt", "empty": tmp_path / "empty"}[kind]
    if kind == "file":
        target.write_text("x")
    if kind == "empty":
        (target / "cats").mkdir(parents=True)
    at = scan_folder(open_dataset_page(), target)
    expected = {"missing": "Folder not found", "file": "Not a folder", "empty": "No images found"}[kind]
    assert [e.value for e in at.error] and expected in at.error[0].value
    assert "tl_dataset" not in at.session_state


def test_zip_upload_is_extracted_and_scanned(image_folder, tl_home):
    at = open_dataset_page()
    at.radio(key="tl_source").set_value("Upload a zip").run()
    assert any("upload up to 200 MB" in c.value for c in at.caption)
    data = zip_bytes(image_folder, prefix="my photos/")
    at.file_uploader(key="tl_zip").upload("My Photos.zip", data, "application/zip").run()
    assert not at.exception and not at.error
    assert metrics(at)["Usable images"] == "32"
    assert (tl_home / "users" / "local" / "datasets" / "My_Photos" / "my photos" / "train" / "a").is_dir()
    assert at.session_state["tl_dataset"].name == "My_Photos"
    at.run()  # a rerun does not extract again
    assert metrics(at)["Usable images"] == "32"


@pytest.mark.parametrize("payload, reason", [
    (b"PK\x03\x04 definitely not a zip", "Not a valid zip file"),
    ("traversal", "points outside the folder"),
])
def test_bad_zip_is_rejected_with_the_reason(payload, reason, tl_home):
    if payload == "traversal":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("../evil.png", b"x")
        payload = buf.getvalue()
    at = open_dataset_page()
    at.radio(key="tl_source").set_value("Upload a zip").run()
    at.file_uploader(key="tl_zip").upload("bad.zip", payload, "application/zip").run()
    assert not at.exception
    said = unescaped(at.error[0].value) if at.error else ""
    assert said.startswith(("Zip rejected:", "Rejected zip:")) and reason in said and "Zip rejected: Rejected" not in said
    assert "tl_dataset" not in at.session_state
    assert not (tl_home / "users" / "local" / "datasets" / "bad").exists()


def test_source_choice_survives_a_page_switch(image_folder):
    at = scan_folder(open_dataset_page(), image_folder)
    at.switch_page("app_pages/home.py").run()
    at.switch_page("app_pages/dataset.py").run()
    assert at.radio(key="tl_source").value == "Local folder"
    assert at.text_input(key="tl_folder").value == str(image_folder)
    assert metrics(at)["Usable images"] == "32"


def test_strategy_advisor_without_weights_is_a_friendly_error(image_folder, offline):
    at = scan_folder(open_dataset_page(), image_folder)
    assert "Strategy advisor" in [h.value for h in at.header]
    at.button(key="tl_advise").click().run()
    assert not at.exception
    assert at.error and "not available offline" in at.error[0].value


@pytest.mark.real
def test_strategy_advisor_recommends(image_folder, shared_assets):
    at = scan_folder(open_dataset_page(), image_folder)
    at.button(key="tl_advise").click().run()
    assert not at.exception and not at.error
    advice = next(s.value for s in at.success if s.value.startswith("Recommended"))
    assert "dataset small" in advice  # 12 training images a class
    assert "◀ this dataset" in at.table[0].value.to_string()
    assert any(unescaped(m.value).count("Confidence:") == 1 for m in at.markdown)  # how sure, said once
    bars = [c for c in at.get("plotly_chart") if "Measured on a sample" in c.proto.spec]
    assert bars and "pixel baseline" in bars[0].proto.spec
    at.run()  # the advice stays for this dataset and backbone
    assert any(s.value == advice for s in at.success)


def sidebar_summary(at: AppTest) -> str:
    return " ".join(m.value for m in at.sidebar.markdown if m.value.startswith("**Dataset:**"))


def test_one_class_dataset_is_flagged_at_once(tmp_path):
    """A one-class zip or folder passed the page silently; runs queued on it failed later."""
    write_images(tmp_path / "only" / "cats", 0, 6)
    at = scan_folder(open_dataset_page(), tmp_path / "only")
    assert metrics(at)["Classes"] == "1"
    (error,) = [e.value for e in at.error]
    assert "needs at least two classes" in error and "Training is not offered" in error and ".." not in error
    assert not [b for b in at.button if b.key == "tl_advise"]  # no advice on how to train it
    assert "Label page" in " ".join(p.proto.label for p in at.get("page_link"))
    assert sidebar_summary(at) == "**Dataset:** only"
    assert "6 images · 1 class · 0 unreadable" in [c.value for c in at.sidebar.caption]


def test_a_two_class_dataset_is_not_flagged(image_folder):
    at = scan_folder(open_dataset_page(), image_folder)
    assert not at.error and [b for b in at.button if b.key == "tl_advise"]


def test_sidebar_summary_stays_when_a_page_stops_early(tmp_path):
    """Label (no dataset yet) and Explore (one class) call st.stop(): the summary went with it."""
    write_images(tmp_path / "only" / "cats", 0, 6)
    at = scan_folder(open_dataset_page(), tmp_path / "only")
    for page in ("app_pages/explore.py", "app_pages/label.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        assert sidebar_summary(at) == "**Dataset:** only", page
