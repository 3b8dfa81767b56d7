"""How fast each backbone runs on this machine, measured and kept under ``bench/``.

Published ImageNet figures say how accurate a backbone is; only a measurement
here says what it costs, and on which engine: TensorFlow and each OpenVINO
precision this CPU has are timed in one call, batch by batch in turn, so a busy
machine slows them alike. Speed does not depend on the weight values, so it is
measured with random weights (no download needed) and stored per
(backbone, input size).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core import atomic, layout, settings
from core.features import cache
from core.nets.engine import reference_choice
from core.errors import BadImage, EngineError
from core.nets import engine
from core.nets import backbones
from core.nets.backbones import get_spec, list_backbones, weights_location
from core.data.images import load_rgb

# 2: images/s per engine (``engines``); a version-1 file holds TensorFlow's figure only
BENCH_VERSION = 2
TENSORFLOW = reference_choice().label  # the reference engine's label (``tensorflow f32``): every measurement has it


@dataclass(frozen=True)
class SpeedResult:
    """One measurement: forward passes of ``batches`` batches per engine after warm-up.
    ``images_per_s`` and ``seconds_per_batch`` are TensorFlow's; ``engines`` has every engine's."""

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
    warmup_s: float | None = None  # building the network and its first (traced) batch; None: not recorded
    engines: dict[str, float] = field(default_factory=dict)  # images/s per engine label; empty: TensorFlow only
    note: str = ""  # why an engine is missing (OpenVINO not installed, refused by the parity guard)

    @property
    def rates(self) -> dict[str, float]:
        """Images/s per engine label (``tensorflow f32``, ``openvino bf16``...)."""
        return self.engines or {TENSORFLOW: self.images_per_s}

    def rate(self, label: str) -> float:
        """Images/s on engine ``label``; TensorFlow's where that engine was not measured."""
        return self.rates.get(label, self.images_per_s)


def rate_column(label: str) -> str:
    """The table's column of engine ``label``'s images/s."""
    return f"img/s {label}"


def bench_path(name: str, size: int) -> Path:
    return layout.cache("bench") / f"{name}-{int(size)}.json"


def _size(name: str, size: int | None) -> int:
    return get_spec(name).size_for(size)


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
    return f"CPU {_cpu_name()} ({settings.usable_cores()} cores)"


def _engine_choices() -> tuple[list, str]:
    """The engines to time beside the reference (TensorFlow), whatever engine the app is set to: for
    each other backend of the engine table, the precision it picks here and each slower one it has
    (OpenVINO: bf16 where the CPU has it, and f32); none, and why, where none can run here."""
    choices, reasons = [], []
    for b in engine.backends():
        if b.reference:
            continue
        best = engine.choose(b.name)
        if best.reference:  # not available here: the reference would run under its name
            reasons.append(best.reason)
            continue
        at = b.precisions.index(best.precision) + 1 if best.precision in b.precisions else len(b.precisions)
        choices += [best, *(engine.Choice(b.name, p, f"{p} for the comparison") for p in b.precisions[at:])]
    return choices, "" if choices else f"{engine.reference().title} only: {'; '.join(reasons)}."


def measure(
    name: str,
    size: int | None = None,
    *,
    batch_size: int = 8,
    batches: int = 4,
    warmup: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> SpeedResult:
    """Time ``batches`` forward passes of random pixels at the backbone's size on TensorFlow and
    on each OpenVINO precision (through the engine layer, parity guard included), the engines
    taking turns batch by batch; store and return. ``progress(done, total, what runs now)``."""
    import numpy as np
    import tensorflow as tf


    size = _size(name, size)
    began = time.perf_counter()
    bb = backbones.load_backbone(name, weights=None, input_size=size)
    tf_fn = bb.forward("avg")
    choices, note = _engine_choices()
    network = f"{name}|{bb.weights_id}"
    runs: dict[str, Callable] = {TENSORFLOW: lambda x: np.asarray(tf_fn(x))}
    runs.update({c.label: engine.FrozenForward(tf_fn, size, network, "avg", choice=c) for c in choices})
    x = np.random.default_rng(0).uniform(0.0, 255.0, (batch_size, size, size, 3)).astype(np.float32)
    done, total = 0, len(runs) * (warmup + batches)

    def step(what: str, run: Callable) -> float:
        nonlocal done
        if progress:
            progress(done, total, what)
        start = time.perf_counter()
        run(x)
        done += 1
        return time.perf_counter() - start

    for label, run in list(runs.items()):
        what = "tracing the network" if label == TENSORFLOW else "converting, compiling, checking parity"
        for _ in range(warmup):
            step(f"warming up {label} ({what})", run)
        if label == TENSORFLOW:
            warmed = time.perf_counter() - began
        elif run.label != label:  # the guard refused it: TensorFlow would be timed under its name
            note = " ".join(filter(None, [note, f"Not timed: {run.reason}."]))
            del runs[label]
            total -= batches
    seconds = dict.fromkeys(runs, 0.0)
    order = list(runs)
    for b in range(batches):
        for label in order[b % len(order):] + order[:b % len(order)]:  # who goes first rotates
            seconds[label] += step(f"batch {b + 1} of {batches}, each engine in turn: {label}", runs[label])
    if progress:
        progress(total, total, "done")
    rates = {label: batch_size * batches / s for label, s in seconds.items()}
    per_batch = seconds[TENSORFLOW] / batches
    result = SpeedResult(
        backbone=name, size=size, batch_size=batch_size, batches=batches,
        images_per_s=rates[TENSORFLOW], seconds_per_batch=per_batch, device=_device(),
        host=platform.node(), cpu_count=settings.usable_cores(), tf_version=tf.__version__,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        warmup_s=max(warmed - warmup * per_batch, 0.0), engines=rates, note=note,
    )
    atomic.write_json(bench_path(name, size), asdict(result))
    return result


def _from_json(data: object) -> SpeedResult | None:
    if not isinstance(data, dict) or data.get("version") not in (1, BENCH_VERSION):
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
    found = [_from_json(atomic.read_json(p)) for p in layout.cache("bench").glob("*.json")]
    return sorted((r for r in found if r is not None), key=lambda r: r.measured_at, reverse=True)


def latest_by_backbone() -> dict[str, SpeedResult]:
    """For each backbone, its newest measurement at the size it is used at by default."""
    default = {s.name: s.default_size for s in list_backbones()}
    out: dict[str, SpeedResult] = {}
    for r in read_all():
        if default.get(r.backbone) == r.size and r.backbone not in out:
            out[r.backbone] = r
    return out


def _engine_order(label: str) -> tuple[bool, str]:
    return label != TENSORFLOW, label  # TensorFlow, the reference, first


def backbone_table():
    """The registry as a DataFrame, with what this machine adds: are the ImageNet weights
    here (or would they need a download), the measured images/s of each engine side by side
    (``rate_column(label)``; always TensorFlow's) and the fastest OpenVINO's over TensorFlow's."""
    import pandas as pd


    measured = latest_by_backbone()
    labels = sorted({TENSORFLOW}.union(*(r.rates for r in measured.values())), key=_engine_order)
    rows = []
    for spec in list_backbones():
        r = measured.get(spec.name)
        rates = r.rates if r else {}
        faster = [v for k, v in rates.items() if k != TENSORFLOW]
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
            **{rate_column(label): rates.get(label, math.nan) for label in labels},  # NaN: a float column
            "speed-up": max(faster) / rates[TENSORFLOW] if faster else math.nan,
            "measured on": r.device if r else "",
        })
    return pd.DataFrame(rows)


def chart_column(table) -> str:
    """The images/s column of ``backbone_table()`` a chart of one speed per backbone shows: the
    engine the app runs now where it was measured, else TensorFlow's."""
    try:
        column = rate_column(engine.choose().label)
    except EngineError:  # a misconfigured engine: the sidebar says so
        column = ""
    return column if column in table else rate_column(TENSORFLOW)


# ---------------------------------------------------------------- extraction estimate

@dataclass(frozen=True)
class ExtractionEstimate:
    """What extracting features of ``images`` photos should take here: a fixed part (building
    the network, the first traced batch) plus a per-photo part (decode, resize, forward pass)."""

    images: int
    fixed_s: float | None  # None: not measured yet, left out of ``seconds``
    per_image_s: float
    basis: str  # where the per-photo figure comes from, in words

    @property
    def seconds(self) -> float:
        return (self.fixed_s or 0.0) + self.images * self.per_image_s


def _decode_seconds(sample, size: int) -> float:
    """Mean seconds to decode and resize one of ``sample`` (paths) as extraction does."""
    times = []
    for path in list(sample)[:8]:
        start = time.perf_counter()
        try:
            load_rgb(path, (size, size))
        except BadImage:
            continue
        times.append(time.perf_counter() - start)
    return sum(times) / len(times) if times else 0.0


def extraction_estimate(name: str, images: int, sample=(), size: int | None = None) -> ExtractionEstimate | None:
    """How long extracting ``images`` photos through ``name`` should take here, from what the
    whole step costs: the network's warm-up (from the speed benchmark), then per photo either
    the measured speed of earlier extractions here or the benchmark's forward pass (on the engine
    the app runs now) plus the decode of a few of ``sample`` timed now. None when nothing was measured for ``name``."""
    size = _size(name, size)
    bench = read(name, size)
    fixed = bench.warmup_s if bench else None
    done, seconds = cache.past_extractions(name, size)
    if done:
        return ExtractionEstimate(images, fixed, seconds / done,
                                  f"the {done:,} photos extracted through this network here before")
    if bench is None:
        return None

    decode = _decode_seconds(sample, size)
    forward = bench.rate(engine.choose().label)  # the engine extraction will run on
    return ExtractionEstimate(
        images, fixed, 1.0 / forward + decode,
        f"the forward pass measured on the Backbones page ({forward:,.0f} images/s)"
        + (f" plus decoding timed on {min(len(list(sample)), 8)} of these photos" if decode else ""))


# ---------------------------------------------------------------- chart labels

LABEL_POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "top left",
                   "bottom right", "bottom left")


def _label_boxes(xs, ys, texts, positions, log_x: bool, width_px: int, height_px: int, font_px: float,
                 sizes=None):
    """Each label's box in plot pixels (left, bottom, right, top) at its ``positions`` entry, and the
    markers' boxes (``sizes``: marker diameters in pixels, 10 when not given)."""
    px_x = [math.log10(max(float(x), 1e-9)) if log_x else float(x) for x in xs]
    px_y = [float(y) for y in ys]

    def scale(values, span_px):
        lo, hi = min(values), max(values)
        return [(v - lo) / ((hi - lo) or 1.0) * span_px * 0.9 for v in values]

    sx, sy = scale(px_x, width_px), scale(px_y, height_px)
    radius = [float(r) / 2 for r in (sizes if sizes is not None else [10.0] * len(sx))]
    line = font_px * 2.0  # a label's height

    def box(i: int, pos: str) -> tuple[float, float, float, float]:
        w, gap = font_px * len(str(texts[i])), radius[i] + 3.0  # a big marker pushes its label out
        vert, horiz = pos.split()
        if vert == "middle" or horiz == "center":
            left = {"center": sx[i] - w / 2, "right": sx[i] + gap, "left": sx[i] - gap - w}[horiz]
        else:
            left = sx[i] if horiz == "right" else sx[i] - w
        bottom = {"top": sy[i] + gap, "bottom": sy[i] - gap - line, "middle": sy[i] - line / 2}[vert]
        return left, bottom, left + w, bottom + line

    markers = [(sx[i] - radius[i], sy[i] - radius[i], sx[i] + radius[i], sy[i] + radius[i]) for i in range(len(sx))]
    return box, markers, sorted(range(len(sx)), key=lambda j: (sx[j], sy[j]))


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_positions(xs, ys, texts, *, sizes=None, log_x: bool = True, width_px: int = 820, height_px: int = 250,
                    font_px: float = 7.0) -> list[str]:
    """A plotly ``textposition`` for each point so that no two text labels overlap where it
    can be helped (near backbones such as EfficientNet-Lite0/1/2 and NASNetMobile, or VGG16
    and VGG19, would print over each other): greedy, left to right, first free place wins."""
    if len(xs) == 0:
        return []
    box, markers, order = _label_boxes(xs, ys, texts, None, log_x, width_px, height_px, font_px, sizes)
    placed: list[tuple[float, float, float, float]] = []
    out = [""] * len(markers)
    for i in order:
        others = placed + [m for j, m in enumerate(markers) if j != i]
        best = min(LABEL_POSITIONS, key=lambda pos: (sum(_overlaps(box(i, pos), o) for o in others),
                                                     LABEL_POSITIONS.index(pos)))
        out[i] = best
        placed.append(box(i, best))
    return out


def label_collisions(xs, ys, texts, positions, *, sizes=None, log_x: bool = True, width_px: int = 820,
                     height_px: int = 250, font_px: float = 7.0) -> int:
    """How many pairs of labels, and labels over other markers, overlap at ``positions``
    (what ``label_positions`` minimises)."""
    if len(xs) == 0:
        return 0
    box, markers, _ = _label_boxes(xs, ys, texts, positions, log_x, width_px, height_px, font_px, sizes)
    boxes = [box(i, p) for i, p in enumerate(positions)]
    labels = sum(_overlaps(boxes[i], boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes)))
    return labels + sum(_overlaps(b, m) for i, b in enumerate(boxes) for j, m in enumerate(markers) if i != j)
