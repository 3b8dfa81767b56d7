"""Scale: extraction time against the number of images (should be a line) and the
peak memory of each job (should stay flat). Every size runs in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .common import REPO, Context, GroupResult, at_least, at_most, attempt, fmt, linear_fit, log, ratio

SIZES = (250, 500, 1000, 2000)
QUICK_SIZES = (50, 100, 150, 200)
R2_TARGET = 0.98
MEMORY_GROWTH_TARGET = 1.10  # peak at the largest size / peak at the smallest
BACKBONE = "efficientnet_lite0"


def dataset_json(ctx: Context) -> str:
    """The scanned dataset, written once, for the job processes to load without rescanning."""
    path = ctx.home / "bench-dataset.json"
    if not path.exists():
        from core import atomic

        atomic.write_json(path, ctx.scan().to_json())
    return str(path)


def extract_job(ctx: Context, images: int, backbone: str = BACKBONE) -> dict:
    """Run ``benchmarks.extract_job`` in a fresh process with an empty data directory
    (memoised per size: the app and scale groups share jobs)."""
    key = f"extract_job:{backbone}:{images}"
    if key in ctx.memo:
        return ctx.memo[key]
    home = ctx.home / "jobs" / f"{backbone}-{images}"
    home.mkdir(parents=True, exist_ok=False)
    env = {**os.environ, "TRANSFER_LAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log(f"extraction job: {backbone}, {images} images, fresh process")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.extract_job", "--dataset-json", dataset_json(ctx),
                           "--images", str(images), "--backbone", backbone, "--seed", str(ctx.seed)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"extract_job exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    out = json.loads(lines[-1])
    if out["images"] != images:
        raise RuntimeError(f"extract_job extracted {out['images']} images, asked for {images}")
    ctx.memo[key] = out
    return out


def peak_mib(job: dict) -> float | None:
    peak = job["peak"].get("vmhwm") or job["peak"].get("ru_maxrss")
    return peak / 2**20 if peak else None


def rss_at(job: dict, fraction: float) -> float | None:
    """Resident memory (MiB) once ``fraction`` of the job's images were done."""
    curve = [(done, rss) for done, rss in job.get("rss_curve", []) if rss]
    if not curve:
        return None
    goal = fraction * job["images"]
    return next((rss for done, rss in curve if done >= goal), curve[-1][1]) / 2**20


def run(ctx: Context) -> GroupResult:
    result = GroupResult("scale", ctx.quick)
    sizes = QUICK_SIZES if ctx.quick else SIZES
    if ctx.quick:
        result.notes.append(f"--quick: sizes {', '.join(map(str, sizes))} instead of "
                            f"{', '.join(map(str, SIZES))}")
    jobs = {}
    for n in sizes:
        job = attempt(result, f"extract {n} images", extract_job, ctx, n)
        if job:
            jobs[n] = job
    rows = [[n, j["seconds"], j.get("cpu_seconds"), j["images_per_s"], (j["peak_before_extract"].get("vmhwm") or 0) / 2**20 or None,
             rss_at(j, 0.25), rss_at(j, 0.5), rss_at(j, 1.0), peak_mib(j)] for n, j in jobs.items()]
    result.tables[f"extraction time and memory, {BACKBONE}@224, one fresh process per size"] = (
        ["images", "seconds", "CPU seconds", "images/s", "peak RSS before extraction MiB", "RSS at 25% MiB", "RSS at 50% MiB",
         "RSS at 100% MiB", "peak RSS MiB"], rows)
    result.figures["jobs"] = {str(n): j for n, j in jobs.items()}
    if len(jobs) >= 2:
        ns = sorted(jobs)
        line = linear_fit(ns, [jobs[n]["seconds"] for n in ns])
        result.figures["linear_fit"] = line
        result.add("scale: time vs images, linear fit R^2",
                   f"wall: slope {fmt(line['slope'] * 1000 if line['slope'] is not None else None)} ms/image, "
                   f"intercept {fmt(line['intercept'])} s", line["r2"], f">= {R2_TARGET}",
                   at_least(line["r2"], R2_TARGET))
        if all(jobs[n].get("cpu_seconds") is not None for n in ns):
            cpu_line = linear_fit(ns, [jobs[n]["cpu_seconds"] for n in ns])
            result.figures["linear_fit_cpu_time"] = cpu_line
            result.add("scale: CPU time vs images, linear fit R^2",
                       f"CPU: slope {fmt(cpu_line['slope'] * 1000 if cpu_line['slope'] is not None else None)} "
                       f"ms/image, intercept {fmt(cpu_line['intercept'])} s (insensitive to the machine's load)",
                       cpu_line["r2"], "informative")
        growth = ratio(peak_mib(jobs[ns[-1]]), peak_mib(jobs[ns[0]]))
        result.figures["memory_growth"] = growth
        result.add(f"scale: peak RSS {ns[-1]} / {ns[0]} images",
                   f"{fmt(peak_mib(jobs[ns[-1]]))} MiB / {fmt(peak_mib(jobs[ns[0]]))} MiB", growth,
                   f"<= {MEMORY_GROWTH_TARGET}", at_most(growth, MEMORY_GROWTH_TARGET))
        big = jobs[ns[-1]]
        within = ratio(rss_at(big, 1.0), rss_at(big, 0.25))
        result.figures["memory_within_largest"] = within
        result.add(f"scale: RSS at 100% / at 25% of {ns[-1]} images",
                   f"{fmt(rss_at(big, 1.0))} MiB / {fmt(rss_at(big, 0.25))} MiB (one process)", within,
                   f"<= {MEMORY_GROWTH_TARGET}", at_most(within, MEMORY_GROWTH_TARGET))
    return result
