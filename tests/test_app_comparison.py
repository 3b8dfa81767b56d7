"""AppTest of what the comparison (Strategies page) and the run chips (Training curves)
show a new user: no raw None, the columns that matter first, one period after a failure
reason, labelled ticks on the accuracy-vs-time chart, chips short enough to read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import settings
from core.data.dataset import scan_folder
from core.runs import jobs
from core.runs.store import RunStore
from core.train import registry
APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def runs(image_folder, monkeypatch):
    """Two finished runs (11 s and 38 s: one decade holds both), one queued, one failed."""
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    monkeypatch.setattr(jobs, "pump", lambda store: None)  # the queued run stays queued: no worker starts
    ds = scan_folder(image_folder)
    store = RunStore()
    for strategy, acc, seconds in (("feature_extraction", 0.9, 11.0), ("fine_tune", 0.95, 38.0)):
        run = store.create({"strategy": strategy, "dataset": ds.root, "backbone": "efficientnet_lite0"},
                           name=f"{'Feature extraction' if strategy == 'feature_extraction' else 'Fine-tuning'}"
                                " · efficientnet_lite0")
        run.set_status("running")
        run.write_metrics({"val_accuracy": acc, "val_loss": 0.3, "train_seconds": seconds,
                           "trainable_params": 1281, "val_images": 400})
        run.set_status("done")
    store.create({"strategy": "linear_probe", "dataset": ds.root, "backbone": "efficientnet_lite0"},
                 name="Linear probe · efficientnet_lite0")
    failed = store.create({"strategy": "scratch", "dataset": ds.root}, name="From scratch")
    failed.set_status("running")
    failed.set_status("failed", reason="Dataset 'x' needs at least two classes with training images; found 1 (cats).")
    return ds


def open_page(ds, page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["tl_dataset"] = ds
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_comparison_reads_well_at_1400_px(runs):
    at = open_page(runs, "app_pages/strategies.py")
    grid = next(d for d in at.dataframe if "run_id" in d.value.columns)
    assert grid.proto.placeholder == "—"  # the queued run's empty cells
    order = list(grid.proto.column_order)
    # default names already say strategy and backbone: the numbers come right after the name
    assert order[:8] == ["name", "state", "val_accuracy_pct", "val_ci", "balanced_accuracy", "macro_f1",
                         "worst_class_recall", "train_seconds"]  # accuracy with its interval and its companions
    assert "Strategy" not in order and order[-1] == "run_id"
    assert json.loads(grid.proto.columns)["state"]["width"] == 60
    (warning,) = [w.value for w in at.warning if "failed" in w.value]
    assert "found 1 (cats). Open" in warning and ".." not in warning

    scatter = json.loads(at.get("plotly_chart")[1].proto.spec)
    axis = scatter["layout"]["xaxis"]
    assert axis["type"] == "log" and len(axis["tickvals"]) >= 3  # 11 s and 38 s: ticks in the one decade
    assert "10 s" in axis["ticktext"] and "20 s" in axis["ticktext"]
    lo, hi = axis["range"]  # log10 units: both runs sit between labelled ticks, not on the chart's edge
    assert 10 ** lo <= 11.0 and 10 ** hi >= 38.0 and min(abs(10 ** lo - t) for t in axis["tickvals"]) < 1e-6


def test_a_hand_named_run_brings_back_strategy_and_backbone(runs):
    store = RunStore()
    store.create({"strategy": "fine_tune", "dataset": runs.root, "backbone": "vgg16"}, name="first try")
    at = open_page(runs, "app_pages/strategies.py")
    grid = next(d for d in at.dataframe if "run_id" in d.value.columns)
    assert {"Strategy", "backbone"} <= set(grid.proto.column_order)


def test_curves_chips_fit(runs):
    """Chips were cut to "et_lite0 · done…": what tells runs apart (accuracy or state, then the strategy
    named as on the Strategies page) comes first, inside the 40 characters a chip shows."""
    at = open_page(runs, "app_pages/curves.py")
    box = at.multiselect(key="tl_curves_runs")
    labels = list(box.options)
    assert all(any(s in label[:40] for s in registry.LABELS.values()) for label in labels), labels
    done = [label for label in labels if label.startswith("95.0% · ")]
    assert done and "done" not in done[0]  # an accuracy says it finished
    assert any("queued" in label for label in labels) and any("failed" in label for label in labels)
