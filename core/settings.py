"""Where Transfer Lab keeps its data and finds its weights.

Both places come from environment variables so that tests, benchmarks, CI and
users can point the same code at different folders without editing it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "TRANSFER_LAB_HOME"
WEIGHTS_ENV = "TRANSFER_LAB_WEIGHTS_DIR"


def home() -> Path:
    """The data directory (datasets, feature cache, runs); created on first use."""
    path = Path(os.environ.get(HOME_ENV) or Path.home() / ".transfer-lab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(name: str) -> Path:
    """A named folder under the data directory, e.g. ``features`` or ``runs``."""
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_dir() -> Path | None:
    """The folder of local weight files and local backbones, if one is set."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None
