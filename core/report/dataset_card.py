"""The report's dataset card: what the Dataset page shows, as a section of the report
(counts per class and split, imbalance, unreadable files, duplicates and leaks)."""

from __future__ import annotations

from core.data import stats
from core.data.dataset import SPLITS
from core.report import charts
from core.report.page import box, esc, figure, table
from core.train import registry


def duplicate_pairs(ds):
    """``stats.duplicates`` (hashes cached per dataset fingerprint, so the second report is quick),
    or the reason it could not be computed."""
    try:
        return stats.duplicates(ds), None
    except Exception as exc:  # a duplicate check that fails leaves the rest of the report intact
        return None, f"Duplicates could not be checked: {exc}"


def dataset_card(ds, pairs=None, pairs_error: str | None = None) -> str:
    """The card as HTML (a figure among it)."""
    counts = ds.counts()
    rows = [[c, *(counts[s][c] for s in SPLITS), sum(counts[s][c] for s in SPLITS)] for c in ds.classes]
    rows.append(["all classes", *(sum(counts[s].values()) for s in SPLITS), len(ds.records)])
    split_note = ("The validation split was made by the app: a stratified, seeded share of each class held out."
                  if ds.split_source == "stratified" else "Train and validation come from the dataset's own folders.")
    parts = [
        "<dl>"
        f"<dt>Name</dt><dd>{esc(ds.name)}</dd><dt>Folder</dt><dd><code>{esc(ds.root)}</code></dd>"
        f"<dt>Fingerprint</dt><dd><code>{esc(ds.fingerprint)}</code></dd>"
        f"<dt>Classes</dt><dd>{len(ds.classes)}</dd><dt>Usable images</dt><dd>{len(ds.records):,}</dd>"
        f"<dt>Unreadable files</dt><dd>{len(ds.bad_files):,} (skipped)</dd></dl>",
        f'<p class="muted">{esc(split_note)}</p>',
        "<h3>Counts per class and split</h3>",
        table(["class", *SPLITS, "total"], rows, numeric={1, 2, 3}),
        figure(charts.counts_figure(counts, ds.classes)),
        "<h3>Imbalance</h3>",
    ]
    balance = stats.imbalance(ds)
    if balance is None:
        parts.append('<p class="muted">Fewer than two classes with training images: no balance to judge.</p>')
    else:
        if balance["largest_count"] == balance["smallest_count"]:
            parts.append(f"<p>Balanced: every class has {balance['largest_count']:,} training images.</p>")
        else:
            parts.append(f"<p>Largest to smallest class in training: {balance['ratio']:.1f}:1 "
                         f"('{esc(balance['largest'])}' {balance['largest_count']:,}, "
                         f"'{esc(balance['smallest'])}' {balance['smallest_count']:,}).</p>")
        if balance["warning"]:
            parts.append(box("warn", esc(balance["warning"])))
        note = registry.imbalance_note(counts["train"])
        if note:
            parts.append(f'<p class="muted">{esc(note)}</p>')
    if gaps := stats.unvalidated(ds):
        parts.append(box("warn", esc(gaps)))
    parts.append("<h3>Duplicates and train/validation leaks</h3>")
    if pairs is None:
        parts.append(box("warn", esc(pairs_error or "Duplicates were not checked.")))
    else:
        leaks = stats.leak_pairs(pairs)
        parts.append(table(["exact copies", "near duplicates", "train/validation leaks", "label conflicts"],
                           [[int((pairs["kind"] == "exact").sum()), int((pairs["kind"] == "near").sum()), len(leaks),
                             int(pairs["label_conflict"].sum())]], numeric={0, 1, 2, 3}))
        parts.append(f'<p class="muted">Near duplicates: perceptual hashes within {stats.NEAR_THRESHOLD} of 64 bits '
                     "(resized or re-encoded copies). A leak is the same picture in train and validation: it makes "
                     "the validation accuracy too optimistic.</p>")
        if leaks.empty:
            parts.append(box("good", "No picture appears in both train and validation."))
        else:
            parts.append(box("warn", f"{len(leaks):,} picture(s) in both train and validation: remove one copy of "
                                     "each, or the validation figures below are too optimistic."))
            shown = leaks.head(20)
            parts.append(table(["train image", "validation image", "kind"],
                               [[_rel(r.train_path, ds.root), _rel(r.validation_path, ds.root), r.kind]
                                for r in shown.itertuples()]))
            if len(leaks) > len(shown):
                parts.append(f'<p class="muted">…and {len(leaks) - len(shown):,} more.</p>')
    return "".join(parts)


def _rel(path: str, root: str) -> str:
    import os

    try:
        return os.path.relpath(path, root)
    except ValueError:
        return path
