"""core.data.dataset: layouts, stratified splits, fingerprints, bad files, scan cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import layout
from core.data import dataset as data
from core.data.dataset import check_trainable, scan_folder, stratified_split
from core.errors import DatasetError

from tests.helpers import write_images


def _assignment(ds) -> dict[str, str]:
    root = Path(ds.root)
    return {Path(r.path).relative_to(root).as_posix(): r.split for r in ds.records}


# ---------------------------------------------------------------- layouts and splits

def test_split_folders_are_used_as_given(image_folder):
    ds = scan_folder(image_folder)
    assert ds.split_source == "folders"
    assert ds.classes == ["a", "b"]
    assert ds.counts() == {"train": {"a": 12, "b": 12}, "validation": {"a": 4, "b": 4}}
    for r in ds.records:
        rel = Path(r.path).relative_to(image_folder).parts
        assert rel[0] == r.split and rel[1] == r.label
        assert (r.width, r.height, r.format) == (48, 40, "PNG")
    assert ds.bad_files == []
    # labels follow records and class order
    assert ds.labels("validation").tolist() == [0] * 4 + [1] * 4
    check_trainable(ds)


def test_split_folder_aliases(tmp_path):
    root = tmp_path / "aliased"
    for i, cls in enumerate(["x", "y"]):
        write_images(root / "Training" / cls, i, 3)
        write_images(root / "val" / cls, i, 2)
    ds = scan_folder(root)
    assert ds.split_source == "folders"
    assert ds.counts() == {"train": {"x": 3, "y": 3}, "validation": {"x": 2, "y": 2}}


def test_several_folders_of_one_split_are_merged(tmp_path):
    root = tmp_path / "three_way"
    for i, cls in enumerate(["x", "y"]):
        write_images(root / "train" / cls, i, 3)
        write_images(root / "val" / cls, i, 2, seed=1)
        write_images(root / "test" / cls, i, 1, seed=2)
    ds = scan_folder(root)
    assert ds.split_source == "folders"
    assert ds.counts()["validation"] == {"x": 3, "y": 3}  # val/ and test/ both kept
    assert len(ds.records) == 12


def test_fingerprint_changes_when_the_folder_moves(tmp_path, image_folder):
    before = scan_folder(image_folder)
    moved = tmp_path / "elsewhere"
    image_folder.rename(moved)
    after = scan_folder(moved)
    assert after.fingerprint != before.fingerprint  # cached absolute paths would be stale
    assert all(Path(r.path).is_file() and str(moved) in r.path for r in after.records)


def test_single_wrapper_folder_is_unwrapped(tmp_path, image_folder):
    wrapped = tmp_path / "zipped"
    shutil.copytree(image_folder, wrapped / "cats_and_dogs")
    ds = scan_folder(wrapped)
    assert ds.split_source == "folders" and ds.classes == ["a", "b"]
    assert len(ds.records) == 32


def test_flat_folder_stratified_split_is_stable_and_seeded(flat_folder):
    first = scan_folder(flat_folder, seed=7, use_cache=False)
    again = scan_folder(flat_folder, seed=7, use_cache=False)
    other = scan_folder(flat_folder, seed=8, use_cache=False)
    assert first.split_source == "stratified"
    assert first.classes == ["a", "b", "c"]
    assert _assignment(first) == _assignment(again)
    assert _assignment(first) != _assignment(other)
    for ds in (first, other):
        counts = ds.counts()
        for cls in ds.classes:  # 10 per class, 0.2 to validation: stratified exactly
            assert counts["validation"][cls] == 2 and counts["train"][cls] == 8
    # a copy of the folder elsewhere splits the same way (split depends on names, not paths)
    copy = flat_folder.parent / "copy_of_flat"
    shutil.copytree(flat_folder, copy)
    assert _assignment(scan_folder(copy, seed=7, use_cache=False)) == _assignment(first)
    check_trainable(first)


def test_stratified_split_keeps_every_class_in_both_splits():
    items = [(Path(f"big/{i}.png"), "big") for i in range(50)]
    items += [(Path(f"two/{i}.png"), "two") for i in range(2)]
    items += [(Path(f"three/{i}.png"), "three") for i in range(3)]
    for seed in range(5):
        out = stratified_split(items, 0.1, seed)
        for label in ("big", "two", "three"):
            splits = [s for p, s in out.items() if p.parts[0] == label]
            assert "train" in splits and "validation" in splits, (seed, label)
        assert sum(1 for p, s in out.items() if p.parts[0] == "big" and s == "validation") == 5
    # a class with a single image cannot be in both: it stays in train
    single = stratified_split([(Path("solo/0.png"), "solo")], 0.5, 0)
    assert list(single.values()) == ["train"]
    with pytest.raises(DatasetError):
        stratified_split(items, 0.0, 0)
    with pytest.raises(DatasetError):
        stratified_split(items, 1.0, 0)


def test_val_fraction_changes_split(flat_folder):
    ds = scan_folder(flat_folder, val_fraction=0.5, use_cache=False)
    assert all(n == 5 for n in ds.counts()["validation"].values())


def test_train_only_split_folder_gets_stratified(tmp_path):
    root = tmp_path / "trainonly"
    for i, cls in enumerate(["p", "q"]):
        write_images(root / "train" / cls, i, 5)
    ds = scan_folder(root, val_fraction=0.4)
    assert ds.split_source == "stratified"
    assert ds.counts()["validation"] == {"p": 2, "q": 2}


# ---------------------------------------------------------------- fingerprint

def test_fingerprint_changes_on_add_remove_modify_not_on_noop(flat_folder):
    base = scan_folder(flat_folder, use_cache=False).fingerprint
    assert base and scan_folder(flat_folder, use_cache=False).fingerprint == base  # no-op rescan

    target = flat_folder / "a" / "img_000.png"
    st = target.stat()

    # touch: same bytes, new mtime
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    touched = scan_folder(flat_folder, use_cache=False).fingerprint
    assert touched != base
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan_folder(flat_folder, use_cache=False).fingerprint == base  # restored exactly

    # rewrite the bytes (a different picture), keeping the old mtime: the size tells
    original = target.read_bytes()
    Image.new("RGB", (48, 40), (1, 2, 3)).save(target)
    assert target.read_bytes() != original
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan_folder(flat_folder, use_cache=False).fingerprint not in (base, touched)
    target.write_bytes(original)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan_folder(flat_folder, use_cache=False).fingerprint == base

    # add
    extra = write_images(flat_folder.parent / "staging", 1, 1, seed=42)[0]
    new_file = flat_folder / "b" / "zz_new.png"
    shutil.move(extra, new_file)
    added = scan_folder(flat_folder, use_cache=False)
    assert added.fingerprint != base and len(added.records) == 31

    # remove (a different file than the one added)
    new_file.unlink()
    assert scan_folder(flat_folder, use_cache=False).fingerprint == base
    (flat_folder / "c" / "img_003.png").unlink()
    removed = scan_folder(flat_folder, use_cache=False)
    assert removed.fingerprint != base and len(removed.records) == 29


def test_fingerprint_changes_on_rename(flat_folder):
    base = scan_folder(flat_folder, use_cache=False).fingerprint
    (flat_folder / "a" / "img_001.png").rename(flat_folder / "b" / "moved.png")
    assert scan_folder(flat_folder, use_cache=False).fingerprint != base


# ---------------------------------------------------------------- bad files

def test_bad_files_are_listed_with_reasons_and_skipped(image_folder):
    train_a = image_folder / "train" / "a"
    (train_a / "text.jpg").write_text("not a jpeg at all")
    (train_a / "empty.png").write_bytes(b"")
    good = (train_a / "img_000.png").read_bytes()
    (train_a / "cut.png").write_bytes(good[: len(good) // 2])
    (train_a / "readme.txt").write_text("hello")
    (train_a / ".hidden.png").write_bytes(good)  # hidden: ignored, not listed

    ds = scan_folder(image_folder)
    reasons = {Path(b.path).name: b.reason for b in ds.bad_files}
    assert set(reasons) == {"text.jpg", "empty.png", "cut.png", "readme.txt"}
    assert "not an image" in reasons["text.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "truncated" in reasons["cut.png"] or "corrupt" in reasons["cut.png"]
    assert "not an image file type" in reasons["readme.txt"]
    names = {Path(r.path).name for r in ds.records}
    assert not names & set(reasons) and ".hidden.png" not in names
    assert ds.counts()["train"] == {"a": 12, "b": 12}
    check_trainable(ds)


def test_decoder_crash_becomes_bad_file(image_folder, monkeypatch):
    real_probe = data.probe
    victim = image_folder / "train" / "b" / "img_005.png"

    def flaky(path):
        if Path(path) == victim:
            raise RuntimeError("decoder exploded")
        return real_probe(path)

    monkeypatch.setattr(data, "probe", flaky)
    ds = scan_folder(image_folder, use_cache=False)
    assert [(Path(b.path), "RuntimeError" in b.reason) for b in ds.bad_files] == [(victim, True)]
    assert len(ds.records) == 31


# ---------------------------------------------------------------- errors

def test_missing_folder_raises(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        scan_folder(tmp_path / "nope")


def test_file_instead_of_folder_raises(tmp_path):
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(DatasetError, match="Not a folder"):
        scan_folder(f)


def test_empty_folder_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        scan_folder(tmp_path / "empty")
    (tmp_path / "hollow" / "cats").mkdir(parents=True)
    (tmp_path / "hollow" / "dogs").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No images found"):
        scan_folder(tmp_path / "hollow")


def test_check_trainable_rejects_one_class(tmp_path):
    root = tmp_path / "one"
    write_images(root / "only", 0, 6)
    ds = scan_folder(root)
    assert ds.classes == ["only"]
    with pytest.raises(DatasetError, match="at least two classes"):
        check_trainable(ds)


def test_check_trainable_rejects_all_bad(tmp_path):
    root = tmp_path / "allbad"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "x.jpg").write_text("nope")
    ds = scan_folder(root)
    assert ds.records == [] and len(ds.bad_files) == 2
    with pytest.raises(DatasetError, match="no usable images"):
        check_trainable(ds)


def test_check_trainable_rejects_class_missing_from_train(tmp_path):
    root = tmp_path / "lopsided"
    write_images(root / "train" / "a", 0, 3)
    write_images(root / "validation" / "a", 0, 2)
    write_images(root / "validation" / "b", 1, 2)
    ds = scan_folder(root)
    assert ds.classes == ["a", "b"]
    with pytest.raises(DatasetError, match="two classes"):
        check_trainable(ds)


# ---------------------------------------------------------------- scan cache

def test_second_scan_is_served_from_cache(image_folder, monkeypatch, tl_home):
    (image_folder / "train" / "a" / "bad.jpg").write_text("junk")
    first = scan_folder(image_folder, name="mine")
    assert list(layout.cache("scans").glob("*.json"))

    def boom(path):
        raise AssertionError(f"decoded {path} although the scan was cached")

    monkeypatch.setattr(data, "_check", boom)
    seen = []
    second = scan_folder(image_folder, name="mine", progress=lambda d, t: seen.append((d, t)))
    assert second.to_json() == first.to_json()
    assert [Path(b.path).name for b in second.bad_files] == ["bad.jpg"]
    assert seen[-1] == (33, 33)

    # the monkeypatch is live: a scan that bypasses or misses the cache does decode
    with pytest.raises(AssertionError, match="although the scan was cached"):
        scan_folder(image_folder, use_cache=False)
    with pytest.raises(AssertionError):
        scan_folder(image_folder, name="mine", seed=99)  # another seed: another entry
    write_images(image_folder / "train" / "b" / "more", 1, 1)
    with pytest.raises(AssertionError):
        scan_folder(image_folder, name="mine")  # changed folder: cache miss


def test_corrupt_scan_cache_is_ignored(image_folder, tl_home):
    first = scan_folder(image_folder)
    (entry,) = layout.cache("scans").glob("*.json")
    entry.write_text("{ not json")
    again = scan_folder(image_folder)
    assert again.to_json() == first.to_json()


def test_a_scan_cache_naming_paths_outside_the_folder_is_not_trusted(image_folder, tl_home, tmp_path):
    """A forged (or stale) cache entry that points the dataset at another folder is rescanned."""
    import json

    first = scan_folder(image_folder)
    (entry,) = layout.cache("scans").glob("*.json")
    outside = tmp_path / "outside" / "secret.png"
    forged = json.loads(entry.read_text())
    forged["records"][0]["path"] = str(image_folder / ".." / "outside" / "secret.png")
    entry.write_text(json.dumps(forged))
    again = scan_folder(image_folder)
    assert again.to_json() == first.to_json() and str(outside) not in json.dumps(again.to_json())
    forged = json.loads(entry.read_text())
    forged["root"] = str(tmp_path / "outside")
    entry.write_text(json.dumps(forged))
    assert scan_folder(image_folder).root == first.root


def test_progress_reaches_total(image_folder):
    seen = []
    scan_folder(image_folder, use_cache=False, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (32, 32)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_dataset_json_roundtrip(image_folder):
    ds = scan_folder(image_folder)
    back = data.Dataset.from_json(ds.to_json())
    assert back == ds
    assert np.array_equal(back.labels("train"), ds.labels("train"))
