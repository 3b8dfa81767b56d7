"""Building a dataset by hand: folders, listing and fingerprint stay consistent."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from core.data import builder as db
from core.data.dataset import scan_folder
from core.errors import DatasetError
from tests.helpers import write_images


def png_bytes(colour=(200, 30, 30), size=(24, 20), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def listing(name: str) -> dict[str, list[str]]:
    return {c: [p.name for p in ps] for c, ps in db.photos(name).items()}


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_create_add_scan_roundtrip(tl_home):
    folder = db.create_dataset("My pets", classes=["cats", "dogs"])
    assert folder == tl_home / "users" / "local" / "datasets" / "My_pets" and folder.is_dir()
    assert db.list_datasets() == ["My_pets"]
    assert db.classes("My_pets") == ["cats", "dogs"]
    fps = [db.fingerprint("My_pets")]

    report = db.add_photos("My_pets", "cats", [(f"c{i}.png", png_bytes((200, 20 * i, 20))) for i in range(3)])
    assert [p.name for p in report.added] == ["c0.png", "c1.png", "c2.png"] and not report.rejected
    fps.append(db.fingerprint("My_pets"))
    report = db.add_photos("My_pets", "dogs", [("d.jpg", png_bytes((20, 200, 20), fmt="JPEG")),
                                               ("d.jpg", png_bytes((20, 190, 20), fmt="JPEG"))])
    assert [p.name for p in report.added] == ["d.jpg", "d_2.jpg"]  # a clash gets a suffix, never overwrites
    fps.append(db.fingerprint("My_pets"))
    assert listing("My_pets") == {"cats": ["c0.png", "c1.png", "c2.png"], "dogs": ["d.jpg", "d_2.jpg"]}

    ds = db.scan("My_pets")
    assert ds.classes == ["cats", "dogs"] and len(ds.records) == 5 and not ds.bad_files
    assert len(set(fps)) == len(fps)
    assert no_temp_files(folder)


def test_bad_files_rejected_with_reason_rest_added(tl_home):
    db.create_dataset("d", ["a", "b"])
    files = [
        ("good.png", png_bytes()),
        ("broken.png", b"\x89PNG\r\n\x1a\n not really"),
        ("empty.jpg", b""),
        ("notes.txt", b"hello"),
        ("../../escape.png", png_bytes((1, 2, 3))),
        ("noext", png_bytes((5, 5, 5))),
    ]
    report = db.add_photos("d", "a", files)
    added = sorted(p.name for p in report.added)
    assert added == ["escape.png", "good.png", "noext.png"]  # the path is stripped, the extension from the format
    reasons = {r.name: r.reason for r in report.rejected}
    assert set(reasons) == {"broken.png", "empty.jpg", "notes.txt"}
    assert "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["notes.txt"]
    assert all(p.parent == tl_home / "users" / "local" / "datasets" / "d" / "a" for p in report.added)
    assert "rejected 3" in report.summary()
    assert no_temp_files(tl_home / "users" / "local" / "datasets" / "d")
    assert not (tl_home / "escape.png").exists()


def test_add_from_paths_and_file_objects(tl_home, tmp_path):
    src = write_images(tmp_path / "src", 0, 2)
    db.create_dataset("d", ["a"])
    with open(src[1], "rb") as fh:
        report = db.add_photos("d", "a", [("one.png", src[0]), ("two.png", fh)])
    assert sorted(p.name for p in report.added) == ["one.png", "two.png"]
    assert (tl_home / "users/local/datasets/d/a/one.png").read_bytes() == src[0].read_bytes()


def test_move_rename_delete_keep_folder_listing_and_fingerprint_consistent(tl_home):
    db.create_dataset("d", ["a", "b"])
    db.add_photos("d", "a", [(f"x{i}.png", png_bytes((10 * i, 0, 0))) for i in range(4)])
    db.add_photos("d", "b", [("x0.png", png_bytes((0, 0, 99)))])
    seen = {db.fingerprint("d")}

    def step():
        fp = db.fingerprint("d")
        assert fp not in seen, "an edit must change the fingerprint"
        seen.add(fp)
        scanned = db.scan("d")
        on_disk = {c: sorted(p.name for p in (tl_home / "users/local/datasets/d" / c).iterdir()) for c in db.classes("d")}
        assert listing("d") == on_disk
        by_class = {c: sorted(Path(r.path).name for r in scanned.records if r.label == c) for c in scanned.classes}
        assert by_class == {c: v for c, v in on_disk.items() if v}
        return scanned

    moved = db.move_photos("d", [tl_home / "users/local/datasets/d/a/x0.png", "a/x1.png"], "b")
    assert [p.name for p in moved] == ["x0_2.png", "x1.png"]  # x0.png was taken in b
    step()
    db.rename_class("d", "a", "apples")
    assert db.classes("d") == ["apples", "b"]
    step()
    db.add_class("d", "c")
    assert db.classes("d") == ["apples", "b", "c"] and listing("d")["c"] == []
    step()
    assert db.delete_photos("d", ["apples/x2.png"]) == 1
    step()
    assert db.delete_class("d", "apples") == 1
    assert db.classes("d") == ["b", "c"]
    ds = step()
    assert ds.classes == ["b"] and len(ds.records) == 3
    assert no_temp_files(tl_home / "users" / "local" / "datasets" / "d")


def test_names_are_checked(tl_home):
    db.create_dataset("d", ["a"])
    for bad in ["", "  ", "x/y", "..", ".hidden", "train", "Validation", "test", "a" * 65]:
        with pytest.raises(DatasetError):
            db.add_class("d", bad)
    with pytest.raises(DatasetError, match="already exists"):
        db.add_class("d", "A")
    with pytest.raises(DatasetError, match="already exists"):
        db.create_dataset("d")
    with pytest.raises(DatasetError):
        db.create_dataset("///")
    with pytest.raises(DatasetError, match="no class"):
        db.add_photos("d", "zzz", [("p.png", png_bytes())])
    with pytest.raises(DatasetError, match="no dataset"):
        db.classes("nope")
    db.add_class("d", "b")
    with pytest.raises(DatasetError, match="already exists"):
        db.rename_class("d", "a", "B")


def test_paths_outside_the_dataset_are_refused(tl_home, tmp_path):
    db.create_dataset("d", ["a"])
    outside = write_images(tmp_path / "elsewhere", 0, 1)[0]
    with pytest.raises(DatasetError, match="not a photo of this dataset"):
        db.delete_photos("d", [outside])
    with pytest.raises(DatasetError, match="not a photo of this dataset"):
        db.move_photos("d", ["../../elsewhere/img_000.png"], "a")
    assert outside.exists()


def test_split_layout_datasets_are_not_edited_here(tl_home, image_folder):
    import shutil

    shutil.copytree(image_folder, tl_home / "users" / "local" / "datasets" / "split")
    db.create_dataset("flat", ["a"])
    assert db.list_datasets() == ["flat"]
    with pytest.raises(DatasetError, match="train/validation"):
        db.classes("split")


def test_delete_dataset(tl_home):
    db.create_dataset("d", ["a"])
    db.add_photos("d", "a", [("p.png", png_bytes())])
    db.delete_dataset("d")
    assert db.list_datasets() == [] and not any((tl_home / "users" / "local" / "datasets").iterdir())


def test_add_labelled_copies_into_classes(tl_home, tmp_path):
    db.create_dataset("d", ["a", "b"])
    src = write_images(tmp_path / "inbox", 0, 3)
    report = db.add_labelled("d", [(src[0], "a"), (src[1], "b"), (src[2], "missing")])
    assert sorted(p.parent.name for p in report.added) == ["a", "b"]
    assert [r.name for r in report.rejected] == ["img_002.png"]
    assert all(p.exists() for p in src)  # copied, the inbox keeps its files


def test_relabel_any_layout(tl_home, image_folder):
    ds = scan_folder(image_folder, use_cache=False)
    path = ds.split("train")[0].path
    assert ds.split("train")[0].label == "a"
    new = db.relabel(ds, path, "b")
    assert new.parent == image_folder / "train" / "b" and not Path(path).exists()
    ds2 = scan_folder(image_folder, use_cache=False)
    assert ds2.fingerprint != ds.fingerprint
    assert {Path(r.path).name for r in ds2.records if r.label == "b" and r.split == "train"} >= {new.name}
    with pytest.raises(DatasetError, match="not a class"):
        db.relabel(ds2, new, "zzz")
    with pytest.raises(DatasetError, match="not a photo"):
        db.relabel(ds2, "/nope.png", "a")


def test_relabel_never_moves_a_file_outside_the_dataset(tl_home, image_folder, tmp_path):
    """A dataset's names may come from a stored scan: a class that is a path, or a photo outside
    the folder, is refused and nothing moves."""
    import dataclasses

    ds = scan_folder(image_folder, use_cache=False)
    victim = tmp_path / "outside" / "keep.png"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    path = ds.split("train")[0].path
    for label in (str(tmp_path / "outside"), "../../outside", "..", "a/../../x"):
        forged = dataclasses.replace(ds, classes=[*ds.classes, label])
        with pytest.raises(DatasetError):
            db.relabel(forged, path, label)
    assert Path(path).exists()
    record = dataclasses.replace(ds.split("train")[0], path=str(victim))
    forged = dataclasses.replace(ds, records=[record, *ds.records])
    with pytest.raises(DatasetError, match="not a photo"):
        db.relabel(forged, victim, "b")
    assert victim.read_bytes() == b"precious"


def test_photo_names_are_made_safe():
    assert db._photo_name("a b/c?d*.PNG", "PNG") == "c_d.png"
    assert db._photo_name("x", "JPEG") == "x.jpg"
    assert db._photo_name("...", "PNG") == "photo.png"
    assert db._photo_name("pic.heic", "PPM") == "pic"  # not an accepted extension: write_photo rejects it


def test_unaccepted_format_rejected(tl_home):
    db.create_dataset("d", ["a"])
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PPM")
    report = db.add_photos("d", "a", [("pic.ppm", buf.getvalue())])
    assert not report.added and "not accepted" in report.rejected[0].reason
    assert os.listdir(tl_home / "users/local/datasets/d/a") == []


def test_relabel_refuses_read_only_folders(tl_home, image_folder):
    ds = scan_folder(image_folder, use_cache=False)
    src = Path(ds.split("train")[0].path)
    mode = src.parent.stat().st_mode
    os.chmod(src.parent, 0o555)  # marked read-only, as the shared sample is (respected even as root)
    try:
        with pytest.raises(DatasetError, match="read-only"):
            db.relabel(ds, src, "b")
    finally:
        os.chmod(src.parent, mode)
    assert src.exists()
    assert db.writable(src.parent) and not db.writable(image_folder / "missing")


def test_each_inbox_is_a_new_folder_under_the_data_directory(tl_home):
    first, second = db.new_inbox("My pets"), db.new_inbox("My pets")
    assert first != second and not first.exists()
    assert first.parent == tl_home / "users" / "local" / "inbox" and first.name.startswith(db.dataset_folder_name("My pets"))
