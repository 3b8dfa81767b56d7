"""The data directory's layout: the one module that names its folders.

``TRANSFER_LAB_HOME`` is server configuration (no visitor chooses it). Inside it:

- **team caches**, keyed by content and shared by everyone: ``features/``, ``scans/``,
  ``hashes/``, ``embeddings/``, ``bench/``, ``engine/``, ``cut_cache/``, ``samples/``;
- **one workspace per user** under ``users/<id>/``: ``datasets/`` (uploads, built
  datasets), ``inbox/`` (photos waiting for labels), ``runs/``, ``exports/``. Without
  sign-in the one local user's workspace is ``users/local``.

Only the server writes any of it. A visitor's upload lands in their own workspace, and
nothing a visitor writes is ever read back as the server's own state (run configs,
status, caches live where uploads cannot reach).

A data directory of the earlier flat layout (``runs/``, ``datasets/``, ``inbox/``,
``exports/`` at the top) is migrated into the local workspace on first use: the folders
are moved, not copied, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from core import atomic, settings

CACHES = ("features", "scans", "hashes", "embeddings", "bench", "engine", "cut_cache", "samples")
WORKSPACE_DIRS = ("datasets", "inbox", "runs", "exports")
USERS = "users"
LOCAL_USER_ID = "local"
_MIGRATED = ".layout-v2"


def home() -> Path:
    """The server's data directory, created, migrated from the flat layout if needed."""
    root = settings.ensure(settings.server_home())
    if not (root / _MIGRATED).exists():
        _migrate(root)
    return root


def cache(name: str) -> Path:
    """A team cache folder (``features``, ``scans``...), created."""
    if name not in CACHES:
        raise ValueError(f"unknown cache folder {name!r}")
    return settings.ensure(home() / name)


def user_id(user: str | None) -> str:
    """The folder name of a user's workspace: readable, and unique per identity.

    A signed-in identity (an e-mail, a name) becomes its letters and digits plus a
    hash of the whole identity, so ``a.b@x`` and ``ab@x`` never share a folder and no
    identity can name a path (``..``, ``/``).
    """
    if not user:
        return LOCAL_USER_ID
    readable = "-".join(re.findall(r"[a-z0-9]+", user.lower()))[:40].strip("-") or "user"
    return f"{readable}-{hashlib.sha256(user.encode()).hexdigest()[:10]}"


def workspace(user: str | None = None, *, current: bool = True) -> Path:
    """A user's workspace (default: the caller's session's user; ``current=False``: exactly
    ``user``, None being the local user), created."""
    who = settings.current_user() if current and user is None else user
    return settings.ensure(home() / USERS / user_id(who))


def workspace_dir(name: str) -> Path:
    """``datasets``, ``inbox``, ``runs`` or ``exports`` of the caller's workspace, created."""
    if name not in WORKSPACE_DIRS:
        raise ValueError(f"unknown workspace folder {name!r}")
    return settings.ensure(workspace() / name)


def workspaces() -> list[Path]:
    """Every user's workspace folder (the team's runs are read from all of them)."""
    root = home() / USERS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def owner_of(path: str | os.PathLike) -> str | None:
    """The workspace id a path lies in (``users/<id>/...``), or None outside every workspace."""
    users = (settings.server_home() / USERS).resolve()
    try:
        rel = Path(path).resolve().relative_to(users)
    except ValueError:
        return None
    return rel.parts[0] if rel.parts else None


def workspace_of(path: str | os.PathLike) -> Path | None:
    """The workspace folder a path lies in, or None."""
    owner = owner_of(path)
    return settings.server_home().resolve() / USERS / owner if owner else None


def _migrate(root: Path) -> None:
    """Move the flat layout's per-user folders into the local workspace (once); runs that
    trained on a dataset that moved are pointed at its new place."""
    local = root / USERS / LOCAL_USER_ID
    moved_datasets = (root / "datasets").is_dir() and not (root / "datasets").is_symlink()
    for name in WORKSPACE_DIRS:
        old = root / name
        if old.is_dir() and not old.is_symlink():
            local.mkdir(parents=True, exist_ok=True)
            new = local / name
            if not new.exists():
                os.replace(old, new)
            else:  # both exist (a partial earlier migration): move what is not there yet
                for item in old.iterdir():
                    if not (new / item.name).exists():
                        os.replace(item, new / item.name)
    if moved_datasets:
        _repoint_runs(local / "runs", str(root / "datasets"), str(local / "datasets"))
    try:
        (root / _MIGRATED).touch()
    except OSError:
        pass  # a read-only data directory: reads still work, the next writer retries


def _repoint_runs(runs: Path, old: str, new: str) -> None:
    """Rewrite the ``dataset`` of each run config under ``runs`` that lay in ``old``."""
    for config_path in runs.glob("*/config.json") if runs.is_dir() else ():
        config = atomic.read_json(config_path)
        dataset = config.get("dataset") if isinstance(config, dict) else None
        if isinstance(dataset, str) and (dataset == old or dataset.startswith(old + os.sep)):
            atomic.write_json(config_path, {**config, "dataset": new + dataset[len(old):]})
