"""Where Transfer Lab keeps its data and finds its weights.

Both places come from environment variables so that tests, benchmarks, CI and
users can point the same code at different folders without editing it.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import StorageError

HOME_ENV = "TRANSFER_LAB_HOME"
WEIGHTS_ENV = "TRANSFER_LAB_WEIGHTS_DIR"


def _ensure(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"The data directory {path} cannot be created or written ({exc.strerror or exc}). "
            f"Choose a writable folder in the sidebar settings or set {HOME_ENV}."
        ) from exc
    return path


def home() -> Path:
    """The data directory (datasets, feature cache, runs); created on first use."""
    return _ensure(Path(os.environ.get(HOME_ENV) or Path.home() / ".transfer-lab").expanduser())


def subdir(name: str) -> Path:
    """A named folder under the data directory, e.g. ``features`` or ``runs``."""
    return _ensure(home() / name)


def weights_dir() -> Path | None:
    """The folder of local weight files and local backbones, if one is set."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None
