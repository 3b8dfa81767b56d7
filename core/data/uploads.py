"""Size limits on uploaded files, checked in code.

Streamlit's ``server.maxUploadSize`` is enforced by its browser widget and upload
route, but a page must not rely on how the server happened to be configured, and
a photo needs a lower limit than an archive: pages check every uploaded file here
before reading it, and an oversize file is rejected with the reason while the
rest of the upload goes on. Archives keep their unpacked limits in ``core.data.archives``.
"""

from __future__ import annotations

from typing import Any, Iterable

from core.errors import UploadTooLarge

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
