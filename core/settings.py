"""Where Transfer Lab keeps its data and finds its weights, for the server and for one session.

Two layers, so that one visitor of a shared server cannot move another's work:

- the **server configuration** comes from environment variables read by the
  process (``TRANSFER_LAB_HOME``, ``TRANSFER_LAB_WEIGHTS_DIR``,
  ``TRANSFER_LAB_DATA_ROOTS``, ``TRANSFER_LAB_ADMINS``, ...); nothing in the app
  writes them, and no visitor chooses them: the data directory and the weights
  folder are the server's (``core.layout`` gives each user a workspace inside it);
- a **session** (one browser tab of the app, or a ``with settings.session(...)``
  block in a script) carries only who is signed in. The app registers a provider
  that returns the current Streamlit session's user; core code calls
  ``current_user()`` and gets the caller's.
"""

from __future__ import annotations

import contextvars
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core.errors import StorageError

HOME_ENV = "TRANSFER_LAB_HOME"
WEIGHTS_ENV = "TRANSFER_LAB_WEIGHTS_DIR"
ROOTS_ENV = "TRANSFER_LAB_DATA_ROOTS"
MIN_FREE_ENV = "TRANSFER_LAB_MIN_FREE_MB"
ADDRESS_ENV = "TRANSFER_LAB_ADDRESS"
ADMINS_ENV = "TRANSFER_LAB_ADMINS"
MAX_JOBS_ENV = "TRANSFER_LAB_MAX_JOBS"
MAX_USER_JOBS_ENV = "TRANSFER_LAB_MAX_JOBS_PER_USER"
OPEN_WITHOUT_SIGN_IN_ENV = "TRANSFER_LAB_OPEN_WITHOUT_SIGN_IN"
OPEN_WITHOUT_SIGN_IN_VALUE = "anyone-on-the-network-may-use-this-server"
ENGINE_ENV = "TRANSFER_LAB_ENGINE"
PRECISION_ENV = "TRANSFER_LAB_PRECISION"
SAMPLES_ENV = "TRANSFER_LAB_SAMPLES_DIR"
RAY_ADDRESS_ENV = "TRANSFER_LAB_RAY_ADDRESS"
RAY_ACTOR_ENV = "TRANSFER_LAB_RAY_ACTOR"  # set by a run's Ray actor in the worker it starts: the actor's name
SHARD_MIN_IMAGES_ENV = "TRANSFER_LAB_SHARD_MIN_IMAGES"
SHARD_IMAGES_ENV = "TRANSFER_LAB_SHARD_IMAGES"
SHARD_RETRIES_ENV = "TRANSFER_LAB_SHARD_RETRIES"
DEFAULT_MIN_FREE_MB = 500.0

# What each server-wide variable means, for the read-only Settings table (others are listed as found).
SERVER_VARIABLES = {
    HOME_ENV: "data directory: datasets, feature cache, runs (default ~/.transfer-lab)",
    WEIGHTS_ENV: "folder of weight files and local backbones",
    ROOTS_ENV: "folders a typed path may lead into (default: the data directory and the server user's home)",
    MIN_FREE_ENV: f"free disk an upload, extraction or feature cache must leave (default {DEFAULT_MIN_FREE_MB:g} MB)",
    MAX_JOBS_ENV: "training jobs run at once on this server (default 1)",
    MAX_USER_JOBS_ENV: "training jobs one user may have running at once (default 1)",
    ADMINS_ENV: "signed-in identities (e-mails, separated by commas) who may stop or delete anyone's work",
    OPEN_WITHOUT_SIGN_IN_ENV: f"'{OPEN_WITHOUT_SIGN_IN_VALUE}' lets the app listen beyond 127.0.0.1 without sign-in",
    "TRANSFER_LAB_ENGINE": "inference engine for frozen forward passes",
    "TRANSFER_LAB_PRECISION": "precision of gradient steps: auto (default), float32, mixed_bfloat16, mixed_float16",
    "TRANSFER_LAB_SAMPLES_DIR": "extra folder searched for the sample dataset",
    ADDRESS_ENV: "address scripts/app.sh binds to (default 127.0.0.1)",
    "TRANSFER_LAB_RAY_ADDRESS": "Ray cluster (head host:port) that runs and large extractions go to (default: this machine)",
    "TRANSFER_LAB_SHARD_MIN_IMAGES": "on a Ray cluster: extractions of at least this many photos are sharded (default 20000)",
    "TRANSFER_LAB_SHARD_IMAGES": "on a Ray cluster: photos per extraction shard (default 2048)",
}


@dataclass(frozen=True)
class Session:
    """One session: who is signed in (``None``: nobody signed in, the one local user).

    ``denied``: the app could not tell who this is (its provider failed): such a session
    may change nothing, rather than falling back to the local user's rights.
    """

    user: str | None = None
    denied: bool = False


_override: contextvars.ContextVar[Session | None] = contextvars.ContextVar("transfer_lab_session", default=None)
_provider: Callable[[], Session | None] | None = None


def set_session_provider(provider: Callable[[], Session | None] | None) -> None:
    """Register where the current session's choices come from (the app: its session state)."""
    global _provider
    _provider = provider


@contextmanager
def session(user: str | None = None) -> Iterator[Session]:
    """Act as ``user`` in this thread/context: for scripts and tests (the app uses the provider)."""
    value = Session(user or None)
    token = _override.set(value)
    try:
        yield value
    finally:
        _override.reset(token)


def current() -> Session:
    """The caller's session choices: a ``session()`` block, else the registered provider, else none."""
    value = _override.get()
    if value is None and _provider is not None:
        try:
            value = _provider()
        except Exception:  # noqa: BLE001  a broken provider must not break the engine, nor open it
            value = Session(denied=True)
    return value or Session()


def ensure(path: Path) -> Path:
    """``path`` as a folder, created; a ``StorageError`` that says what to do if it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"The data directory {path} cannot be created or written ({exc.strerror or exc}). "
            f"Whoever runs the server can set {HOME_ENV} to a writable folder."
        ) from exc
    return path


def server_home() -> Path:
    """The server's data directory (``$TRANSFER_LAB_HOME`` or ``~/.transfer-lab``); not created here."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".transfer-lab").expanduser()


def weights_dir() -> Path | None:
    """The server's folder of local weight files and local backbones (``$TRANSFER_LAB_WEIGHTS_DIR``), if any."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


def current_user() -> str | None:
    """Who is signed in to the caller's session (None without sign-in, and on the command line)."""
    return current().user


def admins() -> frozenset[str]:
    """Identities (``$TRANSFER_LAB_ADMINS``, separated by commas) who may change anyone's work."""
    return frozenset(part.strip() for part in os.environ.get(ADMINS_ENV, "").split(",") if part.strip())


def _whole_number(name: str, default: int) -> int:
    """A limit of at least 1 (0 or less reads as 1: "one at a time")."""
    return max(1, count(name, default, least=-(2**31)))


def max_jobs() -> int:
    """Training jobs run at once on this server (``$TRANSFER_LAB_MAX_JOBS``; one saturates a CPU machine)."""
    return _whole_number(MAX_JOBS_ENV, 1)


def max_jobs_per_user() -> int:
    """Training jobs one user may have running at once (``$TRANSFER_LAB_MAX_JOBS_PER_USER``, default 1)."""
    return _whole_number(MAX_USER_JOBS_ENV, 1)


def open_without_sign_in() -> bool:
    """True only when whoever runs the server typed the long opt-in value, word for word."""
    return os.environ.get(OPEN_WITHOUT_SIGN_IN_ENV, "").strip() == OPEN_WITHOUT_SIGN_IN_VALUE


def data_roots() -> list[Path]:
    """Folders a path typed into the app may lead into, resolved (``$TRANSFER_LAB_DATA_ROOTS``,
    separated by ``:``; default: the server's data directory and the server user's home)."""
    value = os.environ.get(ROOTS_ENV, "").strip()
    parts = [p.strip() for p in value.split(os.pathsep) if p.strip()] if value else [server_home(), Path.home()]
    roots: list[Path] = []
    for part in parts:
        root = Path(part).expanduser().resolve()
        if root not in roots:
            roots.append(root)
    return roots


def min_free_mb() -> float:
    """Free disk space, in MB, that writing an upload, an extraction or a cache entry must leave."""
    return _parsed(MIN_FREE_ENV, DEFAULT_MIN_FREE_MB, float, "a number of MB", 0, "0 or more MB")


def server_config() -> list[dict]:
    """The server-wide configuration as rows (variable, value, whether set, what it does), for display."""
    # only the known variables: an unknown one could hold something not meant for every visitor
    defaults = {HOME_ENV: str(server_home()), ROOTS_ENV: os.pathsep.join(str(r) for r in data_roots()),
                MIN_FREE_ENV: f"{DEFAULT_MIN_FREE_MB:g}", MAX_JOBS_ENV: "1", MAX_USER_JOBS_ENV: "1",
                ADDRESS_ENV: "127.0.0.1", ADMINS_ENV: "nobody"}
    rows = []
    for name in SERVER_VARIABLES:
        value = os.environ.get(name)
        if name == ADMINS_ENV and value:  # every visitor reads this table: say how many, not who
            value = f"{len(admins())} named"
        rows.append({"variable": name, "value": value if value else defaults.get(name, "not set"),
                     "from": "environment" if value else "default", "what": SERVER_VARIABLES[name]})
    return rows


def usable_cores() -> int:
    """CPU cores this process may use (a container or taskset may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _text(name: str) -> str:
    return os.environ.get(name, "").strip()


_engine_choice: contextvars.ContextVar[str | None] = contextvars.ContextVar("transfer_lab_engine", default=None)


@contextmanager
def engine_chosen(name: str | None) -> Iterator[None]:
    """Use engine ``name`` in this context (the command line's ``--engine``) instead of the server's."""
    token = _engine_choice.set(name.strip().lower() if name else None)
    try:
        yield
    finally:
        _engine_choice.reset(token)


def engine_request() -> str:
    """The inference engine asked for: this context's choice (``engine_chosen``), else
    ``$TRANSFER_LAB_ENGINE`` (lower case), else ``auto``; ``core.nets.engine`` checks the name."""
    return _engine_choice.get() or _text(ENGINE_ENV).lower() or "auto"


def precision_request() -> str:
    """The server's training precision (``$TRANSFER_LAB_PRECISION``, lower case; default ``auto``);
    ``core.train.precision`` checks the name."""
    return _text(PRECISION_ENV).lower() or "auto"


def samples_dir() -> Path | None:
    """An extra folder searched for the sample dataset (``$TRANSFER_LAB_SAMPLES_DIR``)."""
    value = _text(SAMPLES_ENV)
    return Path(value).expanduser() if value else None


def keras_home() -> Path:
    """Keras' own folder (``$KERAS_HOME``, default ``~/.keras``): its download cache is ``models/``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def ray_address() -> str | None:
    """The Ray cluster's head (``$TRANSFER_LAB_RAY_ADDRESS``), or None: everything stays on this machine."""
    return _text(RAY_ADDRESS_ENV) or None


def ray_actor() -> str | None:
    """In a worker started by a run's Ray actor: the actor's name (None elsewhere)."""
    return _text(RAY_ACTOR_ENV) or None


def _parsed(name: str, default, parse, what: str, least, floor: str, error: type[Exception] = StorageError):
    """A numeric variable: ``default`` when unset, else ``parse``d and at least ``least``; ``error``
    says which rule a value breaks (``what`` it must be, its ``floor``)."""
    value = _text(name)
    if not value:
        return default
    try:
        n = parse(value)
    except ValueError:
        raise error(f"{name} must be {what}, not '{value}'.") from None
    if not n >= least:  # NaN too
        raise error(f"{name} must be {floor}, not '{value}'.")
    return n


def count(name: str, default: int, least: int = 1, error: type[Exception] = StorageError) -> int:
    """A whole-number variable (``name``), at least ``least``."""
    return _parsed(name, default, int, "a whole number", least, f"at least {least}", error)


def child_process_env(**extra: str) -> dict[str, str]:
    """This process's whole environment plus ``extra``, for a worker it starts on this machine."""
    return {**os.environ, **extra}


def passed_to_workers(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The server's configuration (every ``TRANSFER_LAB_*`` variable, and ``extra``) for a process
    it starts elsewhere (a Ray node): the same data directory, weights and limits there."""
    return {k: v for k, v in os.environ.items() if k.startswith("TRANSFER_LAB_") or k in extra}
