"""How fast each backbone runs on this machine, measured and kept under ``bench/``.

Published ImageNet figures say how accurate a backbone is; only a measurement
here says what it costs. Speed does not depend on the weight values, so it is
measured with random weights (no download needed) and stored per
(backbone, input size).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core import atomic, settings

BENCH_VERSION = 1


@dataclass(frozen=True)
class SpeedResult:
    """One measurement: forward passes of ``batches`` batches after warm-up."""

    backbone: str
    size: int
    batch_size: int
    batches: int
    images_per_s: float
    seconds_per_batch: float
    device: str
    host: str
    cpu_count: int
    tf_version: str
    measured_at: str
    version: int = BENCH_VERSION


def bench_path(name: str, size: int) -> Path:
    return settings.subdir("bench") / f"{name}-{int(size)}.json"


def _size(name: str, size: int | None) -> int:
    from core.nets.backbones import get_spec

    spec = get_spec(name)
    return spec.default_size if spec.fixed_size or not size else int(size)


def _cores() -> int:
    """CPU cores this process may use (a container or taskset may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device() -> str:
    """What ran the measurement, as a person would name it."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)}"
    return f"CPU {_cpu_name()} ({_cores()} cores)"


def measure(
    name: str,
    size: int | None = None,
    *,
    batch_size: int = 8,
    batches: int = 3,
    warmup: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SpeedResult:
    """Time ``batches`` forward passes of random pixels at the backbone's size; store and return."""
    import tensorflow as tf

    from core.nets.backbones import load_backbone

    size = _size(name, size)
    bb = load_backbone(name, weights=None, input_size=size)
    model = bb.model

    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(x, training=False)

    x = tf.random.uniform((batch_size, size, size, 3), 0.0, 255.0, seed=0)
    total = warmup + batches
    for i in range(warmup):
        forward(x).numpy()
        if progress:
            progress(i + 1, total)
    times = []
    for i in range(batches):
        start = time.perf_counter()
        forward(x).numpy()  # .numpy() waits for the device to finish
        times.append(time.perf_counter() - start)
        if progress:
            progress(warmup + i + 1, total)
    per_batch = sum(times) / len(times)
    result = SpeedResult(
        backbone=name, size=size, batch_size=batch_size, batches=batches,
        images_per_s=batch_size / per_batch, seconds_per_batch=per_batch, device=_device(),
        host=platform.node(), cpu_count=_cores(), tf_version=tf.__version__,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    atomic.write_json(bench_path(name, size), asdict(result))
    return result


def _from_json(data: object) -> SpeedResult | None:
    if not isinstance(data, dict) or data.get("version") != BENCH_VERSION:
        return None
    try:
        return SpeedResult(**data)
    except TypeError:
        return None  # written by another version: measure again


def read(name: str, size: int | None = None) -> SpeedResult | None:
    """The stored measurement for ``name`` at ``size`` (default size if None), or None."""
    return _from_json(atomic.read_json(bench_path(name, _size(name, size))))


def read_all() -> list[SpeedResult]:
    """Every stored measurement (any backbone, any size), newest first."""
    found = [_from_json(atomic.read_json(p)) for p in settings.subdir("bench").glob("*.json")]
    return sorted((r for r in found if r is not None), key=lambda r: r.measured_at, reverse=True)


def latest_by_backbone() -> dict[str, SpeedResult]:
    """For each backbone, its newest measurement at the size it is used at by default."""
    from core.nets.backbones import list_backbones

    default = {s.name: s.default_size for s in list_backbones()}
    out: dict[str, SpeedResult] = {}
    for r in read_all():
        if default.get(r.backbone) == r.size and r.backbone not in out:
            out[r.backbone] = r
    return out


def backbone_table():
    """The registry as a DataFrame, with what this machine adds: are the ImageNet
    weights here (or would they need a download), and the measured images/s."""
    import pandas as pd

    from core.nets.backbones import list_backbones, weights_location

    measured = latest_by_backbone()
    rows = []
    for spec in list_backbones():
        r = measured.get(spec.name)
        rows.append({
            "name": spec.name,
            "backbone": spec.display_name,
            "family": spec.family,
            "params (M)": spec.params / 1e6,
            "depth": spec.depth,
            "input px": spec.default_size,
            "top-1 %": spec.top1,
            "top-5 %": spec.top5,
            "weights": "local" if weights_location(spec) is not None else "download needed",
            "images/s": r.images_per_s if r else None,
            "measured on": r.device if r else "",
        })
    return pd.DataFrame(rows)
