"""The cats-vs-dogs sample dataset: where it is found locally, or how to get it.

The home page offers a one-click start with this sample; working offline is
the normal case, so the lookup is local first and the message on a miss says
exactly where to put the files.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from core import layout, settings
from core.errors import DatasetError, TransferLabError
from core.data.archives import extract_zip
from core.data.uploads import ensure_free_space

SAMPLE_NAME = "cats_vs_dogs"
SAMPLE_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
SAMPLES_ENV = settings.SAMPLES_ENV
CHUNK = 1 << 20


def candidates() -> list[Path]:
    """Folders that may hold the sample, in the order they are tried."""
    out = [layout.cache("samples") / SAMPLE_NAME,
           layout.workspace(None, current=False) / "datasets" / SAMPLE_NAME]  # where the flat layout kept it
    base = settings.samples_dir()
    if base:
        out += [base / SAMPLE_NAME, base]
    return out


def _has_train_folder(folder: Path) -> bool:
    """A ``train/`` folder with class subfolders, directly or inside one wrapper folder
    (the public zip unpacks to ``cats_and_dogs_filtered/train/...``)."""
    try:
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return False
    for sub in subdirs:
        if sub.name.lower() == "train" and any(p.is_dir() for p in sub.iterdir()):
            return True
    return len(subdirs) == 1 and _has_train_folder(subdirs[0])


def find_sample() -> Path | None:
    """The first local copy of the sample dataset, or None."""
    return next((c for c in candidates() if c.is_dir() and _has_train_folder(c)), None)


def missing_message() -> str:
    """What to do when the sample is not on this machine."""
    where = layout.cache("samples") / SAMPLE_NAME
    return (
        f"The cats-vs-dogs sample is not on this machine. Download {SAMPLE_URL} "
        f"and unzip it into {where} (so that {where}/…/train/cats exists), "
        f"or set {SAMPLES_ENV} to a folder that holds a '{SAMPLE_NAME}' dataset."
    )


def download_sample(
    url: str = SAMPLE_URL, progress: Callable[[int, int], None] | None = None, timeout: float = 30.0
) -> Path:
    """Download the sample zip and extract it safely into the data directory.

    ``progress(bytes_done, bytes_total)`` is called per chunk (total 0 when unknown).
    Raises ``DatasetError`` with the manual instructions when offline.
    """

    folder = layout.cache("samples")
    fd, tmp_name = tempfile.mkstemp(prefix=".sample.", suffix=".zip.partial", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                ensure_free_space(folder, 2 * total, "the sample (its zip, then the photos)")  # before any byte
                done = 0
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DatasetError(f"Could not download the sample ({reason}). {missing_message()}") from exc
        try:
            extract_zip(tmp, folder / SAMPLE_NAME)
        except TransferLabError as exc:  # extraction is all or nothing: no partial folder is left
            raise DatasetError(f"The downloaded sample is not usable: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    found = find_sample()
    if found is None:
        raise DatasetError(f"The downloaded zip holds no train/ folder. {missing_message()}")
    return found
