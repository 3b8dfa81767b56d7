"""int8 against float32 on this CPU: EfficientNet-Lite0 runs (feature extraction, fine-tuning) on the
dataset, each exported as int8 with NNCF (``core.serve.quantize``, calibrated on training photos) and
measured against its float32 OpenVINO IR on the same validation photos, in the same process.

Items: 1 feature extraction, 2 fine-tuning. Targets: at most 1 point of accuracy lost, top-1
agreement >= 98 %, and (aim) int8 throughput >= 1.5x float32 (batch 16, OpenVINO, this CPU).
``python -m benchmarks.int8 --run RUN_DIR ...`` measures finished runs instead of training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .common import Context, GroupResult, at_least, at_most, log

BACKBONE = "efficientnet_lite0"
VALIDATION_PHOTOS = 500  # measured on (seeded, both classes); the whole split on a quiet machine
QUICK_PER_CLASS = 50


def measure(run, result: GroupResult, label: str) -> dict:
    """Export ``run``'s model as int8 and add its rows; returns the report's figures."""
    from core.serve import export, inference, quantize

    data = export.run_int8_data(run, VALIDATION_PHOTOS)
    if data is None:
        raise RuntimeError(f"run {run.id} has no predictions or dataset to measure on")
    model = inference.load_model_file(run.model_path)
    out = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    start = time.perf_counter()
    _, saved_dir = export.export_savedmodel(model, out, "model")
    _, report = quantize.export_int8(saved_dir, out, data.calibration, data.validation, data.labels, data.classes,
                                     int(model.input_shape[1]))
    figures = {**report.to_dict(), "export_seconds": time.perf_counter() - start, "run": run.id}
    drop_points = report.accuracy_drop * 100
    result.add(f"{label}: accuracy int8 vs float32 ({report.images} validation photos)",
               f"{report.int8_accuracy:.3f} vs {report.float_accuracy:.3f} ({-drop_points:+.1f} points)",
               drop_points, "<= 1 point lost", at_most(drop_points, 1.0))
    result.add(f"{label}: top-1 agreement", f"{report.agreement:.3f}", report.agreement, ">= 0.98",
               at_least(report.agreement, 0.98))
    result.add(f"{label}: throughput int8 / float32 (batch 16)",
               f"{report.speedup:.2f}x ({report.int8_speed['photos_per_s']:.1f} / "
               f"{report.float_speed['photos_per_s']:.1f} photos/s)", report.speedup, ">= 1.5 (aim)",
               at_least(report.speedup, 1.5))
    result.add(f"{label}: single-photo p50 latency float32 / int8",
               f"{report.float_speed['p50_ms']:.1f} / {report.int8_speed['p50_ms']:.1f} ms",
               report.float_speed["p50_ms"] / max(report.int8_speed["p50_ms"], 1e-9))
    result.add(f"{label}: size int8 / float32", f"{report.int8_bytes / 1e6:.1f} / {report.float_bytes / 1e6:.1f} MB",
               report.int8_bytes / max(report.float_bytes, 1))
    return figures


def run(ctx: Context) -> GroupResult:
    from core.runs.store import RunStore
    from core.train import registry
    from core.runs.worker import train_run

    result = GroupResult("int8", ctx.quick)
    limit = ctx.per_class or (QUICK_PER_CLASS if ctx.quick else 0)
    for item, strategy in (("1", "feature_extraction"), ("2", "fine_tune")):
        if not ctx.wants(item):
            continue
        cfg = registry.make_config(strategy, dataset=str(ctx.dataset), backbone=BACKBONE, seed=ctx.seed,
                                   limit_per_class=limit)
        run_ = RunStore().create(cfg.to_dict(), name=f"int8 benchmark {strategy}")
        log(f"int8: training {strategy}")
        run_.set_status("running")
        train_run(run_)
        run_.set_status("done")
        result.figures[strategy] = measure(run_, result, f"{item} {registry.label(strategy)}")
    result.notes.append("float32: the OpenVINO IR of the same SavedModel at INFERENCE_PRECISION_HINT f32; int8: "
                        "nncf.quantize (preset MIXED) on up to 300 training photos; both on OpenVINO's CPU plugin.")
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure finished runs (their folders) without training: ``python -m benchmarks.int8 --run DIR``."""
    from core.runs.store import Run

    from .common import format_group

    p = argparse.ArgumentParser(prog="python -m benchmarks.int8")
    p.add_argument("--run", action="append", required=True, help="a finished run's folder (repeatable)")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    result = GroupResult("int8", False)
    start = time.perf_counter()
    for folder in args.run:
        run_ = Run(folder)
        result.figures[run_.id] = measure(run_, result, f"{run_.config.get('strategy')}")
    result.seconds = time.perf_counter() - start
    print(format_group(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result.to_json(), indent=1, default=str))
    return 1 if any(r.ok is False for r in result.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
