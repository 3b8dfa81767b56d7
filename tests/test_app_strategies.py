"""AppTest of the Strategies page: launch real (tiny) runs as background jobs, see them in
the queue and the comparison, "compare all", cancel from the page, a failed run's reason,
the advisor's verdict and the layer-depth sweep."""

from __future__ import annotations

import shutil
import time

from streamlit.testing.v1 import AppTest

from core.train import registry
from core.runs import sweep
from core.runs import jobs
from core.data.dataset import scan_folder
from tests.helpers import REPO, texts

APP = str(REPO / "streamlit_app.py")
PAGE = "app_pages/strategies.py"
CURVES = "app_pages/curves.py"


def open_page(dataset=None, page=PAGE) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if dataset is not None:
        at.session_state["tl_dataset"] = dataset
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun_until(at: AppTest, predicate, timeout=240.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if predicate(at):
            return at
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def tiny_scratch(at: AppTest, epochs: int = 2) -> None:
    """Choose only "From scratch", 32 px, two small conv blocks."""
    at.multiselect(key="tl_strat_chosen").set_value(["scratch"]).run()
    at.number_input(key="tl_opt_modern_scratch_input_size").set_value(32)
    at.text_input(key="tl_opt_modern_scratch_scratch_filters").set_value("8, 16")
    at.number_input(key="tl_opt_modern_scratch_epochs").set_value(epochs)
    at.number_input(key="tl_opt_modern_scratch_early_stopping").set_value(0)
    at.number_input(key="tl_opt_modern_all_batch_size").set_value(8)



def table_rows(at: AppTest):
    frames = [d.value for d in at.dataframe if "run_id" in d.value.columns]
    return frames[0] if frames else None


def test_without_a_dataset_the_page_says_where_to_pick_one(store):
    at = open_page()
    assert "Choose a dataset first" in texts(at.info)
    assert not [b for b in at.button if b.key == "tl_strat_train"]
    assert "No runs yet" in texts(at.caption)


def test_a_one_class_dataset_is_refused_before_any_form(store, tmp_path):
    """A dataset that cannot train says so at once: no form, no queued run that fails later."""
    from tests.helpers import write_images

    write_images(tmp_path / "one" / "train" / "cats", 0, 4)
    write_images(tmp_path / "one" / "validation" / "cats", 0, 2)
    at = open_page(scan_folder(tmp_path / "one"))
    assert "needs at least two classes with training images; found 1 (cats)." in texts(at.error)
    assert "No strategy can train on it" in texts(at.error)
    assert not [b for b in at.button if b.key in ("tl_strat_train", "tl_strat_all", "tl_sweep_launch")]


def one_split(at: AppTest) -> None:
    """Train on the dataset's own split: the generated sets are small enough that the page's default
    repeats each strategy over 5 splits (``core.train.folds.default_folds``)."""
    [box] = [n for n in at.number_input if n.label == "Repeat over k splits"]
    assert box.value == 5
    box.set_value(1).run()


def test_launch_a_run_then_see_it_in_the_comparison_and_the_curves(store, image_folder):
    at = open_page(scan_folder(image_folder))
    tiny_scratch(at)
    one_split(at)
    at.button(key="tl_strat_train").click().run()
    assert not at.exception
    assert "Queued training: 1 run" in texts(at.success)
    [run] = store.list()
    assert run.config["strategy"] == "scratch" and run.config["dataset"] == str(image_folder)
    assert run.config["input_size"] == 32 and run.config["scratch_filters"] == [8, 16]
    assert run.config["epochs"] == 2 and run.config["batch_size"] == 8
    assert run.effective_state() in ("running", "done")
    assert f"tl_cancel_{run.id}" in [b.key for b in at.button] or run.is_finished  # the queue shows it

    rerun_until(at, lambda a: table_rows(a) is not None and (table_rows(a)["state"] == "done").all(),
                what=f"the run to finish; log:\n{run.log_path.read_text() if run.log_path.exists() else ''}")
    rows = table_rows(at)
    assert rows["run_id"].tolist() == [run.id] and rows["Strategy"].tolist() == ["From scratch"]
    assert 0.0 <= rows["val_accuracy"].iloc[0] <= 1.0 and rows["trainable_params"].iloc[0] > 0
    charts = {c.proto.id for c in at.get("plotly_chart")}
    assert len(charts) >= 2  # bars and accuracy-vs-time
    assert "No job queued or running." in texts(at.caption)

    at.switch_page(CURVES).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="tl_curves_runs").value == [run.id]
    assert len(at.get("plotly_chart")) == 3  # curves, confusion matrix, reliability diagram
    assert [m.label for m in at.metric][:2] == ["Validation accuracy", "Validation loss"]
    assert len(at.get("download_button")) == 2
    assert any("tensorboard --logdir" in c.value for c in at.code)


def test_compare_all_queues_every_strategy_on_the_same_split(store, image_folder, monkeypatch):
    """Queue only (no worker starts): one run per registered strategy, same data, split and seed;
    a queued one cancels at once."""
    monkeypatch.setattr(jobs, "pump", lambda *a, **kw: [])
    at = open_page(scan_folder(image_folder))
    at.selectbox(key="tl_opt_modern_all_weights").set_value("random")
    at.number_input(key="tl_opt_modern_all_input_size").set_value(32)
    one_split(at)
    at.button(key="tl_strat_all").click().run()
    n = len(registry.STRATEGIES)
    assert f"Queued all {n} strategies: {n} runs" in texts(at.success)
    runs = store.list()
    configs = [r.config for r in reversed(runs)]
    assert [c["strategy"] for c in configs] == list(registry.STRATEGIES)
    assert len({(c["dataset"], c["seed"], c["val_fraction"], c["group"]) for c in configs}) == 1
    assert all(c["weights"] == "random" and c["input_size"] == 32 for c in configs)
    assert [r.effective_state() for r in runs] == ["queued"] * n
    waiting = [c.value for c in at.caption if c.value.startswith("Waiting in the queue")]
    assert waiting == [f"Waiting in the queue (#{i})" for i in range(1, n + 1)]

    fine_tune = next(r for r in runs if r.config["strategy"] == "fine_tune")
    at.button(key=f"tl_cancel_{fine_tune.id}").click().run()
    assert fine_tune.effective_state() == "cancelled"
    assert f"'{fine_tune.name}' cancelled." in texts(at.info)
    assert f"tl_cancel_{fine_tune.id}" not in [b.key for b in at.button]
    states = table_rows(at).set_index("run_id")["state"]
    assert states[fine_tune.id] == "cancelled" and (states == "queued").sum() == n - 1


def test_cancel_a_running_job_from_the_queue(store, image_folder):
    """A real worker (a test entry point that waits for a file) runs; the queue shows it and cancels it."""
    ds = scan_folder(image_folder)
    run = store.create({"target": "gate", "strategy": "fine_tune", "dataset": ds.root},
                       name="waiting job")
    jobs.submit(run)
    end = time.monotonic() + 30
    while not (run.dir / "starts.log").exists() and time.monotonic() < end:
        time.sleep(0.05)
    run.write_progress({"phase": "fine_tune", "epoch": 3, "epochs": 4, "batch": 1, "batches": 2,
                        "images_per_s": 20.0, "eta_s": 70}, force=True)
    at = open_page(ds)
    [bar] = at.get("progress")
    assert bar.proto.text == "Fine-tuning · epoch 3/4 · batch 1/2 · 20.0 images/s · ETA 1 min 10 s"
    at.button(key=f"tl_cancel_{run.id}").click().run()
    assert "'waiting job' asked to stop" in texts(at.info) or run.effective_state() == "cancelled"
    rerun_until(at, lambda a: run.effective_state() == "cancelled", timeout=30, what="the run to stop")
    rerun_until(at, lambda a: "No job queued or running." in texts(a.caption), timeout=10, what="an empty queue")
    assert table_rows(at)["state"].tolist() == ["cancelled"]


def test_a_failed_run_shows_its_reason(store, image_folder, tmp_path):
    moved = tmp_path / "gone"
    ds = scan_folder(image_folder)
    at = open_page(ds)
    shutil.move(image_folder, moved)  # the dataset disappears after it was scanned
    tiny_scratch(at)
    one_split(at)
    at.button(key="tl_strat_train").click().run()
    [run] = store.list()
    rerun_until(at, lambda a: run.effective_state() == "failed", timeout=120, what="the run to fail")
    at.run()
    assert "Folder not found" in texts(at.warning) and str(image_folder) in texts(at.warning)
    at.switch_page(CURVES).run()
    assert not at.exception
    errors = texts(at.error)
    assert "This run failed: Folder not found" in errors
    assert "Error details (traceback)" in [e.label for e in at.expander]
    assert "DatasetError: Folder not found" in texts(at.code)


def test_advisor_verdict_and_sweep_launch(store, image_folder, monkeypatch):
    """The advisor (stubbed: it needs ImageNet weights) against measured runs; a sweep queues one run per depth."""
    from core.analysis import advisor
    from core.analysis.advisor import Advice

    monkeypatch.setattr(advisor, "advise", lambda ds, backbone, **kw: Advice(
        "small", "similar", "feature_extraction", 0, ["Size: small.", "Similarity: similar."], {}))
    ds = scan_folder(image_folder)
    for strategy, acc in (("feature_extraction", 0.9), ("fine_tune", 0.6)):
        run = store.create({"strategy": strategy, "dataset": ds.root, "backbone": "mobilenet_v2"})
        run.set_status("running")
        run.write_metrics({"val_accuracy": acc, "val_loss": 0.3, "train_seconds": 5.0, "trainable_params": 10,
                           "val_images": 400})
        run.set_status("done")
    at = open_page(ds)
    at.button(key="tl_strat_advise").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Recommended: **Feature extraction**" in texts(at.success)
    assert "Measurement agrees" in texts(at.success)

    at.text_input(key="tl_sweep_depths").set_value("1, 3")
    at.number_input(key="tl_sweep_head_epochs").set_value(1)
    at.number_input(key="tl_sweep_ft_epochs").set_value(1)
    monkeypatch.setattr(jobs, "submit", lambda run, *a, **kw: run)  # queue only: no training here
    at.button(key="tl_sweep_launch").click().run()
    assert "Queued the layer sweep: 2 runs" in texts(at.success)
    sweep = [r for r in store.list() if r.config.get("sweep")]
    assert sorted(r.config["fine_tune_layers"] for r in sweep) == [1, 3]
    assert {r.config["epochs"] for r in sweep} == {1} and {r.config["fine_tune_epochs"] for r in sweep} == {1}
    assert "2 of 2 runs still queued" in texts(at.caption)


def test_use_this_advice_fills_the_strategies_form(store, image_folder, monkeypatch):
    """From the Dataset page: the advice (stubbed: another backbone, an earlier block) sets the
    sidebar's backbone and the form, opens the Strategies page, and stays shown there."""
    from core.analysis import advisor
    from core.analysis.advisor import Advice

    monkeypatch.setattr(advisor, "advise", lambda ds, backbone, **kw: Advice(
        "small", "different", "feature_extraction", 0, ["Size: small."], {}, "frozen_augment", "block5c_add",
        [], "Confidence: clear.", "resnet50"))
    at = open_page(scan_folder(image_folder), page="app_pages/dataset.py")
    at.button(key="tl_advise").click().run()
    at.button(key="tl_advise_use").click().run()  # the app then calls st.switch_page, which AppTest does not follow
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(PAGE).run()
    assert at.session_state["tl_backbone"] == "resnet50"
    assert at.multiselect(key="tl_strat_chosen").value == ["feature_extraction"]
    assert at.text_input(key="tl_opt_modern_feature_extraction_feature_layer").value == "block5c_add"
    assert not at.warning, texts(at.warning)  # no widget-state clash from setting the form
    assert "Recommended: **Feature extraction**" in texts(at.success)  # the advice, for the new backbone too


def test_bad_options_are_explained_not_raised(store, image_folder):
    at = open_page(scan_folder(image_folder))
    at.multiselect(key="tl_strat_chosen").set_value(["scratch"]).run()
    at.text_input(key="tl_opt_modern_scratch_scratch_filters").set_value("8, lots").run()
    assert "must be whole numbers" in texts(at.error)
    at.button(key="tl_strat_train").click().run()
    assert not at.exception and not store.list()
    assert "Fix the options above first" in texts(at.error)


def test_classic_preset_with_every_strategy_renders_its_options(store, image_folder, monkeypatch):
    monkeypatch.setattr(jobs, "pump", lambda *a, **kw: [])
    at = open_page(scan_folder(image_folder))
    at.segmented_control(key="tl_strat_preset").set_value("classic").run()
    at.multiselect(key="tl_strat_chosen").set_value(list(registry.STRATEGIES)).run()
    assert not at.exception and not at.error
    assert at.number_input(key="tl_opt_classic_all_input_size").value == 150
    assert at.number_input(key="tl_opt_classic_fine_tune_fine_tune_layers").value == 4
    assert at.text_input(key="tl_opt_classic_scratch_scratch_filters").value == "32, 64, 128, 128"
    assert "VGG16" in texts(at.caption)
    at.button(key="tl_strat_train").click().run()
    configs = {r.config["strategy"]: r.config for r in store.list()}
    assert set(configs) == set(registry.STRATEGIES)
    assert {c["backbone"] for c in configs.values()} == {"vgg16"}
    assert configs["feature_extraction"]["optimizer"] == "rmsprop" and configs["scratch"]["learning_rate"] == 1e-4


def test_sweep_chart_from_finished_runs(store, image_folder, monkeypatch):
    monkeypatch.setattr(jobs, "pump", lambda *a, **kw: [])
    ds = scan_folder(image_folder)
    base = registry.make_config("fine_tune", dataset=ds.root)
    for cfg, acc in zip(sweep.sweep_configs(base, [2, 8]), [0.9, 0.85]):
        run = store.create(cfg, name=cfg["name"])
        run.set_status("running")
        run.append_history({"epoch": 1, "phase": "head", "val_accuracy": 0.8, "val_loss": 0.4})
        run.append_history({"epoch": 2, "phase": "fine_tune", "val_accuracy": acc, "val_loss": 0.3})
        run.write_metrics({"val_accuracy": acc, "val_loss": 0.3, "train_seconds": 3.0, "trainable_params": 100})
        run.set_status("done")
    at = open_page(ds)
    chart = next(c for c in at.get("plotly_chart") if "top layers unfrozen" in c.proto.spec)
    assert "head only, base frozen: 80.0%" in chart.proto.spec
    assert "Best fine-tuning accuracy 90.0% with the top 2 layers unfrozen" in texts(at.info)
    assert "Unfreezing more (8) did not help" in texts(at.info)
