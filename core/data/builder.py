"""Build a dataset by hand: create it by name, add / rename / delete classes, add,
move and delete photos.

A built dataset is an ordinary folder of class subfolders under the data
directory (``datasets/<name>/<class>/<photo>``), so every other page and
``core.data.dataset.scan_folder`` use it as is. Every photo is validated with
``core.data.images.probe`` (the one decode path) before it is written; a bad file is
rejected with the reason and the rest go on. Photos are written to a hidden
temporary file and then linked or renamed into place, so a reader never sees
half a photo; every edit changes the dataset's fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence, Union

from core import access, layout
from core.data.dataset import SPLIT_ALIASES, Dataset, fingerprint_files, scan_folder
from core.errors import BadImage, DatasetError, LowDiskSpace
from core.data.uploads import ensure_free_space
from core.data.images import IMAGE_EXTENSIONS, MAX_FILE_BYTES, is_image_name, probe

MAX_NAME = 64
# What a decoded format is saved as when the upload's own extension is not an image one.
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp",
                     "WEBP": ".webp", "TIFF": ".tif"}
_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)

PhotoSource = Union[bytes, str, os.PathLike, BinaryIO]


@dataclass(frozen=True)
class Rejected:
    """A file that was not added, and why (shown to the user)."""

    name: str
    reason: str


@dataclass
class AddReport:
    """What an add did: the files written, and the ones rejected with their reason."""

    added: list[Path] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def summary(self) -> str:
        text = f"Added {len(self.added)} photo{'s' if len(self.added) != 1 else ''}"
        if self.rejected:
            text += f"; rejected {len(self.rejected)}: " + "; ".join(f"{r.name} ({r.reason})" for r in self.rejected[:5])
            if len(self.rejected) > 5:
                text += f"; and {len(self.rejected) - 5} more"
        return text + "."


# ---------------------------------------------------------------- names

def dataset_folder_name(name: str) -> str:
    """The folder name for a dataset called ``name`` (letters, digits, ``._-``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._-")
    if not clean:
        raise DatasetError("Give the dataset a name with at least one letter or digit.")
    return clean[:MAX_NAME]


def check_class_name(name: str) -> str:
    """A valid class (folder) name, stripped; ``DatasetError`` with the reason otherwise."""
    clean = (name or "").strip()
    if not clean:
        raise DatasetError("A class needs a name.")
    if len(clean) > MAX_NAME:
        raise DatasetError(f"Class names are limited to {MAX_NAME} characters.")
    if any(ch in clean for ch in "/\\\0") or clean in (".", ".."):
        raise DatasetError(f"'{clean}' cannot be a class name: no slashes, and not '.' or '..'.")
    if clean.startswith(".") or clean.startswith("__MACOSX"):
        raise DatasetError(f"'{clean}' cannot be a class name: names starting with '.' are hidden files.")
    if clean.lower() in SPLIT_ALIASES:
        raise DatasetError(
            f"'{clean}' cannot be a class name: it is the name of a split folder "
            f"({', '.join(sorted(SPLIT_ALIASES))}), which would confuse the train/validation layout."
        )
    return clean


def _photo_name(name: str, fmt: str) -> str:
    """A safe file name for an uploaded photo, with an image extension matching its format."""
    base = Path(str(name).replace("\\", "/")).name
    stem, ext = os.path.splitext(base)
    stem = _UNSAFE.sub("_", stem).strip(" ._") or "photo"
    stem = stem[:100]
    ext = ext.lower()
    if ext not in IMAGE_EXTENSIONS:
        ext = FORMAT_EXTENSIONS.get(fmt.upper(), "")
    return stem + ext


# ---------------------------------------------------------------- folders

def datasets_root() -> Path:
    return layout.workspace_dir("datasets")


def new_inbox(dataset: str) -> Path:
    """A fresh folder (not created yet) for a batch of unlabelled photos meant for ``dataset``."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    return layout.workspace_dir("inbox") / f"{dataset_folder_name(dataset)}-{stamp}"


def _is_split_layout(folder: Path) -> bool:
    return any(p.is_dir() and p.name.lower() in SPLIT_ALIASES for p in folder.iterdir())


def list_datasets() -> list[str]:
    """Datasets under the data directory that can be edited here (class folders, no split folders)."""
    out = []
    for p in sorted(datasets_root().iterdir()):
        if p.is_dir() and not p.name.startswith(".") and not _is_split_layout(p):
            out.append(p.name)
    return out


def dataset_path(name: str) -> Path:
    """The folder of an existing editable dataset; ``DatasetError`` if there is none."""
    folder = datasets_root() / dataset_folder_name(name)
    if not folder.is_dir():
        raise DatasetError(f"There is no dataset called '{name}'. Create it first.")
    if _is_split_layout(folder):
        raise DatasetError(
            f"Dataset '{name}' is split into train/validation folders; only plain class-folder datasets "
            "are edited here."
        )
    return folder


def create_dataset(name: str, classes: Sequence[str] = ()) -> Path:
    """Create an empty dataset (optionally with classes); refuse a name already taken."""
    folder = datasets_root() / dataset_folder_name(name)
    checked = [check_class_name(c) for c in classes]
    if len({c.lower() for c in checked}) != len(checked):
        raise DatasetError("Two classes have the same name.")
    try:
        folder.mkdir()
    except FileExistsError:
        raise DatasetError(f"A dataset called '{folder.name}' already exists; pick another name or open it.") from None
    except OSError as exc:
        raise DatasetError(f"Could not create the dataset folder {folder}: {exc.strerror or exc}") from exc
    for c in checked:
        (folder / c).mkdir()
    return folder


def delete_dataset(name: str) -> None:
    """Remove a dataset and all its photos (moved aside first, so it vanishes at once)."""
    folder = dataset_path(name)
    _remove_tree(folder)


def _remove_tree(folder: Path) -> None:
    aside = folder.with_name(f".{folder.name}.deleted-{time.time_ns()}")
    try:
        os.replace(folder, aside)
    except OSError as exc:
        raise DatasetError(f"Could not delete {folder.name}: {exc.strerror or exc}") from exc
    shutil.rmtree(aside, ignore_errors=True)


def classes(name: str) -> list[str]:
    """The dataset's classes (every visible subfolder, empty ones included), sorted."""
    folder = dataset_path(name)
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))


def photos(name: str) -> dict[str, list[Path]]:
    """``{class: [photo paths]}``: the visible image files directly in each class folder."""
    folder = dataset_path(name)
    return {
        c: sorted(p for p in (folder / c).iterdir() if p.is_file() and not p.name.startswith(".") and is_image_name(p))
        for c in classes(name)
    }


def fingerprint(name: str) -> str:
    """Changes with every edit: the files (as ``core.data.dataset.fingerprint_files`` sees them) and the class folders."""
    folder = dataset_path(name)
    files = [f for fs in photos(name).values() for f in fs]
    h = hashlib.sha256(fingerprint_files(files, folder).encode())
    for c in classes(name):
        h.update(f"class\0{c}\n".encode())
    return h.hexdigest()[:20]


def scan(name: str, **kwargs) -> Dataset:
    """The dataset as every other page sees it (``core.data.dataset.scan_folder``)."""
    folder = dataset_path(name)
    return scan_folder(folder, name=folder.name, **kwargs)


def _class_dir(name: str, cls: str) -> Path:
    folder = dataset_path(name)
    target = folder / check_class_name(cls)
    if not target.is_dir():
        raise DatasetError(f"Dataset '{folder.name}' has no class '{cls}'.")
    return target


def add_class(name: str, cls: str) -> Path:
    folder = dataset_path(name)
    clean = check_class_name(cls)
    if clean.lower() in {c.lower() for c in classes(name)}:
        raise DatasetError(f"Class '{clean}' already exists.")
    target = folder / clean
    try:
        target.mkdir()
    except OSError as exc:
        raise DatasetError(f"Could not create class '{clean}': {exc.strerror or exc}") from exc
    return target


def rename_class(name: str, old: str, new: str) -> Path:
    src = _class_dir(name, old)
    clean = check_class_name(new)
    if clean == src.name:
        return src
    others = {c.lower() for c in classes(name) if c != src.name}
    if clean.lower() in others:
        raise DatasetError(f"Class '{clean}' already exists; move the photos instead of renaming.")
    dst = src.with_name(clean)
    try:
        os.rename(src, dst)  # atomic; the case-only rename works too
    except OSError as exc:
        raise DatasetError(f"Could not rename class '{old}': {exc.strerror or exc}") from exc
    return dst


def delete_class(name: str, cls: str) -> int:
    """Delete a class and its photos; returns how many photos went with it."""
    target = _class_dir(name, cls)
    n = sum(1 for p in target.iterdir() if p.is_file())
    _remove_tree(target)
    return n


# ---------------------------------------------------------------- photos

def _read_source(source: PhotoSource) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        size = os.path.getsize(source)
        if size > MAX_FILE_BYTES:
            raise BadImage(f"file too large ({size / 1e6:.1f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)")
        with open(source, "rb") as fh:
            return fh.read()
    if hasattr(source, "seek"):
        try:
            source.seek(0)
        except (OSError, ValueError):
            pass
    data = source.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise BadImage(f"file too large (> {MAX_FILE_BYTES / 1e6:.0f} MB)")
    return data


def _unique(folder: Path, filename: str) -> Path:
    stem, ext = os.path.splitext(filename)
    candidate = folder / filename
    i = 2
    while candidate.exists():
        candidate = folder / f"{stem}_{i}{ext}"
        i += 1
    return candidate


def _place(tmp: Path, folder: Path, filename: str) -> Path:
    """Put the finished ``tmp`` into ``folder`` under a free name, never replacing a photo."""
    for _ in range(1000):
        target = _unique(folder, filename)
        try:
            os.link(tmp, target)  # atomic and exclusive: fails if a photo took the name meanwhile
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system: rename (atomic) into the free name
            os.replace(tmp, target)
            return target
        tmp.unlink(missing_ok=True)
        return target
    raise DatasetError(f"Could not find a free file name for {filename} in {folder}.")


def write_photo(folder: Path, filename: str, data: bytes) -> Path:
    """Validate ``data`` as an image and write it atomically into ``folder``; ``BadImage`` if it is not one."""
    info = probe(data)
    name = _photo_name(filename, info.format)
    if not is_image_name(name):
        raise BadImage(
            f"{info.format or 'this'} images are not accepted; use one of "
            + ", ".join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))
        )
    ensure_free_space(folder, len(data), name)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".upload.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return _place(tmp, folder, name)
    finally:
        tmp.unlink(missing_ok=True)


def save_photos(folder: Path, files: Iterable[tuple[str, PhotoSource]]) -> AddReport:
    """Validate and write each ``(file name, bytes | path | file object)`` into ``folder``."""
    report = AddReport()
    for filename, source in files:
        label = Path(str(filename)).name or "photo"
        try:
            data = _read_source(source)
            report.added.append(write_photo(folder, label, data))
        except (BadImage, LowDiskSpace) as exc:
            report.rejected.append(Rejected(label, str(exc)))
        except OSError as exc:
            report.rejected.append(Rejected(label, f"cannot read or write the file: {exc.strerror or exc}"))
    return report


def add_photos(name: str, cls: str, files: Iterable[tuple[str, PhotoSource]]) -> AddReport:
    """Add photos to a class of a dataset: each validated, bad ones rejected with the reason."""
    return save_photos(_class_dir(name, cls), files)


def add_labelled(name: str, items: Iterable[tuple[PhotoSource, str]]) -> AddReport:
    """Copy ``(photo path or bytes, class)`` pairs into their classes, in one action."""
    report = AddReport()
    groups: dict[str, list[tuple[str, PhotoSource]]] = {}
    for source, cls in items:
        label = Path(os.fspath(source)).name if isinstance(source, (str, os.PathLike)) else "photo"
        groups.setdefault(cls, []).append((label, source))
    for cls, files in groups.items():
        try:
            part = add_photos(name, cls, files)
        except DatasetError as exc:
            report.rejected += [Rejected(label, str(exc)) for label, _ in files]
            continue
        report.added += part.added
        report.rejected += part.rejected
    return report


def _inside(folder: Path, path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_absolute():
        p = folder / p
    resolved = p.resolve()
    if not resolved.is_relative_to(folder.resolve()) or resolved == folder.resolve():
        raise DatasetError(f"{path} is not a photo of this dataset.")
    if not resolved.is_file():
        raise DatasetError(f"Photo not found: {p.name} (was it moved or deleted?).")
    return resolved


def move_photos(name: str, paths: Iterable[str | os.PathLike], cls: str) -> list[Path]:
    """Move photos of this dataset into class ``cls`` (a clashing name gets a suffix)."""
    folder = dataset_path(name)
    target = _class_dir(name, cls)
    moved = []
    for path in paths:
        src = _inside(folder, path)
        if src.parent == target.resolve():
            moved.append(src)
            continue
        try:
            moved.append(_move_file(src, target))
        except OSError as exc:
            raise DatasetError(f"Could not move {src.name}: {exc.strerror or exc}") from exc
    return moved


def _move_file(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(1000):
        dst = _unique(folder, src.name)
        try:
            os.link(src, dst)
        except FileExistsError:
            continue
        except OSError:
            os.replace(src, dst)
            return dst
        src.unlink()
        return dst
    raise DatasetError(f"Could not find a free file name for {src.name} in {folder}.")


def delete_photos(name: str, paths: Iterable[str | os.PathLike]) -> int:
    folder = dataset_path(name)
    n = 0
    for path in paths:
        photo = _inside(folder, path)
        try:
            photo.unlink()
        except OSError as exc:
            raise DatasetError(f"Could not delete {photo.name}: {exc.strerror or exc}") from exc
        n += 1
    return n


# ---------------------------------------------------------------- any dataset

def relabel(ds: Dataset, path: str | os.PathLike, new_label: str) -> Path:
    """Move one photo of a scanned dataset (any layout) into the folder of ``new_label``.

    The photo stays in its split: ``train/cats/x.jpg`` becomes ``train/dogs/x.jpg``.
    Rescan the dataset afterwards; its fingerprint changes. The dataset's names come
    from a scan (perhaps a cached one): the photo and its destination are checked to lie
    inside the dataset, the class to be a plain folder name, the caller to own the folder.
    """
    root = Path(ds.root).resolve()
    access.check_may_change(root, f"Dataset '{ds.name}'")
    record = next((r for r in ds.records if Path(r.path).resolve() == Path(path).resolve()), None)
    if record is None:
        raise DatasetError(f"{Path(path).name} is not a photo of dataset '{ds.name}'.")
    if new_label not in ds.classes:
        raise DatasetError(f"'{new_label}' is not a class of dataset '{ds.name}'.")
    if new_label == record.label:
        return Path(record.path)
    if any(ch in new_label for ch in "/\\\0") or new_label in ("", ".", ".."):
        raise DatasetError(f"'{new_label}' is not a folder name, so no photo can be moved there.")
    src = _inside(root, record.path)
    parts = src.relative_to(root).parts
    try:
        i = next(i for i, part in enumerate(parts[:-1]) if part == record.label)
    except StopIteration:
        raise DatasetError(f"Cannot find the class folder of {src.name}.") from None
    dst_folder = root.joinpath(*parts[:i], new_label, *parts[i + 1:-1])
    if not dst_folder.resolve().is_relative_to(root):
        raise DatasetError(f"'{new_label}' leads outside dataset '{ds.name}'.")
    existing = dst_folder
    while not existing.exists() and existing != root:
        existing = existing.parent
    for folder in (src.parent, existing):
        if not writable(folder):
            raise DatasetError(
                f"The folder {folder} is read-only, so {src.name} cannot be relabelled there. "
                "Copy the dataset to a writable folder (or build one on the Label page) to fix labels."
            )
    try:
        return _move_file(src, dst_folder)
    except OSError as exc:
        raise DatasetError(f"Could not move {src.name} to '{new_label}': {exc.strerror or exc}") from exc


def writable(folder: str | os.PathLike) -> bool:
    """Whether files may be added to and removed from ``folder``: the file system allows it and the
    folder is not marked read-only (no owner write bit), which is respected even when running as root."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & 0o200) and os.access(folder, os.W_OK | os.X_OK)


def camera_name() -> str:
    """A file name for a camera snapshot."""
    return time.strftime("camera_%Y%m%d-%H%M%S") + ".jpg"


def as_items(uploads: Iterable[Any]) -> list[tuple[str, PhotoSource]]:
    """``(name, file object)`` pairs from uploaded-file objects (anything with ``.name`` and ``.read``)."""
    return [(getattr(u, "name", "photo"), u) for u in uploads]
