"""A report to share: one self-contained HTML file per comparison.

It holds the dataset card, every run on the dataset with its 95% intervals and the paired
verdicts, training curves, confusion matrices, the advisor's measurements when an advice is
at hand, and a model card for the chosen run. It opens without a network (plotly.js inlined,
system fonts) and shows every name read from disk as text (``core.report.page.esc``), so a
file made from a team's runs is safe to mail around. Written atomically.
"""

from __future__ import annotations

import time

from core import atomic
from core.report import page
from core.report.dataset_card import dataset_card, duplicate_pairs
from core.report.model_card import NOT_ASKED, advice_section, model_card
from core.report.runs import confusion_section, curves_section, gather, on_dataset, runs_section, verdicts_section

SECTIONS = ("Dataset", "Runs", "Verdicts", "Training curves", "Confusion matrices", "Advisor", "Model card")


def build_report(ds, runs, advice=None, pairs=None, advice_note: str = NOT_ASKED, now: float | None = None) -> str:
    """The report's HTML for dataset ``ds`` and those of ``runs`` trained on it.

    ``advice``: a ``core.analysis.advisor.Advice`` for the dataset (None: ``advice_note`` says why
    there is none); ``pairs``: ``core.data.stats.duplicates(ds)`` when the caller has it (else
    computed here, from the hash cache after the first time)."""
    pairs_error = None
    if pairs is None:
        pairs, pairs_error = duplicate_pairs(ds)
    facts = gather(on_dataset(runs, ds.root))
    bodies = [dataset_card(ds, pairs, pairs_error), runs_section(facts), verdicts_section(facts),
              curves_section(facts), confusion_section(facts), advice_section(advice, facts, advice_note),
              model_card(facts, ds, pairs, advice)]
    anchors = ["dataset", "runs", "verdicts", "curves", "confusion", "advisor", "model-card"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now if now is not None else time.time()))
    done = sum(f.done for f in facts)
    subtitle = (f"Transfer Lab report · {when} · {len(facts)} run(s) on this dataset, {done} finished · "
                "opens offline; every figure carries its 95% interval")
    return page.document(f"Transfer Lab report: {ds.name}", subtitle,
                         list(zip(anchors, SECTIONS, bodies)), with_plotly=True)


def write_report(path, ds, runs, **options) -> str:
    """Build the report and write it to ``path`` atomically; returns the HTML."""
    text = build_report(ds, runs, **options)
    atomic.write_text(path, text)
    return text


__all__ = ["SECTIONS", "build_report", "write_report", "NOT_ASKED", "on_dataset"]
