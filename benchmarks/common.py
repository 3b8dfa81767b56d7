"""Shared helpers of the benchmark suite: machine description, ratios, statistics,
table printing and JSON results. Pure Python + numpy; no TensorFlow import here,
so the smoke test runs in a second.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GROUPS = ("speed", "accuracy", "app", "scale", "engine", "int8")


# ---------------------------------------------------------------- results

@dataclass
class Row:
    """One line of a printed table: what was measured, the figure, its target, pass/fail."""

    item: str
    measured: str
    value: float | None = None
    target: str = ""
    ok: bool | None = None  # None: no target (informative figure)


@dataclass
class GroupResult:
    group: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, item: str, measured: str, value: float | None = None, target: str = "",
            ok: bool | None = None) -> Row:
        row = Row(item, measured, value, target, ok)
        self.rows.append(row)
        return row

    def to_json(self) -> dict:
        return {
            "group": self.group, "quick": self.quick, "seconds": self.seconds,
            "rows": [r.__dict__ for r in self.rows], "figures": self.figures, "notes": self.notes,
            "tables": {name: {"headers": h, "rows": rows} for name, (h, rows) in self.tables.items()},
        }


# ---------------------------------------------------------------- arithmetic

def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing, not finite, or the
    denominator is zero (a figure we could not measure is never reported as 0 or inf)."""
    if numerator is None or denominator is None:
        return None
    try:
        n, d = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(n) and math.isfinite(d)) or d == 0:
        return None
    return n / d


def rate(count: float, seconds: float | None) -> float | None:
    """Items per second."""
    return ratio(count, seconds)


def percentile(values: Sequence[float], q: float) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.percentile(vals, q)) if vals else None


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """Least-squares line ``y = slope * x + intercept`` and its R^2 (None below 2 points;
    R^2 is 1.0 when the points have no spread at all and lie on the line)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 2 or len(xs) != len(ys) or np.ptp(xs) == 0:
        return {"slope": None, "intercept": None, "r2": None}
    slope, intercept = np.polyfit(xs, ys, 1)
    pred = slope * xs + intercept
    ss_res = float(np.sum((ys - pred) ** 2))
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res < 1e-12 else 0.0)
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}


def at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def at_most(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


# ---------------------------------------------------------------- formatting

def fmt(value: Any, digits: int = 3) -> str:
    """Compact human formatting: None -> '-', floats to ``digits`` significant places."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 10 ** digits:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 else f"{v:.2e}"
    return str(value)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """A plain fixed-width text table (also valid GitHub markdown)."""
    body = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    cells = [list(headers)] + body
    widths = [max(len(str(r[i])) if i < len(r) else 0 for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(str(r[i] if i < len(r) else "").ljust(widths[i]) for i in range(len(widths))) + " |"

    out = [f"### {title}", ""] if title else []
    out.append(line(headers))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [line(r) for r in body]
    return "\n".join(out)


def ok_mark(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def format_group(result: GroupResult) -> str:
    title = f"{result.group}{' (--quick)' if result.quick else ''} — {fmt_seconds(result.seconds)}"
    parts = [format_table(["item", "measured", "ratio / figure", "target", "ok"],
                          [[r.item, r.measured, fmt(r.value), r.target or "-", ok_mark(r.ok)] for r in result.rows],
                          title=title)]
    for name, (headers, rows) in result.tables.items():
        parts.append(format_table(headers, rows, title=name))
    if result.notes:
        parts.append("\n".join(f"- {n}" for n in result.notes))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- machine

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_bytes() -> int | None:
    try:
        m = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _cgroup_cpus() -> float | None:
    """CPU quota of this container (cgroup v2 ``cpu.max``), if one is set."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - absent package: no version
        return None


def machine_description() -> dict[str, Any]:
    """What the figures were measured on. Versions come from package metadata, so
    describing the machine never imports TensorFlow."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "cgroup_cpu_quota": _cgroup_cpus(), "ram_bytes": _mem_total_bytes(),
        "ram_gib": round(_mem_total_bytes() / 2**30, 1) if _mem_total_bytes() else None,
        "load_average": list(load) if load else None,
        "platform": platform.platform(), "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "tensorflow": _version("tensorflow"), "keras": _version("keras"), "numpy": _version("numpy"),
        "streamlit": _version("streamlit"), "pillow": _version("pillow"),
        "scikit-learn": _version("scikit-learn"),
    }


def describe_machine(m: dict[str, Any]) -> str:
    return (f"{m.get('cpu_model')} — {m.get('cpus_usable') or m.get('cpu_count')} cores, "
            f"{m.get('ram_gib')} GiB RAM, load {', '.join(f'{x:.1f}' for x in (m.get('load_average') or []))}; "
            f"Python {m.get('python')}, TensorFlow {m.get('tensorflow')}, Keras {m.get('keras')}")


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def write_results(result: GroupResult, machine: dict[str, Any], settings: dict[str, Any],
                  folder: Path = RESULTS_DIR, stamp: str | None = None) -> Path:
    """``<folder>/<group>-<timestamp>.json`` with the figures and the machine, written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.group}-{stamp or timestamp()}.json"
    doc = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "settings": settings, **result.to_json(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_plain(doc), indent=2, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _plain(obj: Any) -> Any:
    """numpy scalars / arrays / paths -> JSON values; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------- processes

def peak_rss_bytes() -> dict[str, int | None]:
    """Peak resident memory of this process: ``VmHWM`` from /proc and ``ru_maxrss``."""
    hwm = None
    try:
        m = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        hwm = int(m.group(1)) * 1024 if m else None
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss *= 1 if sys.platform == "darwin" else 1024  # Linux reports kB, macOS bytes
    return {"vmhwm": hwm, "ru_maxrss": int(maxrss)}


def current_rss_bytes() -> int | None:
    """Resident memory of this process now (``VmRSS``)."""
    try:
        m = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds`` (wall) and ``t.cpu`` (CPU time of
    this process, all threads). On a shared machine the wall time also counts the waits
    for other people's work; the CPU time counts only the work done, so a CPU-time ratio
    is a cross-check of a wall-time ratio that does not move with the machine's load."""

    def __enter__(self) -> "Stopwatch":
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.seconds = self.cpu = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start


@contextmanager
def engine_env(request: str):
    """Run the block with ``TRANSFER_LAB_ENGINE=request`` (``core.nets.engine`` reads it at
    each choice), restoring what was there before."""
    previous = os.environ.get("TRANSFER_LAB_ENGINE")
    os.environ["TRANSFER_LAB_ENGINE"] = request
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TRANSFER_LAB_ENGINE", None)
        else:
            os.environ["TRANSFER_LAB_ENGINE"] = previous


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- run context

@dataclass
class Context:
    """What every group needs: where the data is, how big to go, and a memo of
    measurements that several groups share (e.g. extraction jobs at a size)."""

    dataset: Path
    weights_dir: Path | None
    home: Path
    quick: bool
    per_class: int | None = None  # --per-class: a seeded subset for the training groups
    items: frozenset[str] | None = None  # --items: the numbered items to run in each group (None: all)
    seed: int = 1337
    precisions: tuple[str, ...] = ()  # --precisions: the accuracy table again under each training precision
    memo: dict[str, Any] = field(default_factory=dict)

    def wants(self, *numbers: str) -> bool:
        """Whether ``--items`` asks for any of these item numbers (all run without it)."""
        return self.items is None or any(n in self.items for n in numbers)

    def scan(self):
        """The dataset as ``core.train.fit.fit`` scans it (same split fraction and seed,
        so the scan cache and the feature cache keys are shared with ``fit``)."""
        if "dataset" not in self.memo:
            from core.data.dataset import scan_folder
            from core.train.strategies import StrategyConfig

            self.memo["dataset"] = scan_folder(self.dataset, val_fraction=StrategyConfig.val_fraction,
                                               seed=self.seed)
        return self.memo["dataset"]

    def sample(self, per_class: int | None):
        """The full dataset (``None``) or the seeded subset ``fit(limit_per_class=...)`` uses."""
        from core.data.dataset import subset

        ds = self.scan()
        return ds if not per_class else subset(ds, per_class, self.seed)

    def train_subset(self, images: int):
        """``images`` training images (half per class for two classes), train split only."""
        from core.data.dataset import subset

        ds = self.scan()
        return subset(ds, max(1, images // max(ds.num_classes, 1)), self.seed, splits=("train",))


def attempt(result: GroupResult, item: str, fn, *args, **kwargs):
    """Run one benchmark item; a failure is recorded as a FAIL row and the suite goes on."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a broken item must not hide the others
        import traceback

        log(f"{item} failed: {type(exc).__name__}: {exc}")
        result.add(item, f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}",
                   None, "runs", False)
        result.figures.setdefault("errors", {})[item] = traceback.format_exc()
        return None


def warm_file_cache(paths: Iterable[str]) -> int:
    """Read every file once so neither contender pays the first disk read alone."""
    total = 0
    for p in paths:
        try:
            with open(p, "rb") as fh:
                total += len(fh.read())
        except OSError:
            pass
    return total


def add_data_args(p) -> None:
    """The arguments every stand-alone benchmark shares: the weights folder (else
    ``$TRANSFER_LAB_WEIGHTS_DIR``, else ``../shared``), the dataset and where results go."""
    p.add_argument("--weights-dir", default=os.environ.get("TRANSFER_LAB_WEIGHTS_DIR")
                   or str(REPO.parent / "shared" / "keras-weights"))
    p.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cats_vs_dogs"))
    p.add_argument("--results-dir", default=str(RESULTS_DIR))
