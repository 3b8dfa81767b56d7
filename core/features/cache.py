"""Cached feature extraction: one forward pass per image, then reused from disk.

Cache key: dataset fingerprint x split x backbone x weights identity x input
size x pooling x engine and precision (``core.nets.engine``: a bf16 row is never
served as f32) x preprocessing version. Entries are written in chunks into a
memory-mapped ``.npy`` beside a ``meta.json`` carrying a checksum; a corrupt or
truncated entry is detected on read and rebuilt. Memory is bounded by a batch.

A new entry copies the rows of unchanged files (same path, size and mtime) from
other entries of the same network and settings, so an edited dataset or a subset
of an extracted one only runs the network on the photos it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import atomic, layout
from core.data.dataset import Dataset
from core.hashing import file_sha256
from core.errors import CacheCorrupt, Cancelled, StorageError, TransferLabError
from core.nets.forward import check_pooling
from core.data.pipeline import pixel_batches
from core.data.uploads import ensure_free_space
from core.features import sharded
from core.nets import backbones, engine

# Bump when decoding, resizing or pooling changes what a cached entry would hold.
PREP_VERSION = 1
DEFAULT_BATCH = 32


@dataclass
class ExtractProgress:
    done: int
    total: int
    images_per_s: float
    cached: bool = False

    @property
    def eta_s(self) -> float:
        return (self.total - self.done) / self.images_per_s if self.images_per_s > 0 else float("nan")


@dataclass
class FeatureSet:
    """Features of one split: ``X`` (memory-mapped, rows follow ``paths``), labels ``y``."""

    X: np.ndarray
    y: np.ndarray
    paths: list[str]
    valid: np.ndarray
    classes: list[str]
    key: str
    meta: dict
    from_cache: bool

    def usable(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose image decoded (a file that broke after the scan is left out)."""
        return np.asarray(self.X[self.valid]), self.y[self.valid]


def network_id(backbone: str, weights_id: str) -> str:
    """The name the engine's parity guard knows a backbone's weights by (``Backbone.frozen_forward``)."""
    return f"{backbone}|{weights_id}"


def engine_label(backbone: str, weights_id: str, size: int, pooling: str) -> str:
    """``openvino bf16`` or ``tensorflow f32``: the engine this network's rows come from here (the
    chosen one, unless the parity guard refused it for this network)."""
    return engine.effective(network_id(backbone, weights_id), size, pooling).label


def cache_key(fingerprint: str, split: str, backbone: str, weights_id: str, size: int, pooling: str,
              engine: str | None = None) -> str:
    """``engine``: the label of the engine that computes the rows (default: the one in use)."""
    engine = engine or engine_label(backbone, weights_id, size, pooling)
    raw = f"{fingerprint}|{split}|{backbone}|{weights_id}|{size}|{pooling}|{engine}|v{PREP_VERSION}"
    return f"{backbone}-{size}-{pooling}-{split}-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _entry_dir(key: str) -> Path:
    return layout.cache("features") / key


def read_entry(key: str, classes: list[str]) -> FeatureSet:
    """Open a cache entry; ``CacheCorrupt`` when it is missing, truncated or altered."""
    folder = _entry_dir(key)
    meta = atomic.read_json(folder / "meta.json")
    if not meta:
        raise CacheCorrupt(f"feature cache entry {key} has no readable meta.json")
    files = {name: folder / name for name in ("features.npy", "labels.npy", "valid.npy")}
    for name, path in files.items():
        if not path.is_file() or path.stat().st_size != meta["sizes"][name]:
            raise CacheCorrupt(f"feature cache file {path} is missing or truncated")
        if file_sha256(path) != meta["checksums"][name]:
            raise CacheCorrupt(f"feature cache file {path} failed its checksum")
    X = np.load(files["features.npy"], mmap_mode="r")
    return FeatureSet(
        X=X, y=np.load(files["labels.npy"]), paths=list(meta["paths"]), valid=np.load(files["valid.npy"]),
        classes=classes, key=key, meta=meta, from_cache=True,
    )


def extract_features(
    ds: Dataset,
    backbone: Any,
    *,
    split: str = "train",
    weights: Any = "imagenet",
    input_size: int | None = None,
    pooling: str = "avg",
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    progress: Callable[[ExtractProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loaded: Any = None,
) -> FeatureSet:
    """Features of ``split`` of ``ds`` through ``backbone`` (a name or its ``BackboneSpec``), from the
    cache when possible.

    ``loaded`` may pass an already loaded ``core.nets.backbones.Backbone`` to avoid reloading it.
    """

    check_pooling(pooling)
    known = getattr(loaded, "spec", None)  # a loaded backbone knows its spec: no lookup
    spec = known if isinstance(known, backbones.BackboneSpec) and known.name == backbone else backbones.resolve(backbone)
    backbone = spec.name
    size = spec.size_for(input_size)
    wid = loaded.weights_id if loaded is not None else spec.weights_id(weights, seed, size)
    engine = engine_label(backbone, wid, size, pooling)
    key = cache_key(ds.fingerprint, split, backbone, wid, size, pooling, engine)
    paths = ds.paths(split)
    try:
        fs = read_entry(key, ds.classes)
        if progress:
            progress(ExtractProgress(len(paths), len(paths), 0.0, cached=True))
        return fs
    except CacheCorrupt:
        shutil.rmtree(_entry_dir(key), ignore_errors=True)

    if not paths:
        raise TransferLabError(f"The {split} split of '{ds.name}' has no images to extract features from.")
    stamps = [_stamp(p) for p in paths]
    net = _Network(backbone, wid, size, pooling, engine)
    reused, donor_speed = _reusable_rows(net, dict(zip(paths, stamps)))
    if len(reused) < len(paths):
        loaded = loaded or backbones.load_backbone(spec, weights, size, seed)
    return _extract(ds, split, net, loaded, reused, donor_speed, stamps, batch_size, key, progress, should_stop,
                    source=(weights, seed))


@dataclass(frozen=True)
class _Network:
    """What a cached row depends on besides the image: rows agreeing on it can be shared."""

    backbone: str
    weights_id: str
    input_size: int
    pooling: str
    engine: str


def _stamp(path: str) -> str | None:
    """Size and mtime of a file: a row is reused only while both are unchanged."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def measured_speed(meta: dict) -> dict | None:
    """``{"images", "seconds"}`` of the forward passes an entry ran, or inherited from the
    entries it reused every row from, so a speed stays known after rows move between entries."""
    speed = meta.get("speed")
    return speed if speed and speed.get("images") and speed.get("seconds", 0) > 0 else None


def past_extractions(backbone: str, size: int) -> tuple[int, float]:
    """Photos and seconds of the extractions this machine ran for ``backbone`` at ``size``: the whole
    map over real files (decode, resize, forward, write), not a forward pass on random pixels. Rows
    an entry inherited from others are not counted twice."""
    images, seconds = 0, 0.0
    for meta_path in layout.cache("features").glob(f"{backbone}-{size}-*/meta.json"):
        meta = atomic.read_json(meta_path) or {}
        run = meta.get("speed") or {}
        if (meta.get("backbone"), meta.get("input_size")) != (backbone, size) or run.get("inherited"):
            continue
        if run.get("images") and run.get("seconds", 0) > 0:
            images += int(run["images"])
            seconds += float(run["seconds"])
    return images, seconds


def _reusable_rows(net: _Network, wanted: dict[str, str | None]) -> tuple[dict[str, tuple[np.ndarray, int]],
                                                                          dict | None]:
    """``path -> (features, row)`` from intact entries of ``net`` holding the unchanged file,
    and the measured speed of the first donor that has one."""
    found: dict[str, tuple[np.ndarray, int]] = {}
    speed = None
    root = layout.cache("features")
    for meta_path in sorted(root.glob(f"{net.backbone}-{net.input_size}-{net.pooling}-*/meta.json")):
        meta = atomic.read_json(meta_path)
        if not meta or len(found) == len(wanted) or "stamps" not in meta or (
                meta.get("backbone"), meta.get("weights_id"), meta.get("input_size"), meta.get("pooling"),
                meta.get("engine"), meta.get("prep_version")) != (
                net.backbone, net.weights_id, net.input_size, net.pooling, net.engine, PREP_VERSION):
            continue
        rows = [(i, p) for i, (p, s) in enumerate(zip(meta["paths"], meta["stamps"]))
                if s is not None and p not in found and wanted.get(p) == s]
        if not rows:
            continue
        try:
            donor = read_entry(meta["key"], [])  # checksummed: a damaged entry lends nothing
        except (CacheCorrupt, KeyError):
            continue
        found.update((p, (donor.X, i)) for i, p in rows if donor.valid[i])
        speed = speed or measured_speed(meta)
    return found, speed


def _extract(ds, split, net, bb, reused, donor_speed, stamps, batch_size, key, progress, should_stop,
             source=None) -> FeatureSet:
    """Write entry ``key``: rows in ``reused`` are copied, the network runs on the others (on a Ray
    cluster's nodes when ``core.features.sharded`` says so; ``source``: the ``(weights, seed)`` to load)."""

    paths = ds.paths(split)
    labels = ds.labels(split)
    n = len(paths)
    todo = [i for i, p in enumerate(paths) if p not in reused]
    shards = sharded.plan(len(todo), batch_size) if todo and source else None
    forward = bb.frozen_forward(net.pooling) if todo and not shards else None
    if todo:
        shape = bb.feature_shape
        dim = int(np.prod(shape)) if net.pooling == "flatten" else int(shape[-1])
    else:
        dim = int(reused[paths[0]][0].shape[1])
    folder = _entry_dir(key)
    work = folder.with_name(f".{folder.name}.{time.time_ns()}.tmp")

    ensure_free_space(folder.parent, n * (dim * 4 + 9) + 2 * sum(map(len, paths)) + 65536,
                      f"the feature cache of {ds.name} ({split}, {n:,} images)")
    try:
        work.mkdir(parents=True)
        out = np.lib.format.open_memmap(work / "features.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        valid = np.zeros(n, bool)
        for i, p in enumerate(paths):
            if p in reused:
                features, row = reused[p]
                out[i], valid[i] = features[row], True
        start = time.perf_counter()
        extracted = 0
        batches = pixel_batches([paths[i] for i in todo], net.input_size, batch_size) if todo and not shards else ()
        if shards:
            def shard_done(rows: int) -> None:
                nonlocal extracted
                extracted += rows
                if progress:
                    progress(ExtractProgress(n - len(todo) + extracted, n,
                                             extracted / max(time.perf_counter() - start, 1e-9)))

            label = sharded.extract(shards, [paths[i] for i in todo], todo, out, valid, net, *source, batch_size,
                                    on_rows=shard_done, should_stop=should_stop)
        for pixels, ok in batches:
            if should_stop and should_stop():
                raise Cancelled("Feature extraction was cancelled.")
            feats = forward(pixels)
            rows = todo[extracted:extracted + len(feats)]
            out[rows] = feats
            valid[rows] = ok
            extracted += len(feats)
            if progress:
                progress(ExtractProgress(n - len(todo) + extracted, n,
                                         extracted / max(time.perf_counter() - start, 1e-9)))
        seconds = time.perf_counter() - start
        label = forward.label if forward is not None else label if shards else net.engine
        if todo and label != net.engine:
            # the parity guard refused the engine on the first batch: these rows are TensorFlow's
            net = _Network(net.backbone, net.weights_id, net.input_size, net.pooling, label)
            key = cache_key(ds.fingerprint, split, net.backbone, net.weights_id, net.input_size, net.pooling,
                            net.engine)
            folder = _entry_dir(key)
        out.flush()
        del out
        np.save(work / "labels.npy", labels)
        np.save(work / "valid.npy", valid)
        names = ("features.npy", "labels.npy", "valid.npy")
        meta = {
            "key": key, "dataset": ds.name, "fingerprint": ds.fingerprint, "backbone": net.backbone,
            "weights_id": net.weights_id, "input_size": net.input_size, "pooling": net.pooling,
            "engine": net.engine, "prep_version": PREP_VERSION, "shape": [n, dim], "paths": paths, "stamps": stamps,
            "classes": ds.classes, "invalid": int((~valid).sum()),
            "reused": n - len(todo),
            "speed": {"images": len(todo), "seconds": seconds, "inherited": False} if todo else
            donor_speed and {**donor_speed, "inherited": True},
            "sizes": {f: (work / f).stat().st_size for f in names},
            "checksums": {f: file_sha256(work / f) for f in names},
        }
        atomic.write_text(work / "meta.json", json.dumps(meta))
        if folder.exists():  # another process finished the same entry first: keep theirs
            shutil.rmtree(work, ignore_errors=True)
        else:
            try:
                work.rename(folder)
            except OSError:
                shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:  # disk full, folder removed or made read-only under us
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(f"Could not write the feature cache in {folder.parent}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    fs = read_entry(key, ds.classes)
    fs.from_cache = False
    return fs


def clear_cache() -> int:
    """Remove every feature cache entry; returns how many were removed."""
    root = layout.cache("features")
    entries = [p for p in root.iterdir() if p.is_dir()]
    for p in entries:
        shutil.rmtree(p, ignore_errors=True)
    return len(entries)
