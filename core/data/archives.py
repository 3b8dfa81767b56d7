"""Safe extraction of uploaded zip files.

An upload is untrusted: every member name is checked before anything is
written, sizes are checked both as declared and as actually inflated, and the
whole extraction lands in a temporary folder that only replaces the target
once it is complete, so a rejected zip leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

from core import layout
from core.errors import DatasetError, UnsafeArchive
from core.data.uploads import ensure_free_space

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 2 * 1024**3
MAX_RATIO = 200
# Below this size a high compression ratio cannot hurt (a small text file of
# repeated lines compresses 1000:1); the total-size limit still applies.
RATIO_FLOOR_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
EOCD_SEARCH = 22 + 65535  # the end record and the longest comment it may carry
NESTED_ARCHIVES = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"})
_DRIVE = re.compile(r"^[A-Za-z]:")

ZipSource = Union[str, os.PathLike, bytes, BinaryIO]


@dataclass(frozen=True)
class Skipped:
    """A member that was deliberately not extracted, and why."""

    name: str
    reason: str


@dataclass
class ExtractReport:
    """Where a zip went and what was (not) extracted from it."""

    folder: Path
    files: int = 0
    total_bytes: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def _declared_members(fh: BinaryIO) -> int | None:
    """The member count the zip's end-of-central-directory record declares, read before
    ``zipfile`` builds an object per member (300,000 hidden junk members cost memory and
    time even when skipped)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - EOCD_SEARCH))
    tail = fh.read()
    fh.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 12:
        return None  # not a zip: zipfile says so with its own message
    return int.from_bytes(tail[at + 10:at + 12], "little")  # 0xFFFF: that many or more (zip64)


def _open_zip(source: ZipSource, max_files: int = MAX_FILES) -> zipfile.ZipFile:
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif not isinstance(source, (str, os.PathLike)):
        seekable = getattr(source, "seekable", None)
        if not (seekable and seekable()):
            source = io.BytesIO(source.read())
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                declared = _declared_members(fh)
        else:
            declared = _declared_members(source)
        if declared is not None and declared > max_files:
            at_least = "at least " if declared == 0xFFFF else ""
            raise UnsafeArchive(f"Rejected zip: more than {max_files:,} files "
                                f"(it holds {at_least}{declared:,} entries; skipped ones count too).")
        return zipfile.ZipFile(source)
    except FileNotFoundError as exc:
        raise DatasetError(f"Zip file not found: {source}") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise UnsafeArchive(f"Not a valid zip file (bad zip): {exc}") from exc
    except OSError as exc:
        raise UnsafeArchive(f"Cannot read the zip file (bad zip): {exc}") from exc


def _member_path(name: str) -> PurePosixPath:
    """The member's relative path; raise ``UnsafeArchive`` if it could leave the target."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise UnsafeArchive(f"Rejected zip: member '{name}' has an absolute path.")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"Rejected zip: member '{name}' points outside the folder ('..').")
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise UnsafeArchive(f"Rejected zip: member '{name}' has a name too long for the file system.")
    return PurePosixPath(*parts)


def _skip_reason(rel: PurePosixPath) -> str | None:
    if any(p.startswith(".") or p == "__MACOSX" for p in rel.parts):
        return "hidden file or macOS metadata"
    if rel.suffix.lower() in NESTED_ARCHIVES:
        return "nested archive (not extracted; unpack it and upload its contents)"
    return None


def _plan(
    zf: zipfile.ZipFile, max_files: int, max_total_bytes: int, max_ratio: float
) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], list[Skipped]]:
    """Check every member from the central directory before writing a byte."""
    todo: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    skipped: list[Skipped] = []
    seen: set[PurePosixPath] = set()
    declared = 0
    members = zf.infolist()
    if len(members) > max_files:  # every entry counts: skipped junk and folders cost work too
        raise UnsafeArchive(f"Rejected zip: more than {max_files:,} files "
                            f"(it holds {len(members):,} entries; skipped ones count too).")
    for info in members:
        rel = _member_path(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchive(f"Rejected zip: member '{info.filename}' is a symbolic link.")
        if info.is_dir() or not rel.parts:
            continue
        reason = _skip_reason(rel)
        if reason is None and rel in seen:
            reason = "duplicate name in the zip (first copy kept)"
        if reason:
            skipped.append(Skipped(info.filename, reason))
            continue
        if info.flag_bits & 0x1:
            raise UnsafeArchive(
                f"Rejected zip: member '{info.filename}' is encrypted; password-protected zips are not supported."
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise UnsafeArchive(
                f"Rejected zip: member '{info.filename}' expands {ratio:.0f}x "
                f"(limit {max_ratio:g}x); this looks like a zip bomb."
            )
        declared += info.file_size
        seen.add(rel)
        todo.append((info, rel))
        if declared > max_total_bytes:
            raise UnsafeArchive(
                f"Rejected zip: contents exceed {max_total_bytes / 1024**3:.1f} GiB uncompressed "
                f"(at member '{info.filename}')."
            )
    return todo, skipped


def _copy_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, max_ratio: float
) -> int:
    """Stream one member to ``target``, counting real bytes; return how many were written."""
    written = 0
    with zf.open(info) as src, open(target, "xb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise UnsafeArchive(f"Rejected zip: member '{info.filename}' is larger than its header says.")
            if written > budget:
                raise UnsafeArchive(f"Rejected zip: contents exceed the size limit (at member '{info.filename}').")
            if written > RATIO_FLOOR_BYTES and written > max_ratio * max(info.compress_size, 1):
                raise UnsafeArchive(
                    f"Rejected zip: member '{info.filename}' expands over {max_ratio:g}x; this looks like a zip bomb."
                )
            dst.write(chunk)
    return written


def _install(tmp: Path, dest: Path) -> None:
    """Move the finished folder into place, replacing an older ``dest`` only at the end."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / "x")
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old is not None:
            os.replace(old / "x", dest)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def extract_zip(
    source: ZipSource,
    dest: str | os.PathLike,
    *,
    max_files: int = MAX_FILES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> ExtractReport:
    """Extract the regular files of a zip into ``dest`` (replacing it), all or nothing.

    Raises ``UnsafeArchive`` naming the offending member for traversal, absolute
    paths, links, encryption, zip bombs, too many files or a corrupt zip.
    Hidden files, ``__MACOSX/`` and nested archives are skipped and reported.
    """
    dest = Path(dest).expanduser().absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _open_zip(source, max_files) as zf:
        todo, skipped = _plan(zf, max_files, max_total_bytes, max_ratio)
        ensure_free_space(dest.parent, sum(info.file_size for info, _ in todo), f"unpacking {dest.name}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            report = ExtractReport(folder=dest, skipped=skipped)
            root = tmp.resolve()
            for info, rel in todo:
                target = tmp.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(root):  # belt and braces after _member_path
                    raise UnsafeArchive(f"Rejected zip: member '{info.filename}' points outside the folder.")
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    n = _copy_member(zf, info, target, max_total_bytes - report.total_bytes, max_ratio)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise UnsafeArchive(f"Corrupt zip (bad zip) at member '{info.filename}': {exc}") from exc
                except NotImplementedError as exc:
                    raise UnsafeArchive(f"Cannot extract member '{info.filename}': {exc}") from exc
                except (FileExistsError, NotADirectoryError) as exc:
                    raise UnsafeArchive(
                        f"Rejected zip: member '{info.filename}' clashes with another file of the same name."
                    ) from exc
                except OSError as exc:
                    raise DatasetError(f"Could not extract '{info.filename}': {exc.strerror or exc}") from exc
                report.files += 1
                report.total_bytes += n
            _install(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return report


def safe_name(name: str) -> str:
    """A folder name made from user input: letters, digits, ``._-`` only, no leading dot."""
    stem = name[:-4] if name.lower().endswith(".zip") else name
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return clean[:64] or "dataset"


def dataset_from_zip(source: ZipSource, name: str, **limits) -> ExtractReport:
    """Extract an uploaded zip into the data directory's ``datasets/<name>``.

    The report's ``folder`` is what ``core.data.dataset.scan_folder`` takes; a wrapper
    folder inside the zip is fine, the scan looks through it.
    """
    return extract_zip(source, layout.workspace_dir("datasets") / safe_name(name), **limits)
