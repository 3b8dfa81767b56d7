"""The one file hasher: SHA-256, streamed so memory stays flat for big weight files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_SHORT: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes: integrity records and cache checksums."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_id(path: str | os.PathLike) -> str:
    """A short (16 hex) content id for naming things after a file, memoised by path, size and mtime."""
    st = Path(path).stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHORT:
        _SHORT[key] = file_sha256(path)[:16]
    return _SHORT[key]
