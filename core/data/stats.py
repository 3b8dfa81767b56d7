"""Dataset inspection: counts, image sizes, imbalance, duplicates and leaks.

Sizes come from the scan's records (no re-decoding). Duplicates need one pass
over the pixels; its hashes are cached per dataset fingerprint, so the
inspection page opens instantly the second time.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from core import atomic, layout
from core.data.dataset import SPLITS, Dataset, Progress
from core.data.images import open_rgb

HASH_VERSION = 2  # 2: perceptual hashes from imagehash
NEAR_THRESHOLD = 6
IMBALANCE_WARN = 1.5
MIN_TRAIN_PER_CLASS = 10
_PHASH_SIDE = 32  # the grey image the DCT runs on
_PHASH_BITS_SIDE = 8  # 8x8 low frequencies: 64 bits
_CHUNK = 512
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PHASH = re.compile(r"[0-9a-f]{16}")

IMAGE_COLUMNS = ["path", "label", "split", "width", "height", "aspect", "megapixels", "mode", "format", "file_bytes"]
PAIR_COLUMNS = [
    "path_a", "path_b", "label_a", "label_b", "split_a", "split_b",
    "kind", "distance", "leak", "label_conflict",
]


# ---------------------------------------------------------------- tables

def counts_frame(ds: Dataset) -> pd.DataFrame:
    """One row per (class, split) with its image count, zeros included (tidy, for charts)."""
    counts = ds.counts()
    rows = [(c, s, counts[s][c]) for c in ds.classes for s in SPLITS]
    return pd.DataFrame(rows, columns=["class", "split", "count"])


def image_frame(ds: Dataset) -> pd.DataFrame:
    """One row per usable image with the size facts the scan already recorded."""
    df = pd.DataFrame(
        [(r.path, r.label, r.split, r.width, r.height, r.mode, r.format, r.file_bytes) for r in ds.records],
        columns=["path", "label", "split", "width", "height", "mode", "format", "file_bytes"],
    )
    df["aspect"] = df["width"] / df["height"]
    df["megapixels"] = df["width"] * df["height"] / 1e6
    return df[IMAGE_COLUMNS]


def imbalance(ds: Dataset) -> dict | None:
    """Largest / smallest class in train, with a warning when it matters; None if < 2 classes."""
    train = ds.counts()["train"]
    if len(train) < 2 or not any(train.values()):
        return None
    largest = max(train, key=lambda c: train[c])
    smallest = min(train, key=lambda c: train[c])
    ratio = train[largest] / train[smallest] if train[smallest] else float("inf")
    warnings = []
    if ratio > IMBALANCE_WARN:
        warnings.append(
            f"Classes are imbalanced: '{largest}' has {train[largest]} training images, "
            f"'{smallest}' only {train[smallest]} ({ratio:.1f}x). Accuracy will flatter the "
            "model; look at per-class recall, or add images / use class weights."
        )
    few = [c for c in ds.classes if train[c] < MIN_TRAIN_PER_CLASS]
    if few:
        warnings.append(
            f"Too few training images (< {MIN_TRAIN_PER_CLASS}) in: "
            + ", ".join(f"'{c}' ({train[c]})" for c in few) + "."
        )
    return {
        "ratio": ratio, "largest": largest, "largest_count": train[largest],
        "smallest": smallest, "smallest_count": train[smallest],
        "counts": dict(train), "warning": " ".join(warnings) or None,
    }


def unvalidated(ds: Dataset) -> str | None:
    """A warning naming the classes that have training photos but none to validate on:
    training works, but nothing measures how well they are recognised."""
    counts = ds.counts()
    missing = [c for c in ds.classes if counts["train"][c] and not counts["validation"][c]]
    if not missing or not ds.split("validation"):
        return None
    names = ", ".join(f"'{c}'" for c in missing)
    fix = ("add a few of their photos to validation/" if ds.split_source != "stratified" else
           "a class needs at least two photos to be split")
    them = "it" if len(missing) == 1 else "them"
    return (f"No validation photos for {names}: training uses {them}, but nothing measures how well "
            f"the model recognises {them} ({fix}).")


# ---------------------------------------------------------------- hashes

def phash(img: Image.Image) -> imagehash.ImageHash:
    """64-bit perceptual hash (``imagehash.phash``: low 8x8 DCT frequencies of a 32x32 grey
    image above their median); ``a - b`` is the Hamming distance, ``str()`` 16 hex digits.

    Survives resizing and JPEG re-encoding (low frequencies barely move) while
    different photos land about 32 bits apart.
    """
    return imagehash.phash(img, hash_size=_PHASH_BITS_SIDE, highfreq_factor=_PHASH_SIDE // _PHASH_BITS_SIDE)


def _hash_file(path: str) -> dict:
    """Content and perceptual hash of one file; a file that cannot be read or decoded gets a reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return {"sha256": None, "phash": None, "error": f"cannot read file: {exc.strerror or exc}"}
    out = {"sha256": hashlib.sha256(data).hexdigest(), "phash": None, "error": None}
    try:
        out["phash"] = str(phash(open_rgb(data, min_side=_PHASH_SIDE)))
    except Exception as exc:  # BadImage or a decoder bug: the stats go on without this image
        out["error"] = str(exc)
    return out


def _cache_path(ds: Dataset) -> Path:
    return layout.cache("hashes") / f"{ds.fingerprint}-v{HASH_VERSION}.json"


def _valid_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict) and set(entry) == {"sha256", "phash", "error"}
        and (entry["sha256"] is None or bool(_SHA256.fullmatch(str(entry["sha256"]))))
        and (entry["phash"] is None or bool(_PHASH.fullmatch(str(entry["phash"]))))
    )


def _load_cache(path: Path | None, fingerprint: str) -> dict[str, dict]:
    """The cached hashes, without any entry that a damaged file would make wrong."""
    data = atomic.read_json(path, {}) if path else {}
    hashes = data.get("hashes") if isinstance(data, dict) and data.get("fingerprint") == fingerprint else None
    if not isinstance(hashes, dict):
        return {}
    return {k: v for k, v in hashes.items() if _valid_entry(v)}


def file_hashes(ds: Dataset, progress: Progress | None = None) -> dict[str, dict]:
    """``{path: {"sha256", "phash" (16 hex digits), "error"}}`` for every record, cached.

    The cache is keyed by the dataset fingerprint and stores paths relative to
    the dataset root, so only images missing from it are hashed.
    """
    rel = {r.path: os.path.relpath(r.path, ds.root) for r in ds.records}
    cache = _cache_path(ds) if ds.fingerprint else None
    stored = _load_cache(cache, ds.fingerprint)
    todo = [p for p in rel if rel[p] not in stored]
    total = len(todo)
    if todo:
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            for i, (path, result) in enumerate(zip(todo, pool.map(_hash_file, todo)), 1):
                stored[rel[path]] = result
                if progress and (i % 25 == 0 or i == total):
                    progress(i, total)
        if cache:
            try:
                atomic.write_json(cache, {"fingerprint": ds.fingerprint, "version": HASH_VERSION, "hashes": stored})
                for old in cache.parent.glob(f"{glob.escape(ds.fingerprint)}-v*.json"):
                    if old != cache:
                        old.unlink(missing_ok=True)  # hashes of an older version: never read again
            except OSError:
                pass  # an unwritable cache only costs a recomputation next time
    elif progress:
        progress(len(rel), len(rel))
    return {path: stored[r] for path, r in rel.items()}


# ---------------------------------------------------------------- duplicates

def _near_pairs(codes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose Hamming distance is <= ``threshold``, in row chunks."""
    found_i, found_j, found_d = [], [], []
    for start in range(0, len(codes), _CHUNK):
        block = codes[start:start + _CHUNK]
        dist = np.bitwise_count(block[:, None] ^ codes[None, start:])  # only columns j >= start
        rows, cols = np.nonzero(dist <= threshold)
        keep = cols > rows
        found_i.append(rows[keep] + start)
        found_j.append(cols[keep] + start)
        found_d.append(dist[rows[keep], cols[keep]])
    if not found_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d).astype(np.int64)


def duplicates(ds: Dataset, progress: Progress | None = None, threshold: int = NEAR_THRESHOLD) -> pd.DataFrame:
    """Pairs of exact (same bytes) and near (perceptual hash within ``threshold`` bits) duplicates.

    ``leak`` marks a pair split across train and validation (the validation
    score is inflated); ``label_conflict`` a pair filed under different classes.
    """
    hashes = file_hashes(ds, progress)
    records = ds.records
    pairs: dict[tuple[int, int], tuple[str, int]] = {}

    by_sha: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        sha = hashes[r.path]["sha256"]
        if sha:
            by_sha.setdefault(sha, []).append(i)
    for group in by_sha.values():
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                pairs[(group[a], group[b])] = ("exact", 0)

    index = [i for i, r in enumerate(records) if hashes[r.path]["phash"]]
    codes = np.array([int(hashes[records[i].path]["phash"], 16) for i in index], dtype=np.uint64)
    for a, b, d in zip(*_near_pairs(codes, threshold)):
        pairs.setdefault((index[a], index[b]), ("near", int(d)))

    rows = []
    for (i, j), (kind, distance) in pairs.items():
        a, b = records[i], records[j]
        rows.append((
            a.path, b.path, a.label, b.label, a.split, b.split, kind, distance,
            {a.split, b.split} == {"train", "validation"}, a.label != b.label,
        ))
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS).astype({"distance": "int64", "leak": bool, "label_conflict": bool})
    return df.sort_values(["kind", "distance", "path_a", "path_b"], ignore_index=True)


def leak_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The leaking pairs of ``duplicates()``, oriented as train image vs validation image."""
    leaks = pairs[pairs["leak"]]
    a_is_train = leaks["split_a"] == "train"
    pick = lambda train_col, val_col: leaks[train_col].where(a_is_train, leaks[val_col])  # noqa: E731
    return pd.DataFrame({
        "train_path": pick("path_a", "path_b"),
        "validation_path": pick("path_b", "path_a"),
        "train_label": pick("label_a", "label_b"),
        "validation_label": pick("label_b", "label_a"),
        "kind": leaks["kind"],
        "distance": leaks["distance"],
    }).reset_index(drop=True)


# ---------------------------------------------------------------- thumbnails

def thumbnail(path: str | os.PathLike, size: int = 128) -> Image.Image:
    """An RGB thumbnail at most ``size`` px a side; a crossed grey tile for a file that cannot be shown."""
    try:
        img = open_rgb(path, min_side=size)
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        return img
    except Exception:  # BadImage or a decoder bug: the grid keeps its tile
        tile = Image.new("RGB", (size, size), (200, 200, 200))
        draw = ImageDraw.Draw(tile)
        draw.line((0, 0, size - 1, size - 1), fill=(190, 40, 40), width=max(1, size // 32))
        draw.line((0, size - 1, size - 1, 0), fill=(190, 40, 40), width=max(1, size // 32))
        return tile
