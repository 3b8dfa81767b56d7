"""core.features.cache: cached extraction with a tiny local backbone (fast tier)."""

from __future__ import annotations

import gc
import math
import time
import tracemalloc
from pathlib import Path

import keras
import numpy as np
import pytest

from core.nets import backbones
from core.features import cache as features
from core.nets import engine, forward
from core import settings
from core.data.dataset import Dataset, scan_folder
from core.errors import TransferLabError
from core.features.cache import Cancelled, extract_features
from core.data.images import load_rgb

from tests.helpers import assert_matches_reference, make_local_backbone, write_images

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)


@pytest.fixture
def ds(image_folder, local_weights) -> Dataset:
    return scan_folder(image_folder)


def _entries(home: Path) -> list[str]:
    folder = home / "features"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _reference(paths, size=32) -> np.ndarray:
    """Features computed one image at a time, outside core.features.cache."""
    bb = backbones.load_backbone("tiny")
    rows = []
    for p in paths:
        x = load_rgb(p, (size, size)).astype(np.float32)[None]
        rows.append(bb.model(x).numpy().mean(axis=(1, 2))[0])
    return np.stack(rows)


# ---------------------------------------------------------------- extraction and cache

def test_extract_shape_rows_follow_paths_and_cache(ds, tl_home, monkeypatch):
    fs = extract_features(ds, "tiny", split="train", batch_size=5)
    assert fs.from_cache is False
    assert fs.X.shape == (24, 12) and fs.X.dtype == np.float32
    assert fs.paths == ds.paths("train")
    assert np.array_equal(fs.y, ds.labels("train"))
    assert fs.valid.all() and fs.classes == ["a", "b"]
    assert_matches_reference(np.asarray(fs.X), _reference(fs.paths))
    assert fs.meta["shape"] == [24, 12] and fs.meta["invalid"] == 0
    assert _entries(tl_home) == [fs.key]

    # second call: served from disk, no backbone load, no forward pass
    def no_load(*args, **kwargs):
        raise AssertionError("backbone loaded although the features were cached")

    monkeypatch.setattr(backbones, "load_backbone", no_load)
    monkeypatch.setattr(features, "_extract", no_load)
    start = time.perf_counter()
    again = extract_features(ds, "tiny", split="train", batch_size=5)
    elapsed = time.perf_counter() - start
    assert again.from_cache is True and again.key == fs.key
    assert elapsed < 2.0  # milliseconds of work; generous for a loaded CI machine
    assert np.array_equal(np.asarray(again.X), np.asarray(fs.X))
    assert again.paths == fs.paths and np.array_equal(again.y, fs.y)
    assert isinstance(again.X, np.memmap)


def test_validation_split_is_its_own_entry(ds):
    train = extract_features(ds, "tiny", split="train")
    val = extract_features(ds, "tiny", split="validation")
    assert val.key != train.key and val.from_cache is False
    assert val.X.shape == (8, 12) and val.paths == ds.paths("validation")


def _corrupt_truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])


def _corrupt_flip(path: Path):
    data = bytearray(path.read_bytes())
    for i in range(1, 9):  # last bytes are feature values, past the .npy header
        data[-i] ^= 0xFF
    path.write_bytes(bytes(data))


def _corrupt_meta(path: Path):
    (path.parent / "meta.json").write_text("{ broken")


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_flip, _corrupt_meta], ids=["truncate", "flip", "meta"])
def test_corrupt_cache_entry_is_detected_and_rebuilt(ds, tl_home, corrupt):
    first = extract_features(ds, "tiny")
    original = np.array(first.X)
    npy = tl_home / "features" / first.key / "features.npy"
    del first
    gc.collect()
    corrupt(npy)
    rebuilt = extract_features(ds, "tiny")
    assert rebuilt.from_cache is False
    assert np.array_equal(np.asarray(rebuilt.X), original)
    third = extract_features(ds, "tiny")
    assert third.from_cache is True


def test_flipped_bytes_fail_the_checksum(ds, tl_home):
    from core.errors import CacheCorrupt

    fs = extract_features(ds, "tiny")
    size = (tl_home / "features" / fs.key / "features.npy").stat().st_size
    _corrupt_flip(tl_home / "features" / fs.key / "features.npy")
    assert (tl_home / "features" / fs.key / "features.npy").stat().st_size == size
    with pytest.raises(CacheCorrupt, match="checksum"):
        features.read_entry(fs.key, ds.classes)


def test_keys_differ_by_pooling_weights_split_and_data(ds, image_folder):
    avg = extract_features(ds, "tiny", pooling="avg")
    mx = extract_features(ds, "tiny", pooling="max")
    flat = extract_features(ds, "tiny", pooling="flatten")
    rnd0 = extract_features(ds, "tiny", weights=None, seed=0)
    rnd1 = extract_features(ds, "tiny", weights=None, seed=1)
    keys = [f.key for f in (avg, mx, flat, rnd0, rnd1)]
    assert len(set(keys)) == 5
    assert all(not f.from_cache for f in (avg, mx, flat, rnd0, rnd1))
    assert flat.X.shape == (24, 8 * 8 * 12) and mx.X.shape == (24, 12)
    assert not np.allclose(np.asarray(avg.X), np.asarray(mx.X))
    assert not np.allclose(np.asarray(avg.X), np.asarray(rnd0.X))
    assert not np.allclose(np.asarray(rnd0.X), np.asarray(rnd1.X))
    assert avg.meta["weights_id"].startswith("imagenet-") and rnd1.meta["weights_id"] == "random-1"

    # the same dataset after an edit is a new entry, not a stale hit
    write_images(image_folder / "train" / "a" / "more", 0, 1, seed=9)
    changed = scan_folder(image_folder)
    assert changed.fingerprint != ds.fingerprint
    again = extract_features(changed, "tiny")
    assert again.key != avg.key and again.from_cache is False and again.X.shape == (25, 12)


def test_keys_differ_by_input_size(tmp_path, tl_home, monkeypatch):
    # a keras.applications entry (not fixed-size), with its constructor swapped for a tiny net
    built = []

    def tiny_mobilenet(weights=None, include_top=False, input_shape=None, **kwargs):
        assert weights is None and not include_top
        built.append(input_shape)
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(4, 3, strides=4, name="c")(inputs))

    monkeypatch.setattr(keras.applications, "MobileNet", tiny_mobilenet)
    for i, cls in enumerate(["a", "b"]):
        write_images(tmp_path / "small" / cls, i, 2)
    ds = scan_folder(tmp_path / "small")
    small = extract_features(ds, "mobilenet", weights=None, input_size=32)
    large = extract_features(ds, "mobilenet", weights=None, input_size=48)
    assert built == [(32, 32, 3), (48, 48, 3)]
    assert small.key != large.key and not large.from_cache
    assert small.meta["input_size"] == 32 and large.meta["input_size"] == 48
    assert len(_entries(tl_home)) == 2
    assert extract_features(ds, "mobilenet", weights=None, input_size=48).from_cache
    # a fixed-size local backbone ignores the requested size: same entry
    folder = tmp_path / "weights"
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    make_local_backbone(folder)
    a = extract_features(ds, "tiny", input_size=32)
    b = extract_features(ds, "tiny", input_size=64)
    assert a.key == b.key and b.from_cache


def test_loaded_backbone_is_reused(ds, monkeypatch):
    bb = backbones.load_backbone("tiny")
    monkeypatch.setattr(backbones, "load_backbone", lambda *a, **k: pytest.fail("reloaded"))
    fs = extract_features(ds, "tiny", loaded=bb)
    assert fs.from_cache is False and fs.meta["weights_id"] == bb.weights_id


def test_a_kept_backbone_traces_its_extraction_function_once(ds, monkeypatch):
    compiled = []
    real = forward.compiled_forward
    monkeypatch.setattr(forward, "compiled_forward", lambda *a: compiled.append(a[1]) or real(*a))
    bb = backbones.load_backbone("tiny")
    train = extract_features(ds, "tiny", split="train", loaded=bb)
    val = extract_features(ds, "tiny", split="validation", loaded=bb)
    extract_features(ds, "tiny", split="validation", loaded=bb, pooling="max")
    assert compiled == ["avg", "max"]  # the validation split reused the train split's function
    assert_matches_reference(np.asarray(val.X), _reference(val.paths))
    assert not train.from_cache and not val.from_cache


# ---------------------------------------------------------------- progress and cancel

def test_progress_reports_increasing_done_and_speed(ds):
    seen = []
    fs = extract_features(ds, "tiny", batch_size=5, progress=seen.append)
    done = [p.done for p in seen]
    assert done == [5, 10, 15, 20, 24]
    assert all(p.total == 24 and not p.cached for p in seen)
    assert all(p.images_per_s > 0 and math.isfinite(p.images_per_s) for p in seen)
    assert seen[-1].eta_s == 0 and seen[0].eta_s > 0
    assert fs.from_cache is False

    cached = []
    extract_features(ds, "tiny", batch_size=5, progress=cached.append)
    assert len(cached) == 1 and cached[0].cached and cached[0].done == cached[0].total == 24


def test_should_stop_cancels_and_leaves_no_entry(ds, tl_home):
    checks = []

    def stop_after_one_batch():
        checks.append(1)
        return len(checks) > 1

    seen = []
    with pytest.raises(Cancelled):
        extract_features(ds, "tiny", batch_size=4, progress=seen.append, should_stop=stop_after_one_batch)
    assert [p.done for p in seen] == [4]  # it stopped after the first batch, not at the end
    assert _entries(tl_home) == []  # no entry and no temporary folder left behind
    with pytest.raises(Cancelled):
        extract_features(ds, "tiny", should_stop=lambda: True)
    assert _entries(tl_home) == []
    fs = extract_features(ds, "tiny")
    assert fs.from_cache is False and fs.X.shape == (24, 12)


# ---------------------------------------------------------------- memory

def _rss_anon_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def _measure(root: Path, n_per_class: int) -> tuple[int, int, object]:
    for i, cls in enumerate(["a", "b"]):
        write_images(root / "train" / cls, i, n_per_class, size=(32, 32), seed=5)
        write_images(root / "validation" / cls, i, 1, size=(32, 32), seed=6)
    ds = scan_folder(root)
    rss = []
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fs = extract_features(ds, "wide", pooling="flatten", batch_size=8,
                              progress=lambda p: rss.append(_rss_anon_kb()))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, (rss[-1] - rss[0]) * 1024, fs


def test_memory_is_bounded_by_a_batch(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    # feature map 16 x 16 x 128 flattened: 128 KiB per image
    make_local_backbone(folder, name="wide", feature_filters=128, feature_stride=1)
    row_bytes = 16 * 16 * 128 * 4

    _measure(tmp_path / "warmup", 4)  # first-use costs (tracing, thread pools) out of the way
    peak_small, rss_small, small = _measure(tmp_path / "n40", 20)
    peak_large, rss_large, large = _measure(tmp_path / "n160", 80)
    assert small.X.shape == (40, 16 * 16 * 128) and large.X.shape == (160, 16 * 16 * 128)
    assert isinstance(large.X, np.memmap)
    held = 120 * row_bytes  # what keeping every row in memory would add between 40 and 160 images
    assert peak_large - peak_small < held / 3, (peak_small, peak_large)
    assert rss_large < held / 2, (rss_small, rss_large)
    assert not large.from_cache


# ---------------------------------------------------------------- files that break after the scan

def test_file_broken_after_scan_is_marked_invalid(ds, image_folder):
    paths = ds.paths("train")
    garbage = image_folder / "train" / "a" / "img_003.png"
    deleted = image_folder / "train" / "b" / "img_007.png"
    garbage.write_bytes(b"no longer a png")
    deleted.unlink()
    fs = extract_features(ds, "tiny")  # ds still lists both: the scan is from before
    assert fs.X.shape == (24, 12) and fs.paths == paths
    bad = {paths.index(str(garbage)), paths.index(str(deleted))}
    assert {i for i in range(24) if not fs.valid[i]} == bad
    assert fs.meta["invalid"] == 2
    X, y = fs.usable()
    assert X.shape == (22, 12) and len(y) == 22
    good = [p for i, p in enumerate(paths) if i not in bad]
    assert_matches_reference(X, _reference(good))


# ---------------------------------------------------------------- errors and housekeeping

def test_empty_split_and_bad_pooling(local_weights, tmp_path):
    empty = Dataset(name="empty", root=str(tmp_path), classes=["a", "b"], records=[], fingerprint="abc")
    with pytest.raises(TransferLabError, match="no images"):
        extract_features(empty, "tiny", split="validation")
    with pytest.raises(ValueError, match="pooling"):
        extract_features(empty, "tiny", pooling="median")


def test_clear_cache(ds, tl_home):
    extract_features(ds, "tiny", split="train")
    extract_features(ds, "tiny", split="validation")
    assert features.clear_cache() == 2
    assert _entries(tl_home) == []
    assert extract_features(ds, "tiny").from_cache is False


# ---------------------------------------------------------------- reuse across entries

def _add_photos(folder: Path, prefix: str, n: int, label_index: int, seed: int) -> list[Path]:
    """``n`` new generated photos named ``prefix_i.png`` in ``folder``."""
    out = []
    for src in write_images(folder.parent / f".gen-{prefix}", label_index, n, seed=seed):
        out.append(src.replace(folder / f"{prefix}_{src.stem}.png"))
    return out


def test_edited_dataset_extracts_only_its_new_photos(ds, image_folder, monkeypatch):
    first = extract_features(ds, "tiny", split="train")
    _add_photos(image_folder / "train" / "a", "new", 2, 0, seed=7)
    edited = scan_folder(image_folder)
    assert edited.fingerprint != ds.fingerprint
    seen: list[int] = []
    real = engine.FrozenForward.__call__

    def counting(self, pixels):  # every batch through the frozen network, whichever engine runs it
        seen.append(len(pixels))
        return real(self, pixels)

    monkeypatch.setattr(engine.FrozenForward, "__call__", counting)
    again = extract_features(edited, "tiny", split="train")
    new = [p for p in again.paths if p not in first.paths]
    assert len(new) == 2 and again.from_cache is False
    assert again.meta["reused"] == len(again.paths) - 2 == len(first.paths)
    assert seen == [2]  # only the new photos (the feature width comes from the model, no probe call)
    assert again.meta["speed"]["images"] == 2 and not again.meta["speed"]["inherited"]
    for p in first.paths:
        np.testing.assert_array_equal(again.X[again.paths.index(p)], first.X[first.paths.index(p)])
    assert_matches_reference(np.asarray(again.X), _reference(again.paths))


def test_subset_of_an_extracted_dataset_needs_no_network(ds, monkeypatch):
    from core.data.dataset import subset

    extract_features(ds, "tiny", split="train")
    small = subset(ds, 3, seed=0)
    expected = _reference(small.paths("train"))
    monkeypatch.setattr(backbones, "load_backbone", lambda *a, **k: pytest.fail("backbone loaded"))
    fs = extract_features(small, "tiny", split="train")
    assert fs.meta["reused"] == len(fs.paths) == len(small.paths("train")) == 6
    donor = extract_features(ds, "tiny", split="train").meta["speed"]  # the speed measured on the donor
    assert fs.meta["speed"] == {**donor, "inherited": True} and donor["images"] == len(ds.paths("train"))
    assert_matches_reference(np.asarray(fs.X), expected)


def test_changed_file_or_damaged_entry_is_not_reused(ds, image_folder, tl_home):
    first = extract_features(ds, "tiny", split="train")
    changed = Path(first.paths[0])
    _add_photos(changed.parent, "swap", 1, 1, seed=9)[0].replace(changed)  # same path, other photo
    again = extract_features(scan_folder(image_folder), "tiny", split="train")
    assert again.meta["reused"] == len(again.paths) - 1
    assert_matches_reference(np.asarray(again.X), _reference(again.paths))

    for entry in (tl_home / "features").iterdir():  # a donor failing its checksum lends nothing
        _corrupt_flip(entry / "features.npy")
    _add_photos(image_folder / "train" / "b", "later", 1, 1, seed=11)
    third = extract_features(scan_folder(image_folder), "tiny", split="train")
    assert third.meta["reused"] == 0
    assert_matches_reference(np.asarray(third.X), _reference(third.paths))
