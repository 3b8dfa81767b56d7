"""A dataset's runs as the report shows them: each run's figures with their 95% intervals,
the paired verdicts, training curves and confusion matrices, read from the run store
through the same functions the Strategies and Training curves pages use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core import verdicts
from core.runs import compare, curves
from core.runs.progress import compact, format_seconds
from core.report import charts
from core.report.page import box, bullets, esc, figure, figure_with_interval, number, table


@dataclass
class RunFacts:
    """What the report reads of one run, once: its comparison row, metrics, history, predictions
    and, for a finished run, its paired verdict."""

    row: dict
    metrics: dict = field(default_factory=dict)
    history: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    verdict: dict | None = None
    label: str = ""
    leader: bool = False  # the most accurate of the runs scored on its validation images

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])

    @property
    def done(self) -> bool:
        return self.row["state"] == "done" and number(self.row["val_accuracy"]) is not None

    def accuracy_ci(self) -> tuple | None:
        lo, hi = number(self.row["val_ci_low"]), number(self.row["val_ci_high"])
        return (lo, hi) if lo is not None and hi is not None else None

    def balanced(self) -> tuple[float | None, tuple | None]:
        """Balanced accuracy and its 95% interval: stored with the metrics, or from the per-image
        predictions for runs evaluated before the interval was stored."""
        value, ci = number(self.metrics.get("balanced_accuracy")), self.metrics.get("balanced_accuracy_ci")
        p = self.predictions
        if (value is None or not ci) and p is not None and {"true", "predicted"} <= set(p.columns) and len(p):
            classes = sorted(set(p["true"].astype(str)) | set(p["predicted"].astype(str)))
            index = {c: i for i, c in enumerate(classes)}
            y = p["true"].astype(str).map(index).to_numpy()
            pred = p["predicted"].astype(str).map(index).to_numpy()
            value = verdicts.balanced_accuracy(y, pred, len(classes))
            ci = verdicts.balanced_interval(y, pred, len(classes))
        return value, (tuple(ci) if ci else None)


def on_dataset(runs, root: str) -> list:
    """The runs trained on the dataset at ``root`` (the same folder, however the path was written)."""
    def same(path) -> bool:
        if not path:
            return False
        return str(path) == str(root) or os.path.realpath(str(path)) == os.path.realpath(str(root))
    return [r for r in runs if same(r.config.get("dataset"))]


def gather(runs) -> list[RunFacts]:
    """Every run's facts, newest first as given, with the paired verdicts of the finished ones."""
    by_id = {r.id: r for r in runs}
    table_ = compare.comparison_table(runs)
    facts = []
    for row in table_.to_dict("records"):
        run = by_id[row["run_id"]]
        done = row["state"] == "done"
        facts.append(RunFacts(row, (run.metrics() or {}) if done else {}, _safe(run.history) if done else None,
                              _safe(run.predictions) if done else None))
    names = [str(f.row["name"]) for f in facts]
    for f in facts:
        f.label = f"{f.row['name']} · {f.run_id[-4:]}" if names.count(str(f.row["name"])) > 1 else str(f.row["name"])
    preds = {f.run_id: f.predictions for f in facts}
    paired = compare.paired_verdicts(compare.finished(table_), preds.get)
    leaders = set(paired.groupby("group").head(1)["run_id"])  # each group's rows come best first
    for v in paired.to_dict("records"):
        f = next(f for f in facts if f.run_id == v["run_id"])
        f.verdict, f.leader = v, v["run_id"] in leaders
    return facts


def _safe(read):
    try:
        return read()
    except (OSError, ValueError, pd.errors.ParserError):  # a damaged file: the run shows without it
        return None


def flag(value) -> bool | None:
    """A verdict's True / False / None as read back from a frame (numpy bools, NaN for none)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value)


def _standing(f: RunFacts) -> str:
    """Where a run stands in the paired verdicts, in a few words."""
    v = f.verdict
    if v is None:
        return "–"
    mark = "★ best; " if bool(v["best"]) else ""
    resolved = flag(v["resolved"])
    if resolved is None:
        return mark + ("leader" if f.leader else "not paired (other images)")
    return mark + ("behind the leader (resolved)" if resolved else "within noise of the leader")


def runs_section(facts: list[RunFacts]) -> str:
    """The table of every run (figures with intervals) and the accuracy chart of the finished ones."""
    if not facts:
        return box("note", "No run on this dataset yet: train a strategy (Strategies page or "
                           "<code>python -m core train</code>) and make the report again.")
    rows = []
    for f in facts:
        r = f.row
        acc_ci = f.accuracy_ci() or (None, None)
        bal, bal_ci = f.balanced()
        worst = number(r["worst_class_recall"])
        rows.append([f.label, f"{r['Strategy']} · {r['backbone']}", r["state"],
                     figure_with_interval(r["val_accuracy"], *acc_ci) if f.done else "–",
                     figure_with_interval(bal, *(bal_ci or (None, None))) if f.done and bal is not None else "–",
                     f"{worst:.1%} ({r['worst_class']})" if worst is not None else "–",
                     f"{number(r['macro_f1']):.3f}" if number(r["macro_f1"]) is not None else "–",
                     format_seconds(number(r["train_seconds"]), short=True) if number(r["train_seconds"]) is not None else "–",
                     compact(r["trainable_params"]) or "–",
                     f"{int(r['val_images']):,}" if number(r["val_images"]) is not None else "–", _standing(f)])
    parts = [table(["run", "model", "state", "accuracy", "balanced accuracy", "worst class recall", "macro F1",
                    "train time", "trainable params", "val images", "standing"], rows, numeric={3, 4, 6, 7, 8, 9}),
             f'<p class="muted">Intervals: accuracy by the {esc(verdicts.METHODS["accuracy"])}; balanced accuracy '
             f'(mean recall over classes) by a {esc(verdicts.METHODS["balanced_accuracy"])}.</p>']
    failed = [f for f in facts if f.row["state"] == "failed"]
    if failed:
        parts.append(box("warn", "Failed runs: " + "; ".join(
            f"<b>{esc(f.label)}</b>: {esc(f.row['reason'] or 'no reason recorded')}" for f in failed)))
    done = [f for f in facts if f.done]
    if done:
        ranked = sorted(done, key=lambda f: -float(f.row["val_accuracy"]))
        parts.append(figure(charts.accuracy_figure([
            {"label": f.label, "accuracy": f.row["val_accuracy"], "accuracy_ci": f.accuracy_ci(),
             "balanced": f.balanced()[0], "balanced_ci": f.balanced()[1], "best": bool(f.verdict and f.verdict["best"])}
            for f in ranked])))
    return "".join(parts)


def verdicts_section(facts: list[RunFacts]) -> str:
    """The paired verdicts in words (McNemar exact, Holm over the pairs), leader first."""
    done = [f for f in facts if f.verdict is not None]
    if not done:
        return box("note", "No finished run yet: nothing to compare.")
    paired = pd.DataFrame([f.verdict for f in done]).sort_values(["group", "accuracy"], ascending=[True, False])
    lines = compare.verdict_lines(paired)
    groups = paired["group"].nunique()
    parts = [bullets(lines),
             f'<p class="muted">Method: {esc(verdicts.METHODS["paired"])}. "Resolved" means the validation images '
             "tell the two apart at the 5% level; a lead that is not resolved may be chance. The run marked best "
             "is a resolved winner, or else the cheapest (shortest training) of those within noise of the leader.</p>"]
    if groups > 1:
        parts.append(box("note", f"These runs were scored on {groups} different sets of validation images; runs on "
                                 "different images are never paired, so compare their intervals only."))
    return "".join(parts)


def curves_section(facts: list[RunFacts]) -> str:
    """Accuracy and loss per epoch of every run with a history."""
    drawn = [(f.label, curves.curves_frame(f.history, 0.0, f.label), curves.fine_tune_boundary(f.history, f.metrics))
             for f in facts if f.history is not None and not f.history.empty]
    drawn = [d for d in drawn if not d[1].empty]
    if not drawn:
        return box("note", "No run recorded a history per epoch (runs that fit in one step, such as the pixel "
                           "baseline, have none).")
    notes = []
    for f in facts:
        hint = curves.overfit_hint(f.history) if f.history is not None else None
        if hint:
            notes.append(f"{f.label}: {hint['message']}")
        start = curves.fine_tune_boundary(f.history, f.metrics) if f.history is not None else None
        if start:
            notes.append(f"{f.label}: fine-tuning (base unfrozen) from epoch {start:g}.")
    return (figure(charts.curves_figure(drawn))
            + '<p class="muted">Solid: validation; dotted: training. Runs keep their best epoch.</p>' + bullets(notes))


def confusion_section(facts: list[RunFacts]) -> str:
    """One confusion matrix per finished run (rows the true class, columns the predicted one)."""
    cells = []
    for f in facts:
        if not f.done:
            continue
        cm = curves.confusion_frame(f.metrics)
        if cm.empty:
            continue
        cells.append(f"<div>{figure(charts.confusion_figure(cm, f.label), toolbar=False)}</div>")
    if not cells:
        return box("note", "No finished run stored a confusion matrix.")
    return ('<p class="muted">Rows: the true class; columns: what the model answered. The diagonal is right.</p>'
            f'<div class="grid">{"".join(cells)}</div>')


def per_class_rows(metrics: dict) -> list[list]:
    frame = curves.per_class_frame(metrics)
    return [[r["class"], *(f"{v:.1%}" if number(v) is not None else "–" for v in (r["precision"], r["recall"])),
             f"{number(r['f1']):.3f}" if number(r["f1"]) is not None else "–",
             int(r["support"]) if number(r["support"]) is not None else "–"] for _, r in frame.iterrows()]


def interval_half_width(n: int) -> float:
    """The widest a 95% Wilson interval gets on ``n`` images (at 50%): what the validation size resolves."""
    lo, hi = verdicts.wilson(n // 2, n) if n else (np.nan, np.nan)
    return float((hi - lo) / 2)
