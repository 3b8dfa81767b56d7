"""Datasets: sources, scanning, splits, fingerprints and tf.data pipelines.

A ``Dataset`` is a plain list of validated image records; bad files are kept
aside with the reason, so a scan, a pipeline or a run never trips over them.
"""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from core import atomic, layout
from core.errors import BadImage, DatasetError
from core.data.images import is_image_name, probe

SPLITS = ("train", "validation")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "val": "validation", "valid": "validation",
    "test": "validation",
}
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SEED = 1337
SCAN_VERSION = 1

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` during long work."""


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: absolute path, class label, split and what its header said."""

    path: str
    label: str
    split: str
    width: int
    height: int
    mode: str
    format: str
    file_bytes: int


@dataclass(frozen=True)
class BadFile:
    """A file that was skipped, and why (shown to the user, never fatal)."""

    path: str
    reason: str


@dataclass
class Dataset:
    """A scanned dataset: classes (sorted), usable records, bad files, fingerprint."""

    name: str
    root: str
    classes: list[str]
    records: list[ImageRecord]
    bad_files: list[BadFile] = field(default_factory=list)
    fingerprint: str = ""
    split_source: str = "folders"  # "folders" (given) or "stratified" (made with a seed)

    def split(self, split: str) -> list[ImageRecord]:
        return [r for r in self.records if r.split == split]

    def paths(self, split: str) -> list[str]:
        return [r.path for r in self.split(split)]

    def labels(self, split: str) -> np.ndarray:
        """Integer class indices of ``split`` in record order."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.label] for r in self.split(split)], dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` for every split and class (zeros included)."""
        out = {s: {c: 0 for c in self.classes} for s in SPLITS}
        for r in self.records:
            out[r.split][r.label] += 1
        return out

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        return {
            "name": self.name, "root": self.root, "classes": self.classes,
            "records": [asdict(r) for r in self.records],
            "bad_files": [asdict(b) for b in self.bad_files],
            "fingerprint": self.fingerprint, "split_source": self.split_source,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Dataset":
        return cls(
            name=data["name"], root=data["root"], classes=list(data["classes"]),
            records=[ImageRecord(**r) for r in data["records"]],
            bad_files=[BadFile(**b) for b in data["bad_files"]],
            fingerprint=data["fingerprint"], split_source=data.get("split_source", "folders"),
        )


# ---------------------------------------------------------------- discovery

def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "__MACOSX"))


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """``{class: [files]}`` from the class subfolders of ``folder`` (recursively inside each)."""
    return {sub.name: sorted(map(Path, _files_under(sub)))
            for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))}


def _files_under(folder: str | os.PathLike) -> list[str]:
    """Regular files under ``folder``, hidden names and their folders left out, links neither
    listed nor followed. ``os.scandir`` hands each entry's type over with its name: every fold of
    a repeated split rescans its dataset, and a ``pathlib`` walk stat-ed each file twice."""
    found: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                found += _files_under(entry.path)
            elif entry.is_file(follow_symlinks=False) and not entry.name.startswith("__MACOSX"):
                found.append(entry.path)
    return found


def _layout(root: Path) -> tuple[dict[str, dict[str, list[Path]]] | None, dict[str, list[Path]]]:
    """Find split folders (train/validation...) or plain class folders under ``root``.

    Several folders of one split (say ``val/`` and ``test/``) are merged, never dropped.
    """
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and _visible(p)}
    split_dirs: dict[str, list[Path]] = {}
    for n, p in sorted(subdirs.items()):
        if n in SPLIT_ALIASES:
            split_dirs.setdefault(SPLIT_ALIASES[n], []).append(p)
    if "train" in split_dirs:
        splits: dict[str, dict[str, list[Path]]] = {}
        for split, folders in split_dirs.items():
            merged: dict[str, list[Path]] = {}
            for folder in folders:
                for label, files in _class_files(folder).items():
                    merged.setdefault(label, []).extend(files)
            splits[split] = merged
        return splits, {}
    if len(subdirs) == 1:  # a single wrapper folder, as zips often have
        only = next(iter(subdirs.values()))
        inner = [p for p in only.iterdir() if p.is_dir() and _visible(p)]
        loose = [p for p in root.iterdir() if p.is_file() and is_image_name(p)]
        if inner and not loose:
            return _layout(only)
    return None, _class_files(root)


def fingerprint_files(files: Iterable[Path], root: Path) -> str:
    """Hash of the root, relative path, size and mtime of every file: changes on any
    add, remove or edit, and when the folder moves (cached absolute paths would go stale)."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for f in sorted(files):
        st = os.stat(f)
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def stratified_split(
    items: Sequence[tuple[Path, str]], val_fraction: float, seed: int
) -> dict[Path, str]:
    """Assign each (file, label) to train or validation, per class, reproducibly.

    Each class with two or more images keeps at least one image in each split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    by_class: dict[str, list[Path]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    out: dict[Path, str] = {}
    for label in sorted(by_class):
        files = sorted(by_class[label])
        random.Random(f"{seed}:{label}").shuffle(files)
        n_val = int(round(len(files) * val_fraction))
        if len(files) >= 2:
            n_val = min(max(n_val, 1), len(files) - 1)
        else:
            n_val = 0
        for i, f in enumerate(files):
            out[f] = "validation" if i < n_val else "train"
    return out


# ---------------------------------------------------------------- scanning

def _check(path: Path) -> ImageRecord | BadFile:
    if not is_image_name(path):
        return BadFile(str(path), f"not an image file type ({path.suffix or 'no extension'})")
    try:
        info = probe(path)
    except BadImage as exc:
        return BadFile(str(path), str(exc))
    except Exception as exc:  # a decoder bug must not stop the scan
        return BadFile(str(path), f"cannot decode: {type(exc).__name__}: {exc}")
    return ImageRecord(str(path), "", "", info.width, info.height, info.mode, info.format, info.file_bytes)


def _scan_cache_path(fingerprint: str, val_fraction: float, seed: int) -> Path:
    return layout.cache("scans") / f"{fingerprint}-{val_fraction:g}-{seed}-v{SCAN_VERSION}.json"


def _cached_scan(cached: object, fingerprint: str, root: Path) -> Dataset | None:
    """A cached scan of ``root``, or None when it is unusable: damaged, of other files, or
    naming any path outside ``root`` (a cache is data: it must not lead a scan elsewhere)."""
    if not isinstance(cached, dict) or cached.get("fingerprint") != fingerprint:
        return None
    try:
        ds = Dataset.from_json(cached)
    except (KeyError, TypeError, ValueError):
        return None
    here = os.path.normpath(os.path.abspath(root))
    inside = [os.path.normpath(os.path.abspath(p)) for p in (*(r.path for r in ds.records), *(b.path for b in ds.bad_files))]
    if os.path.normpath(os.path.abspath(ds.root)) != here or not all(p.startswith(here + os.sep) for p in inside):
        return None
    return ds


def scan_folder(
    root: str | os.PathLike,
    *,
    name: str | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Scan a folder of class subfolders (optionally split into train/validation).

    Every file is decoded once; bad ones are listed with the reason. The result
    is cached under the data directory by fingerprint, so a rescan of an
    unchanged folder is instant.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"Folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"Not a folder: {root}")
    try:
        splits, flat = _layout(root)
    except PermissionError as exc:
        raise DatasetError(f"Cannot read folder {root}: permission denied") from exc

    labelled: list[tuple[Path, str, str | None]] = []
    if splits is not None:
        for split, classes in splits.items():
            labelled += [(f, label, split) for label, files in classes.items() for f in files]
    else:
        labelled += [(f, label, None) for label, files in flat.items() for f in files]
    classes = sorted({label for _, label, _ in labelled})
    if not labelled:
        raise DatasetError(
            f"No images found in {root}. Expected one subfolder per class "
            "(e.g. cats/, dogs/), optionally inside train/ and validation/ folders."
        )
    fingerprint = fingerprint_files([f for f, _, _ in labelled], root)
    cache = _scan_cache_path(fingerprint, val_fraction, seed)
    if use_cache and cache.exists():
        ds = _cached_scan(atomic.read_json(cache), fingerprint, root)
        if ds is not None:
            if progress:
                progress(len(labelled), len(labelled))
            ds.name = name or ds.name
            return ds

    checked: list[ImageRecord | BadFile] = []
    total = len(labelled)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for i, result in enumerate(pool.map(_check, [f for f, _, _ in labelled]), 1):
            checked.append(result)
            if progress and (i % 25 == 0 or i == total):
                progress(i, total)

    good: list[tuple[ImageRecord, str, str | None]] = []
    bad: list[BadFile] = []
    for (f, label, split), result in zip(labelled, checked):
        if isinstance(result, BadFile):
            bad.append(result)
        else:
            good.append((result, label, split))

    split_source = "folders"
    if splits is None or "validation" not in splits:
        split_source = "stratified"
        assignment = stratified_split([(Path(r.path), label) for r, label, _ in good], val_fraction, seed)
        split_of = lambda r, s: assignment[Path(r.path)]  # noqa: E731
    else:
        split_of = lambda r, s: s  # noqa: E731
    records = [
        ImageRecord(r.path, label, split_of(r, split), r.width, r.height, r.mode, r.format, r.file_bytes)
        for r, label, split in good
    ]
    ds = Dataset(
        name=name or root.name, root=str(root), classes=classes, records=records,
        bad_files=bad, fingerprint=fingerprint, split_source=split_source,
    )
    if use_cache:
        try:
            atomic.write_json(cache, ds.to_json())
        except OSError:
            pass  # an unwritable cache only costs a rescan next time
    return ds


def subset(ds: Dataset, per_class: int, seed: int, splits: Sequence[str] = SPLITS) -> Dataset:
    """A seeded sample of at most ``per_class`` images per class and split.

    Its fingerprint differs from the full dataset's, so caches never mix them.
    """
    rng = np.random.default_rng(seed)
    keep: list[ImageRecord] = []
    for split in splits:
        for label in ds.classes:
            recs = [r for r in ds.records if r.split == split and r.label == label]
            idx = np.sort(rng.permutation(len(recs))[:per_class])
            keep += [recs[i] for i in idx]
    return Dataset(ds.name, ds.root, ds.classes, keep, ds.bad_files,
                   f"{ds.fingerprint}-n{per_class}-s{seed}-{'+'.join(splits)}", ds.split_source)


def check_trainable(ds: Dataset) -> None:
    """Raise ``DatasetError`` with the fix when ``ds`` cannot train a classifier."""
    if not ds.records:
        raise DatasetError(f"Dataset '{ds.name}' has no usable images ({len(ds.bad_files)} bad files).")
    counts = ds.counts()
    present = [c for c in ds.classes if counts["train"][c] > 0]
    if len(present) < 2:
        raise DatasetError(
            f"Dataset '{ds.name}' needs at least two classes with training images; "
            f"found {len(present)} ({', '.join(present) or 'none'})."
        )
    if not ds.split("validation"):
        raise DatasetError(f"Dataset '{ds.name}' has no validation images; add some or use a split fraction.")
