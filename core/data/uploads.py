"""Size limits on uploaded files, checked in code.

Streamlit's ``server.maxUploadSize`` is enforced by its browser widget and upload
route, but a page must not rely on how the server happened to be configured, and
a photo needs a lower limit than an archive: pages check every uploaded file here
before reading it, and an oversize file is rejected with the reason while the
rest of the upload goes on. Archives keep their unpacked limits in ``core.data.archives``.

Whatever is written (a photo, an extracted zip, a feature cache entry) must also leave
the server's free-disk margin (``TRANSFER_LAB_MIN_FREE_MB``): ``ensure_free_space`` is
called before the first byte, so a refusal leaves nothing half-written and the disk
never fills up under the other sessions, the runs and the system.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from core import settings
from core.errors import LowDiskSpace, UploadTooLarge

MB = 1024 * 1024  # Streamlit counts server.maxUploadSize in these "MB"
# A photo for a classifier is rarely above 20 MB even from a raw-heavy camera; above this
# the decode alone would hold hundreds of MB per photo per browser session.
PHOTO_LIMIT_MB = 50


def photo_limit_mb(server_limit_mb: int) -> int:
    """The per-photo limit: 50 MB, or the server's upload limit when that is lower."""
    return min(int(server_limit_mb), PHOTO_LIMIT_MB)


def check_size(name: str, size: int, limit_mb: float) -> None:
    """``UploadTooLarge`` when ``size`` bytes exceed ``limit_mb``."""
    if size > limit_mb * MB:
        raise UploadTooLarge(f"{name} is {size / MB:.1f} MB; the limit is {limit_mb:g} MB.")


def within_limit(items: Iterable[tuple[str, Any]], limit_mb: float) -> tuple[list[tuple[str, Any]], list[str]]:
    """The ``(name, uploaded file)`` pairs whose file (anything with ``.size``) is within
    ``limit_mb``, and one message per file over it: the rest of an upload still goes through."""
    kept, rejected = [], []
    for name, f in items:
        try:
            check_size(name, f.size, limit_mb)
            kept.append((name, f))
        except UploadTooLarge as err:
            rejected.append(str(err))
    return kept, rejected


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def ensure_free_space(folder: str | os.PathLike, need_bytes: int, what: str) -> None:
    """``LowDiskSpace`` if writing ``need_bytes`` into ``folder`` would leave less than the margin."""
    margin = settings.min_free_mb() * MB
    try:
        free = free_bytes(folder)
    except OSError:
        return  # no such file system to measure: the write itself reports the problem
    if free - max(int(need_bytes), 0) < margin:
        raise LowDiskSpace(
            f"Not enough free disk space for {what}: it needs {need_bytes / MB:,.1f} MB and {free / MB:,.0f} MB "
            f"are free in {folder}, but this server keeps at least {margin / MB:,.0f} MB free "
            f"({settings.MIN_FREE_ENV}). Nothing was written; free some space or ask whoever runs the server."
        )
