"""How runs read on screen: one-line labels for pickers and the ticks of a log time axis.

Pure functions (no Streamlit, no TensorFlow), so the pages that draw runs say the same
thing the same way and a test can hold them to it.
"""

from __future__ import annotations

import math

from core.runs.progress import as_number
from core.verdicts import interval_text, METHODS, wilson


def run_choice_label(name: str, strategy_label: str, backbone: str, val_accuracy=None) -> str:
    """A run as one line in a picker: its name, then its strategy (as the pages name it) and
    backbone only where the name does not already say them (default names are
    "Strategy · backbone"), then its accuracy. A from-scratch run has no backbone to name."""
    parts = [name]
    text = name.lower()
    if strategy_label and strategy_label.lower() not in text:
        parts.append(strategy_label)
    if backbone and backbone.lower() not in text:
        parts.append(backbone)
    acc = as_number(val_accuracy)
    if acc is not None:
        parts.append(f"val acc {acc:.3f}")
    return " · ".join(parts)


def seconds_tick(t: float) -> str:
    """``0.5 s``, ``20 s``, ``2 min``, ``1.5 h``: short enough for an axis."""
    if t < 60:
        return f"{t:g} s"
    if t < 3600:
        return f"{t / 60:g} min"
    return f"{t / 3600:g} h"


# Round durations a clock reads well: seconds, then minutes, then hours.
_NICE_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 60, 120, 300, 600, 1200, 1800, 3600,
                 7200, 18000, 36000, 86400, 172800, 432000)


def log_ticks(values, most: int = 8) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a log axis of seconds: round durations across the data's
    range, so a range inside one decade (3 s to 40 s) still has labelled ticks."""
    finite = [v for v in (as_number(x) for x in values) if v is not None and v > 0]
    if not finite:
        return [], []
    lo, hi = min(finite), max(finite)
    inside = [t for t in _NICE_SECONDS if lo / 2 <= t <= hi * 1.5]  # ticks outside the drawn range are not shown
    # and a tick at or beyond each end, so every run sits between labelled ticks
    around = [t for t in _NICE_SECONDS if t <= lo][-1:] + [t for t in _NICE_SECONDS if t >= hi][:1]
    inside = sorted(set(inside) | set(around))
    thinned = inside[::max(1, math.ceil(len(inside) / most))]
    inside = thinned if thinned[-1] == inside[-1] else thinned + inside[-1:]
    return [float(t) for t in inside], [seconds_tick(t) for t in inside]


def chip_labels(rows, tail_first: bool = True) -> dict[str, str]:
    """Labels for runs picked in a multiselect: the accuracy of a finished run or the state of another
    first (a chip cuts long text at its end), then the run's name exactly as the Strategies page's table
    shows it (so typing a strategy's name, "Feature extraction", finds its runs on every page); the run
    id's last four characters only where two labels would otherwise read the same. ``tail_first=False``:
    the name first, for a chart's legend.
    ``rows``: dicts (or frame rows) with ``run_id``, ``name``, ``state``, ``val_accuracy``."""
    labels: dict[str, str] = {}
    for row in rows:
        name = str(row["name"])
        acc = as_number(row["val_accuracy"])
        tail = f"{acc:.1%}" if row["state"] == "done" and acc is not None else str(row["state"])
        labels[str(row["run_id"])] = f"{tail} · {name}" if tail_first else f"{name} · {tail}"
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return {rid: (f"{label} · {rid[-4:]}" if seen[label] > 1 else label) for rid, label in labels.items()}


def uncertainty_lines(metrics: dict | None) -> list[str]:
    """A finished run's figures with their 95% intervals and the method of each, for ``show``:
    accuracy (Wilson) and macro F1, balanced accuracy (bootstrap within classes) and the worst
    class's recall, and whether the classes were weighted."""
    m = metrics or {}
    acc, n = as_number(m.get("val_accuracy")), int(as_number(m.get("val_images")) or 0)
    if acc is None:
        return []
    ci = m.get("val_accuracy_ci") or (wilson(int(round(acc * n)), n) if n else None)
    f1 = as_number(m.get("macro_f1"))
    lines = [f"accuracy:  {interval_text(acc, *(ci or (None, None)))} on {n:,} validation images "
             f"({METHODS['accuracy']})" + (f", macro F1 {f1:.3f}" if f1 is not None else "")]
    balanced, worst = as_number(m.get("balanced_accuracy")), as_number(m.get("worst_class_recall"))
    if balanced is not None:
        lines.append(f"balanced:  {interval_text(balanced, *(m.get('balanced_accuracy_ci') or (None, None)))} "
                     "(bootstrap within classes)"
                     + (f"; worst class recall {worst:.1%} ({m.get('worst_class', '?')})" if worst is not None else ""))
    if "class_weights" in m:
        ratio = as_number(m.get("imbalance_ratio"))
        lines.append(f"weights:   class weights {'on' if m['class_weights'] else 'off'}"
                     + (f" (largest to smallest class {ratio:.1f}:1 in training)" if ratio else ""))
    return lines


def with_uncertainty(summary: list[str], metrics: dict | None) -> list[str]:
    """``core.runs.progress.run_summary``'s lines with its accuracy line replaced by the figures with
    their intervals (``uncertainty_lines``)."""
    extra = uncertainty_lines(metrics)
    if not extra:
        return summary
    at = next((i for i, line in enumerate(summary) if line.startswith("accuracy:")), len(summary))
    return [*summary[:at], *extra, *summary[at + 1:]]
