"""Which server paths a visitor of the app may reach, and whose work they may change.

Anyone who reaches the app's pages can type a path (a dataset folder, a folder of
unlabelled photos). Without a bound, the whole file system the server's user can read
would be open to them. Every typed path is resolved first (``~``, ``..``, symlinks),
then it must lie inside one of the allowed roots (``core.settings.data_roots``) or the
caller's own workspace, and never elsewhere in the data directory (other workspaces,
the run store, the caches). A folder is also refused when a link inside it leads
outside the roots, since the scan would read through it. Paths read back from stored
files are checked again where they are used (``check_stored``); changing a run or a
dataset needs its owner or an admin (``may_change``). The command line, run by the
machine's own user, does not call this.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from core import layout, settings
from core.errors import AccessDenied

LINKS_SHOWN = 3


def allowed_roots() -> list[Path]:
    """Where a visitor's typed path may lead: the configured roots and the caller's own workspace.

    The data directory itself is the server's storage (other people's workspaces, run
    configs, caches): it is taken out of the roots, even when a configured root (the
    server user's home, by default) contains it, and only the caller's workspace is added.
    """
    return [*settings.data_roots(), layout.workspace().resolve()]


def _in_storage(path: Path) -> bool:
    """True for a path inside the server's data directory but outside the caller's workspace."""
    home = settings.server_home().resolve()
    own = layout.workspace().resolve()
    return (path == home or path.is_relative_to(home)) and not (path == own or path.is_relative_to(own))


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _names(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def refusal(typed: str | os.PathLike, resolved: Path, roots: Sequence[Path]) -> str:
    """The message for a path outside ``roots``: what was typed, where it really leads, the roots."""
    leads = "" if Path(os.path.abspath(os.path.expanduser(os.fspath(typed)))) == resolved else f" (it leads to {resolved})"
    return (f"{typed} is outside the folders this server allows{leads}. Allowed: {_names(roots)}. "
            f"Whoever runs the server can add folders to {settings.ROOTS_ENV}.")


def resolve(path: str | os.PathLike) -> Path:
    """``path`` made absolute with ``~``, ``..`` and every symlink resolved (missing parts kept)."""
    text = os.fspath(path).strip() if isinstance(path, str) else os.fspath(path)
    if not text:
        raise AccessDenied("No path given.")
    return Path(text).expanduser().resolve()


def check_path(path: str | os.PathLike, roots: Sequence[Path] | None = None) -> Path:
    """The resolved ``path`` if it lies inside the allowed roots; ``AccessDenied`` naming them if not."""
    roots = allowed_roots() if roots is None else [Path(r).resolve() for r in roots]
    resolved = resolve(path)
    if not _inside(resolved, roots) or _in_storage(resolved):
        raise AccessDenied(refusal(path, resolved, roots))
    return resolved


def links_outside(folder: Path, roots: Sequence[Path], recursive: bool = True) -> list[tuple[Path, Path]]:
    """``(link, target)`` for each symlink under ``folder`` that leads outside ``roots``.

    Links are followed (a scan follows a linked class folder), each real folder
    visited once, so a link cycle ends.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    todo = [folder]
    while todo:
        current = todo.pop()
        real = current.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # unreadable: the scan reports it
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not _inside(target, roots):
                    found.append((path, target))
                    continue
            if recursive and entry.is_dir():
                todo.append(path)
    return found


def check_folder(path: str | os.PathLike, roots: Sequence[Path] | None = None, recursive: bool = True) -> Path:
    """``check_path``, and no link inside the folder may lead outside the roots either."""
    roots = allowed_roots() if roots is None else [Path(r).resolve() for r in roots]
    resolved = check_path(path, roots)
    if resolved.is_dir():
        bad = links_outside(resolved, roots, recursive)
        if bad:
            shown = "; ".join(f"{link} → {target}" for link, target in bad[:LINKS_SHOWN])
            more = f" and {len(bad) - LINKS_SHOWN} more" if len(bad) > LINKS_SHOWN else ""
            raise AccessDenied(f"{path} contains links that lead outside the folders this server allows: "
                               f"{shown}{more}. Allowed: {_names(roots)}.")
    return resolved


def allowed(path: str | os.PathLike, roots: Iterable[Path] | None = None) -> bool:
    """True when ``check_path`` would accept ``path``."""
    try:
        check_path(path, None if roots is None else list(roots))
    except AccessDenied:
        return False
    return True


def may_change(path: str | os.PathLike) -> bool:
    """Whether the caller may change or remove what lies at ``path`` (a run, a dataset folder).

    Its owner may (the workspace it lies in is theirs), and so may an admin named in
    ``$TRANSFER_LAB_ADMINS``. Without sign-in the server is one person's (and the
    command line is the machine's own user): they may change everything. A session the
    app could not identify may change nothing.
    """
    session = settings.current()
    if session.denied:
        return False
    if session.user is None or session.user in settings.admins():
        return True
    return layout.owner_of(path) == layout.user_id(session.user)


def check_may_change(path: str | os.PathLike, what: str) -> None:
    """``AccessDenied`` unless ``may_change(path)``; ``what`` names the thing for the message."""
    if not may_change(path):
        raise AccessDenied(f"{what} belongs to someone else: only its owner or an admin can change or remove it.")


def check_stored(path: str | os.PathLike, *extra_roots: Path) -> Path:
    """A path read back from a stored file (a prediction's image, a run's dataset), checked again
    where it is used: inside the allowed roots or ``extra_roots`` (e.g. the run owner's workspace)."""
    resolved = resolve(path)
    if _inside(resolved, [Path(r).resolve() for r in extra_roots]) or allowed(resolved):
        return resolved
    raise AccessDenied(f"A stored path leads outside the folders this server allows: {path}.")
