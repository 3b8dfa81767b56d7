"""The advisor's section and the model card of the chosen run: the run the paired verdicts
mark best (a resolved winner, or the cheapest of those the data cannot tell apart), with what
it is for, what it saw, its figures with their intervals and what limits them."""

from __future__ import annotations

import pandas as pd

from core import verdicts
from core.data import stats
from core.runs import compare
from core.runs.progress import compact, format_seconds
from core.report.page import box, bullets, esc, number, pct, table
from core.report.runs import RunFacts, flag, interval_half_width, per_class_rows
from core.train import registry

NOT_ASKED = ("The advisor was not asked for this report. Its measurement (linear probes on a sample's features from "
             "each backbone, a pixel baseline, sometimes a short from-scratch trial) takes minutes and is not stored, "
             "so the report does not run it by itself: ask the advisor on the Strategies page before downloading the "
             "report, or make it with python -m core report --advise.")


def chosen(facts: list[RunFacts]) -> RunFacts | None:
    """The run the paired verdicts mark best; with runs scored on several sets of validation images
    (one best each), the most accurate of those."""
    best = [f for f in facts if f.verdict is not None and bool(f.verdict["best"])]
    return max(best, key=lambda f: float(f.verdict["accuracy"])) if best else None


def advice_section(advice, facts: list[RunFacts], note: str = NOT_ASKED) -> str:
    """The advisor's measurements and pick, checked against the runs; ``note`` when there is none."""
    if advice is None:
        return box("note", esc(note))
    pick = registry.label(advice.strategy)
    on = f" on {advice.backbone}" if registry.uses_backbone(advice.strategy) and advice.backbone else ""
    extra = (f", features from block {advice.feature_layer}" if advice.feature_layer else "") + (
        f", unfreezing about the top {advice.unfreeze_layers} layers" if advice.unfreeze_layers else "")
    parts = [box("good", f"Recommended: <b>{esc(pick + on + extra)}</b> (dataset {esc(advice.size)}, "
                         f"{esc(advice.similarity)} to ImageNet)."),
             "<h3>What the advisor measured</h3>",
             table(["candidate", "accuracy on the sample (95% CI)", "standing", "predicted time on all images"],
                   [[c["candidate"], verdicts.interval_text(c["accuracy"], c.get("ci_low"), c.get("ci_high")),
                     "★ best" if c.get("best") else ("within noise of the best" if c.get("resolved") is False else
                                                     "resolved below the best" if c.get("resolved") else "–"),
                     format_seconds(number(c.get("predicted_seconds")))] for c in advice.candidates]),
             "<h3>Why</h3>", bullets(advice.reasons), "<h3>The textbook 2x2 table</h3>",
             table(["dataset size", *advice.table().columns],
                   [[size, *row] for size, row in advice.table().iterrows()])]
    rows = pd.DataFrame([f.row for f in facts]) if facts else pd.DataFrame(columns=compare.COLUMNS)
    if not rows.empty:
        unpretrained = [s for s in registry.STRATEGIES if not registry.uses_backbone(s)]
        mine = rows[(rows["backbone"] == advice.backbone) | rows["strategy"].isin(unpretrained)]
        preds = {f.run_id: f.predictions for f in facts}
        check = compare.advisor_verdict(mine, advice.strategy, preds.get)
        kind = "note" if check["agreed"] is None else "good" if check["agreed"] else "warn"
        parts.append("<h3>Checked against the runs</h3>" + box(kind, esc(check["message"])))
    return "".join(parts)


def model_card(facts: list[RunFacts], ds, pairs=None, advice=None) -> str:
    """The chosen run's card, or why there is none yet."""
    f = chosen(facts)
    if f is None:
        return box("note", "No finished run yet, so no model to describe.")
    r, m = f.row, f.metrics
    classes = list(m.get("classes") or ds.classes)
    counts = ds.counts()
    n = int(number(r["val_images"]) or 0)
    acc_ci = f.accuracy_ci() or (None, None)
    bal, bal_ci = f.balanced()
    group = [g for g in facts if g.verdict is not None and g.verdict["group"] == f.verdict["group"]]
    leader = next((g for g in group if g.leader), f)
    pretrained = registry.uses_backbone(r["strategy"])
    weights = f" ({r['weights']} weights)" if pretrained and r["weights"] else ""
    model = (f"{r['Strategy']} on {r['backbone']}{weights}" if pretrained
             else f"{r['Strategy']} ({r['backbone']}, {r['weights']})")
    size = number(r["input_size"])
    parts = [f"<h3>{esc(f.label)}</h3><dl>",
             _item("Model", f"{model}" + (f", {size:g} px input" if size else "")),
             _item("Run", f"{f.run_id}" + (f", seed {r['seed']}" if r["seed"] is not None else "")),
             _item("Why this run", leader.verdict["verdict"] if leader.verdict else "the only finished run"),
             _item("Intended use", f"Sorting photos like those of the dataset '{ds.name}' into its {len(classes)} "
                                   f"classes ({', '.join(classes)}). It has no 'none of these' answer: a photo of "
                                   "anything else still gets one of these classes."),
             _item("Data", f"Trained on {sum(counts['train'].values()):,} images, validated on {n:,} "
                           f"({'a seeded stratified hold-out' if ds.split_source == 'stratified' else 'the validation folder'})."),
             _item("Accuracy", verdicts.interval_text(number(r["val_accuracy"]), *acc_ci)),
             _item("Balanced accuracy", verdicts.interval_text(bal, *(bal_ci or (None, None))) if bal is not None
                   else "not recorded"),
             _item("Macro F1", f"{number(r['macro_f1']):.3f}" if number(r["macro_f1"]) is not None else "not recorded"),
             _item("Size and cost", f"{compact(r['trainable_params']) or '?'} trainable parameters"
                                    + (f" of {compact(r['total_params'])}" if compact(r["total_params"]) else "")
                                    + f"; trained in {format_seconds(number(r['train_seconds']))}"),
             "</dl>"]
    rows = per_class_rows(m)
    if rows:
        parts.append(table(["class", "precision", "recall", "F1", "validation images"], rows, numeric={1, 2, 3, 4}))
    parts.append("<h3>Known limits</h3>" + bullets(limits(f, ds, n, pairs, advice, group)))
    return "".join(parts)


def _item(term: str, text: str) -> str:
    return f"<dt>{esc(term)}</dt><dd>{esc(text)}</dd>"


def limits(f: RunFacts, ds, n: int, pairs, advice, group: list[RunFacts]) -> list[str]:
    """What a reader of the card should keep in mind, in plain words."""
    r = f.row
    acc_ci = f.accuracy_ci()
    out = [f"Validation size: {n:,} images. A 95% interval on {n:,} images is up to ±{interval_half_width(n):.1%} "
           "wide" + (f"; this run's interval runs from {pct(acc_ci[0])} to {pct(acc_ci[1])}." if acc_ci else ".")]
    counts = ds.counts()["train"]
    ratio = registry.imbalance_ratio(counts)
    worst = number(r["worst_class_recall"])
    out.append(f"Class balance: largest to smallest training class {ratio:.1f}:1"
               + (f"; the weakest class, '{r['worst_class']}', is recognised {worst:.1%} of the time." if worst is not None
                  else ".") + (" Read balanced accuracy, not accuracy." if ratio >= registry.IMBALANCE_RATIO else ""))
    if pairs is not None:
        leaks = int(pairs["leak"].sum())
        out.append(f"{leaks:,} picture(s) appear in both train and validation: the figures are too optimistic."
                   if leaks else "No train/validation leaks were found (exact and near duplicates checked).")
    if advice is not None:
        skill = number(advice.figures.get("skill"))
        out.append(f"ImageNet-like: the advisor measured the data as {advice.similarity} to ImageNet"
                   + (f" (probe skill {skill:.2f} over chance)" if skill is not None else "") + ".")
    elif registry.uses_backbone(r["strategy"]):
        out.append("ImageNet-like: the model starts from a backbone's ImageNet features; how close these photos are "
                   "to ImageNet was not measured for this report (the advisor measures it).")
    else:
        out.append("ImageNet-like: not relevant; this model learnt from this dataset alone (no pretrained weights).")
    close = [g.label for g in group if g is not f and g.verdict is not None and flag(g.verdict["resolved"]) is False]
    if close:
        out.append("Not resolved from: " + ", ".join(close) + ". The validation images cannot tell these apart; "
                   "another seed or more validation images might order them differently.")
    out.append("One training run: its seed, data and settings are in the run's config; photos unlike the dataset "
               "(other lighting, cameras, subjects) may score lower than these figures.")
    if f.metrics.get("model_kept") is False:
        out.append("This run is one fold of a repeated split and kept no model file: to use the model, train the "
                   "strategy once on the whole split (or launch the folds keeping their models).")
    if ds.bad_files:
        out.append(f"{len(ds.bad_files):,} unreadable file(s) were skipped in the dataset.")
    if stats.unvalidated(ds):
        out.append(stats.unvalidated(ds))
    return out
