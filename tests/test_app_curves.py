"""AppTest of the Curves page on run-store runs: curves with the fine-tuning boundary,
best epoch and overfitting hint; confusion matrix, per-class scores, worst predictions,
downloads; failed and cancelled runs; a live run cancelled from the page (real worker)."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.runs import jobs
from tests.helpers import REPO, texts, write_images

APP = str(REPO / "streamlit_app.py")
CURVES = "app_pages/curves.py"


def open_curves(selected=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if selected is not None:
        at.session_state["tl_curves_runs"] = selected
    at.run()
    at.switch_page(CURVES).run()
    assert not at.exception, [e.value for e in at.exception]
    return at



def figure(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def values(v):
    """Plotly 6 sends numeric arrays as {dtype, bdata, shape}: decode to lists."""
    if isinstance(v, dict) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        if "shape" in v:
            arr = arr.reshape([int(n) for n in str(v["shape"]).split(",")])
        return arr.tolist()
    return v


def fine_tuned_run(store, tmp_path, name="ft"):
    """A finished fine-tuning run: 4 head epochs, 4 fine-tuning epochs overfitting at the end."""
    run = store.create({"strategy": "fine_tune", "dataset": str(tmp_path), "backbone": "mobilenet_v2",
                        "weights": "random", "seed": 1}, name=name)
    run.set_status("running")
    val_loss = [0.70, 0.55, 0.50, 0.48, 0.40, 0.45, 0.52, 0.60]
    loss = [0.80, 0.60, 0.50, 0.45, 0.38, 0.30, 0.22, 0.15]
    val_acc = [0.60, 0.70, 0.74, 0.75, 0.82, 0.80, 0.79, 0.78]
    for e in range(8):
        run.append_history({"epoch": e + 1, "phase": "head" if e < 4 else "fine_tune", "loss": loss[e],
                            "accuracy": 1 - loss[e] / 2, "val_loss": val_loss[e], "val_accuracy": val_acc[e],
                            "lr": 1e-3, "seconds": 1.0})
    paths = write_images(tmp_path / "val" / "a", 0, 3) + write_images(tmp_path / "val" / "b", 1, 3)
    true = ["a"] * 3 + ["b"] * 3
    p_b = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.4])
    predicted = np.where(p_b > 0.5, "b", "a")
    p_true = np.where(np.array(true) == "b", p_b, 1 - p_b)
    run.write_predictions(pd.DataFrame({
        "path": [str(p) for p in paths], "true": true, "predicted": predicted,
        "confidence": np.maximum(p_b, 1 - p_b), "true_confidence": p_true, "correct": predicted == np.array(true),
        "p_a": 1 - p_b, "p_b": p_b}))
    run.write_metrics({
        "val_accuracy": 4 / 6, "val_loss": 0.61, "macro_f1": 0.667, "confusion_matrix": [[2, 1], [1, 2]],
        "classes": ["a", "b"], "val_images": 6, "train_images": 20, "input_size": 32, "train_seconds": 42.0,
        "trainable_params": 12345, "epochs_run": 8, "fine_tune_start_epoch": 5,
        "per_class": {"a": {"precision": 0.667, "recall": 0.667, "f1": 0.667, "support": 3},
                      "b": {"precision": 0.667, "recall": 0.667, "f1": 0.667, "support": 3}}})
    (run.tb_dir / "head").mkdir(parents=True)
    run.set_status("done")
    return run, paths


def test_no_runs_points_to_the_strategies_page(store):
    at = open_curves()
    assert "No runs yet" in texts(at.info)


def test_finished_run_curves_boundary_best_epoch_overfitting_and_details(store, tmp_path):
    run, paths = fine_tuned_run(store, tmp_path)
    at = open_curves()
    assert at.multiselect(key="tl_curves_runs").value == [run.id]  # the newest run by default
    spec = figure(at)
    names = [t.get("name") for t in spec["data"]]
    assert {"train", "validation", "best epoch"} <= set(names)
    best = next(t for t in spec["data"] if t.get("name") == "best epoch")
    assert values(best["x"]) == [5.0] and values(best["y"]) == [0.82]
    lines = [s for s in spec["layout"]["shapes"] if s.get("type") == "line"]
    assert len(lines) == 2 and lines[0]["x0"] == 4.5  # fine-tuning boundary, on both panels
    assert "fine-tuning starts" in json.dumps(spec["layout"]["annotations"])
    assert "Possible overfitting" in texts(at.warning) and "epoch 5" in texts(at.warning)

    # details of the finished run
    assert [m.value for m in at.metric][:2] == ["66.7%", "0.61"]
    assert "2 of 6 validation images are misclassified" in texts(at.caption)
    cm = figure(at, 1)
    assert values(cm["data"][0]["z"]) == [[2, 1], [1, 2]]
    per_class = next(d.value for d in at.dataframe if "precision" in d.value.columns)
    assert per_class["class"].tolist() == ["a", "b"]
    gallery = at.get("image")
    captions = [img.proto.imgs[0].caption for img in gallery]
    assert len(captions) == 6 and captions[:2] == ["✗ true a → b (90%)", "✗ true b → a (60%)"]  # lowest true_confidence first
    assert len(at.get("download_button")) == 2
    assert f'tensorboard --logdir "{run.tb_dir}"' in texts(at.code)

    at.checkbox(key="tl_curves_wrong_only").check().run()
    assert len(at.get("image")) == 2

    # smoothing changes the drawn values and keeps the raw ones faintly
    at.slider(key="tl_curves_smooth").set_value(0.5).run()
    spec = figure(at)
    val = [t for t in spec["data"] if t.get("name") == "validation" and t.get("mode") == "lines+markers"][0]
    raw = [t for t in spec["data"] if t.get("opacity") == 0.3]
    smoothed = values(val["y"])
    assert raw and smoothed[0] == pytest.approx(0.6) and smoothed[4] != pytest.approx(0.82)


def test_overlay_of_several_runs(store, tmp_path):
    a, _ = fine_tuned_run(store, tmp_path / "a", name="first")
    b, _ = fine_tuned_run(store, tmp_path / "b", name="second")
    at = open_curves([a.id, b.id])
    names = {t.get("name") for t in figure(at)["data"]}
    assert any(n and n.startswith("first") for n in names) and any(n and n.startswith("second") for n in names)
    assert at.selectbox(key="tl_curves_detail").options == [at.multiselect(key="tl_curves_runs").format_func(i)
                                                            for i in (a.id, b.id)]


def test_failed_and_cancelled_runs_say_so(store):
    failed = store.create({"strategy": "scratch", "dataset": "/nowhere"}, name="broken")
    failed.set_status("running")
    failed.set_status("failed", reason="Folder not found: /nowhere",
                      error="Traceback (most recent call last):\n  ...\ncore.errors.DatasetError: Folder not found")
    at = open_curves([failed.id])
    assert "This run failed: Folder not found: /nowhere" in texts(at.error)
    assert "Error details (traceback)" in [e.label for e in at.expander]
    assert "Traceback (most recent call last)" in texts(at.code)
    assert "No epoch finished yet" in texts(at.caption)

    cancelled = store.create({"strategy": "scratch", "dataset": "/d"}, name="stopped")
    cancelled.set_status("running")
    cancelled.append_history({"epoch": 1, "phase": "train", "loss": 0.7, "accuracy": 0.5, "val_loss": 0.69,
                              "val_accuracy": 0.5})
    cancelled.set_status("cancelled", reason="cancelled by user")
    at = open_curves([cancelled.id])
    assert "This run was cancelled (cancelled by user)" in texts(at.info)
    assert len(at.get("plotly_chart")) == 1  # its curve so far, no confusion matrix
    assert not at.error


def test_live_run_shows_progress_and_cancels_from_the_page(store):
    """A real worker (a test entry point that waits) is running; the page shows it and cancels it."""
    run = store.create({"target": "gate", "strategy": "feature_extraction"}, name="live one")
    jobs.submit(run)
    end = time.monotonic() + 30
    while not (run.dir / "starts.log").exists() and time.monotonic() < end:
        time.sleep(0.05)
    run.write_progress({"phase": "head", "epoch": 2, "epochs": 5, "batch": 3, "batches": 6,
                        "images_per_s": 50.0, "eta_s": 30}, force=True)
    at = open_curves()
    assert at.multiselect(key="tl_curves_runs").value == [run.id]  # running runs are shown first
    bars = at.get("progress")
    assert bars and "live one: Training the head · epoch 2/5 · batch 3/6 · 50.0 images/s · ETA 30 s" in bars[0].proto.text
    assert "still training" in texts(at.info)
    at.button(key="tl_curves_cancel").click().run()
    end = time.monotonic() + 30
    while run.effective_state() != "cancelled" and time.monotonic() < end:
        time.sleep(0.1)
    assert run.effective_state() == "cancelled"
    at.run()
    assert "This run was cancelled" in texts(at.info)


def test_a_run_shows_the_augmentation_it_measured_and_why(store, tmp_path):
    """The flip decision of a digits run (measured by ``core.train.flips`` on real digit
    images) is shown with its figures, so a user sees why no flip was used."""
    from core.train.flips import decide
    from core.train import pixels as pixel_baseline
    from tests.digits import write_digits

    root = write_digits(tmp_path / "digits", per_class=40)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    pix, valid = pixel_baseline.decode(paths)
    labels = np.array([int(p.split("/")[-2]) for p in paths])
    decision = decide(pix[valid], labels[valid], seed=0)
    assert decision.augment.flip == ""  # digits: no flip keeps the class
    run, _ = fine_tuned_run(store, tmp_path)
    run.write_metrics({**run.metrics(), "augment_decision": decision.to_dict()})
    at = open_curves()
    expander = next(e for e in at.expander if e.label.startswith("Augmentation:"))
    assert "flip none" in expander.label and "fill constant" in expander.label and "measured" in expander.label
    checks = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert checks["flip"].tolist() == ["horizontal", "vertical"]
    assert checks["verdict"].tolist() == ["left out", "left out"]
    assert "Horizontal flip left out" in texts(at.markdown)
