"""Dataset inspection: counts, sizes, imbalance, duplicates, leaks, hash cache, thumbnails."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import stats
from core.data.dataset import scan_folder

from tests.helpers import write_images


def smooth_image(seed: int, size=(96, 80)) -> Image.Image:
    """A photo-like picture: random colours, smoothly interpolated (distinct per seed)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((6, 6, 3)) * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)


def save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture
def dup_folder(tmp_path) -> Path:
    """Distinct images plus four planted duplicate pairs (see ``EXPECTED_PAIRS``)."""
    root = tmp_path / "dups"
    for cls, split, seeds in [("a", "train", range(0, 8)), ("b", "train", range(10, 18)),
                              ("a", "validation", range(20, 24)), ("b", "validation", range(30, 33))]:
        for s in seeds:
            save(smooth_image(s), root / split / cls / f"s{s:02d}.png")
    shutil.copy(root / "train/a/s00.png", root / "train/a/copy.png")
    shutil.copy(root / "train/a/s02.png", root / "train/b/conflict.png")
    shutil.copy(root / "train/a/s05.png", root / "validation/a/leak.png")
    small = smooth_image(11).resize((60, 50), Image.Resampling.BILINEAR)
    save(small, root / "validation/b/resized.jpg", quality=80)
    return root


# (path_a, path_b, kind, leak, label_conflict), paths relative to the dataset root
EXPECTED_PAIRS = {
    ("train/a/copy.png", "train/a/s00.png", "exact", False, False),
    ("train/a/s02.png", "train/b/conflict.png", "exact", False, True),
    ("train/a/s05.png", "validation/a/leak.png", "exact", True, False),
    ("train/b/s11.png", "validation/b/resized.jpg", "near", True, False),
}


def relative_pairs(df, root: Path) -> set[tuple]:
    out = set()
    for row in df.itertuples():
        a, b = sorted(Path(p).relative_to(root).as_posix() for p in (row.path_a, row.path_b))
        out.add((a, b, row.kind, bool(row.leak), bool(row.label_conflict)))
    return out


def test_counts_frame(image_folder):
    ds = scan_folder(image_folder)
    df = stats.counts_frame(ds)
    assert list(df.columns) == ["class", "split", "count"]
    table = df.pivot(index="class", columns="split", values="count")
    assert table.loc["a", "train"] == 12 and table.loc["b", "validation"] == 4
    assert df["count"].sum() == len(ds.records) == 32


def test_image_frame_uses_scan_records(image_folder):
    ds = scan_folder(image_folder)
    df = stats.image_frame(ds)
    assert list(df.columns) == stats.IMAGE_COLUMNS
    assert len(df) == 32
    row = df.iloc[0]
    assert (row.width, row.height) == (48, 40)
    assert row.aspect == pytest.approx(1.2)
    assert row.megapixels == pytest.approx(48 * 40 / 1e6)
    assert row.file_bytes == Path(row.path).stat().st_size
    assert set(df["format"]) == {"PNG"}


def test_imbalance(tmp_path, image_folder):
    balanced = stats.imbalance(scan_folder(image_folder))
    assert balanced["ratio"] == 1.0 and balanced["warning"] is None

    root = tmp_path / "skewed"
    write_images(root / "a", 0, 30)
    write_images(root / "b", 1, 12)
    report = stats.imbalance(scan_folder(root, val_fraction=0.2))
    assert (report["largest"], report["largest_count"]) == ("a", 24)
    assert (report["smallest"], report["smallest_count"]) == ("b", 10)
    assert report["ratio"] == pytest.approx(2.4)
    assert "imbalanced" in report["warning"] and "Too few" not in report["warning"]

    tiny = tmp_path / "tiny"
    write_images(tiny / "a", 0, 4)
    write_images(tiny / "b", 1, 4)
    assert "Too few" in stats.imbalance(scan_folder(tiny))["warning"]

    one = tmp_path / "one"
    write_images(one / "a", 0, 4)
    assert stats.imbalance(scan_folder(one)) is None


def test_duplicates_exact_near_leak_conflict(dup_folder):
    ds = scan_folder(dup_folder)
    assert len(ds.records) == 27 and ds.bad_files == []
    df = stats.duplicates(ds)
    assert list(df.columns) == stats.PAIR_COLUMNS
    assert relative_pairs(df, dup_folder) == EXPECTED_PAIRS
    assert (df.loc[df.kind == "exact", "distance"] == 0).all()
    near = df.loc[df.kind == "near", "distance"].iloc[0]
    assert 0 <= near <= stats.NEAR_THRESHOLD


def test_near_threshold_matters(dup_folder):
    ds = scan_folder(dup_folder)
    strict = stats.duplicates(ds, threshold=-1)
    assert set(strict["kind"]) == {"exact"}
    loose = stats.duplicates(ds, threshold=64)
    assert len(loose) == len(ds.records) * (len(ds.records) - 1) // 2


def test_leak_pairs_oriented(dup_folder):
    ds = scan_folder(dup_folder)
    leaks = stats.leak_pairs(stats.duplicates(ds))
    assert len(leaks) == 2
    assert all("/train/" in p for p in leaks["train_path"])
    assert all("/validation/" in p for p in leaks["validation_path"])
    assert set(leaks["kind"]) == {"exact", "near"}
    assert stats.leak_pairs(stats.duplicates(ds, threshold=-1)).shape[0] == 1


def test_no_duplicates_gives_empty_frames(image_folder):
    ds = scan_folder(image_folder)
    ds.records = ds.records[:1]
    df = stats.duplicates(ds)
    assert df.empty and list(df.columns) == stats.PAIR_COLUMNS
    assert stats.leak_pairs(df).empty


def test_hashes_cached_per_fingerprint(dup_folder, tl_home, monkeypatch):
    ds = scan_folder(dup_folder)
    calls = []
    first = stats.duplicates(ds, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (27, 27)
    assert len(list((tl_home / "hashes").glob(f"{ds.fingerprint}-*.json"))) == 1

    def boom(path):
        raise AssertionError("hash recomputed despite the cache")

    monkeypatch.setattr(stats, "_hash_file", boom)
    calls.clear()
    second = stats.duplicates(scan_folder(dup_folder), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(27, 27)]
    assert second.equals(first)


def test_damaged_hash_cache_is_rebuilt(dup_folder, tl_home):
    ds = scan_folder(dup_folder)
    first = stats.duplicates(ds)
    (cache,) = (tl_home / "hashes").glob("*.json")
    data = json.loads(cache.read_text())
    victim = next(iter(data["hashes"]))
    data["hashes"][victim]["phash"] = "not hex"
    cache.write_text(json.dumps(data))
    hashed = []
    stats.file_hashes(ds, progress=lambda done, total: hashed.append(total))
    assert hashed == [1], "only the damaged entry is recomputed"
    cache.write_text(cache.read_text()[:100])
    assert stats.duplicates(ds).equals(first)


def test_hash_cache_survives_a_moved_folder(dup_folder, tmp_path, monkeypatch):
    """Cached by relative path: the same files elsewhere (same fingerprint) are not rehashed."""
    ds = scan_folder(dup_folder)
    stats.file_hashes(ds)
    moved = scan_folder(dup_folder, use_cache=False)
    moved.root = str(tmp_path / "elsewhere")
    moved.records = [
        replace(r, path=str(tmp_path / "elsewhere" / Path(r.path).relative_to(dup_folder)))
        for r in moved.records
    ]
    monkeypatch.setattr(stats, "_hash_file", lambda path: pytest.fail("rehashed"))
    hashes = stats.file_hashes(moved)
    assert set(hashes) == {r.path for r in moved.records}


def test_bad_file_after_scan_does_not_crash(dup_folder):
    ds = scan_folder(dup_folder)
    victim = dup_folder / "train/b/s12.png"
    victim.write_bytes(b"no longer an image")
    (dup_folder / "train/b/s13.png").unlink()
    hashes = stats.file_hashes(ds)
    assert hashes[str(victim)]["phash"] is None and "not an image" in hashes[str(victim)]["error"]
    assert "cannot read" in hashes[str(dup_folder / "train/b/s13.png")]["error"]
    assert relative_pairs(stats.duplicates(ds), dup_folder) == EXPECTED_PAIRS


def test_phash_robust_to_resize_and_jpeg_but_separates_images():
    img = smooth_image(3, size=(320, 240))
    buf = io.BytesIO()
    img.resize((160, 120)).save(buf, "JPEG", quality=70)
    again = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert stats.phash(img) - stats.phash(again) <= 4  # Hamming distance of the 64-bit hashes
    others = [stats.phash(smooth_image(s, size=(320, 240))) for s in range(4, 14)]
    assert min(stats.phash(img) - h for h in others) > 12
    assert len(str(stats.phash(img))) == 16  # what the hash cache stores


def test_hashes_of_an_older_version_are_rebuilt_and_dropped(dup_folder, tl_home):
    """A cache file written by another hash version is never read; it goes once the new one is written."""
    ds = scan_folder(dup_folder)
    folder = tl_home / "hashes"
    folder.mkdir(parents=True, exist_ok=True)
    rel = {str(Path(r.path).relative_to(dup_folder)): r for r in ds.records}
    old = folder / f"{ds.fingerprint}-v{stats.HASH_VERSION - 1}.json"
    old.write_text(json.dumps({"fingerprint": ds.fingerprint, "version": stats.HASH_VERSION - 1, "hashes": {
        k: {"sha256": "0" * 64, "phash": "0" * 16, "error": None} for k in rel}}))
    hashed = []
    hashes = stats.file_hashes(ds, progress=lambda done, total: hashed.append(total))
    assert hashed[-1] == len(ds.records), "every image rehashed"
    assert all(h["sha256"] != "0" * 64 for h in hashes.values())
    assert not old.exists()
    assert [f.name for f in folder.iterdir()] == [f"{ds.fingerprint}-v{stats.HASH_VERSION}.json"]
    assert relative_pairs(stats.duplicates(ds), dup_folder) == EXPECTED_PAIRS


def test_near_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2**63, size=700, dtype=np.uint64)
    for i in range(0, 700, 37):  # plant near copies, some across the chunk boundary
        j = (i * 7 + 300) % 700
        flips = rng.choice(64, size=rng.integers(0, 6), replace=False)
        codes[j] = codes[i] ^ np.uint64(sum(1 << int(b) for b in flips))
    ii, jj, dd = stats._near_pairs(codes, 5)
    got = {(int(a), int(b), int(d)) for a, b, d in zip(ii, jj, dd)}
    expected = set()
    for a in range(700):
        for b in range(a + 1, 700):
            d = bin(int(codes[a]) ^ int(codes[b])).count("1")
            if d <= 5:
                expected.add((a, b, d))
    assert len(expected) >= 15
    assert got == expected


def test_thumbnail(dup_folder, tmp_path):
    thumb = stats.thumbnail(dup_folder / "train/a/s00.png", size=32)
    assert thumb.mode == "RGB" and max(thumb.size) == 32 and thumb.size == (32, 27)
    for bad in (tmp_path / "missing.png", save_text(tmp_path / "fake.jpg")):
        tile = stats.thumbnail(bad, size=40)
        assert tile.size == (40, 40) and tile.mode == "RGB"


def save_text(path: Path) -> Path:
    path.write_text("not an image")
    return path
