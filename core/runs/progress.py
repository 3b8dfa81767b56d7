"""How a run is doing, in words: phases, progress lines, durations and counts."""

from __future__ import annotations

import math

from core.runs.compare import run_row

PHASES = {
    "head": "Training the head",
    "train": "Training",
    "fine_tune": "Fine-tuning",
    "probe": "Fitting the linear probe",
    "scan": "Scanning the dataset",
    "load": "Loading the backbone",
    "evaluate": "Evaluating",
}


def format_seconds(seconds, short: bool = False) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min`` (short: ``45 s``, ``3.1 min``, ``1.0 h``); ``?`` when unknown."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60 or (short and s < 120):
        return f"{s} s"
    if short:
        return f"{seconds / 60:.1f} min" if s < 3600 else f"{seconds / 3600:.1f} h"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def compact(n) -> str:
    """``1234567`` -> ``1.2M``, ``6001`` -> ``6.0k``, ``812`` -> ``812``; empty when unknown."""
    v = as_number(n)
    if v is None:
        return ""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{suffix}"
    return f"{v:g}"


def as_number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def progress_summary(progress: dict, state: str = "running") -> tuple[float | None, str]:
    """(fraction done of the current phase or None, one line of text) for a job's progress."""
    if state == "queued":
        return None, "Waiting in the queue"
    if not progress:
        return None, "Starting (loading TensorFlow)…"
    phase = str(progress.get("phase") or "")
    parts: list[str] = []
    fraction = None
    rate, eta = as_number(progress.get("images_per_s")), as_number(progress.get("eta_s"))
    if phase.startswith("extract"):
        split = phase.split(" ", 1)[1] if " " in phase else ""
        parts.append(f"Extracting features ({split})" if split else "Extracting features")
        done, total = as_number(progress.get("done")), as_number(progress.get("total"))
        if done is not None and total:
            fraction = done / total
            parts.append(f"{int(done):,}/{int(total):,} images")
    elif "epoch" in progress:
        parts.append(PHASES.get(phase, phase or "Training"))
        epoch, epochs = as_number(progress.get("epoch")), as_number(progress.get("epochs"))
        batch, batches = as_number(progress.get("batch")), as_number(progress.get("batches"))
        parts.append(f"epoch {int(epoch)}/{int(epochs)}" if epoch and epochs else f"epoch {int(epoch or 0)}")
        if batch and batches:
            parts.append(f"batch {int(batch)}/{int(batches)}")
        if epoch and epochs:
            within = (batch / batches) if batch and batches else 1.0
            fraction = ((epoch - 1) + min(within, 1.0)) / epochs
    else:
        parts.append(str(progress.get("message") or PHASES.get(phase, phase) or "Working"))
        done, total = as_number(progress.get("done")), as_number(progress.get("total"))
        if done is not None and total:
            fraction = done / total
    if rate:
        parts.append(f"{rate:,.1f} images/s")
    if eta is not None and fraction is not None and fraction < 1:
        parts.append(f"ETA {format_seconds(eta)}")
    return (None if fraction is None else float(min(max(fraction, 0.0), 1.0))), " · ".join(parts)


def run_summary(run) -> list[str]:
    """A run in a few lines for a terminal: what it is, how it stands, what it reached, where it is."""
    row = run_row(run)
    state = row["state"] + (f" ({row['reason']})" if row.get("reason") else "")
    lines = [f"{row['name']}  [{run.id}]", f"state:     {state}",
             f"strategy:  {row['Strategy']} · {row['backbone']} ({row['weights']})"]
    if row["state"] == "running":
        lines.append(f"progress:  {progress_summary(run.progress(), 'running')[1]}")
    accuracy = as_number(row.get("val_accuracy"))
    if accuracy is not None:
        f1 = as_number(row.get("macro_f1"))
        lines.append(f"accuracy:  {accuracy:.1%} on {int(as_number(row.get('val_images')) or 0):,} validation images"
                     + (f", macro F1 {f1:.3f}" if f1 is not None else ""))
    seconds = as_number(row.get("train_seconds"))
    if seconds is not None:
        epochs = as_number(row.get("epochs_run"))
        lines.append(f"time:      {format_seconds(seconds)}" + (f", {int(epochs)} epochs" if epochs else ""))
    if row.get("started_by"):
        lines.append(f"started by {row['started_by']}")
    lines += [f"dataset:   {row['dataset']}", f"folder:    {run.dir}"]
    return lines
