"""Real training runs through the run store, the job queue and the worker process
(``core.train.fit``): done, cancelled mid-epoch, killed, and bad configs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from core.runs import jobs
from core.runs.store import Run, pid_alive
from core.train.strategies import StrategyConfig
from tests.helpers import wait_for, wait_state, worker_log, write_images

TINY = dict(strategy="scratch", input_size=32, scratch_filters=(8, 16), head_units=8, dropout=0.0)


def config(dataset, **kw) -> dict:
    return StrategyConfig(**{**TINY, "dataset": str(dataset), **kw}).to_dict()



def wait_batches(run: Run, timeout=180.0) -> dict:
    """Until progress shows the fit inside an epoch (a batch reported)."""
    def training_batch():
        p = run.progress()
        if run.status()["state"] != "running":
            raise AssertionError(f"run ended early: {run.status()}\n{worker_log(run)[-3000:]}")
        return p if p.get("phase") == "train" and p.get("batch") else None

    return wait_for(training_batch, timeout, f"{run.id} to report a training batch")


def _load(path: Path):
    import keras

    import core.nets.layers  # noqa: F401

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def test_training_run_ends_done_with_every_file(store, image_folder):
    run = store.create(config(image_folder, epochs=2, batch_size=8), name="worker done")
    jobs.submit(run)
    status = wait_state(run, "done", "failed", "cancelled", timeout=180.0)
    assert status["state"] == "done", f"{status}\n{worker_log(run)[-3000:]}"
    assert status["reason"] is None and status["error"] is None
    # no checkpoint.keras needed: a phase that ends normally leaves its best to model.keras (BestWeights)
    for name in ("model.keras", "metrics.json", "predictions.csv", "history.csv", "config.json"):
        assert (run.dir / name).is_file(), name
    assert list(run.tb_dir.rglob("events.out.tfevents.*")), "no TensorBoard logs under tb/"

    metrics = run.metrics()
    assert metrics["strategy"] == "scratch" and 0 <= metrics["val_accuracy"] <= 1
    assert metrics["epochs_run"] == 2 and metrics["trainable_params"] > 0
    history = run.history()
    assert history["epoch"].tolist() == [1, 2] and set(history["phase"]) == {"train"}
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(history.columns)
    predictions = run.predictions()
    assert len(predictions) == 8
    assert set(predictions["path"]) == {str(p) for p in (image_folder / "validation").rglob("*.png")}
    assert predictions["correct"].mean() == pytest.approx(metrics["val_accuracy"])
    assert run.progress().get("phase") == "calibrate"  # the post-fit step is the last thing a run does
    assert (run.dir / "calibration.json").is_file() and (run.dir / "ood.json").is_file()

    model = _load(run.model_path)
    from core.train.evaluation import predict_files

    probs = predict_files(model, predictions["path"].tolist(), 32, 2)
    assert abs(probs[:, 1] - predictions["p_b"].to_numpy()).max() < 1e-4
    assert f"run {run.id} ended done" in worker_log(run)


def test_a_run_that_keeps_no_model_ends_done_with_its_measurements_only(store, image_folder, monkeypatch):
    """A fold of a repeated split (``keep_model`` off, the folds' default): predictions, history and
    metrics as any run, no model file, no checkpoint left and no records that serve a model
    (calibration, feature statistics)."""
    from core.runs import worker
    from core.train import callbacks

    monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY_S", 0.0)  # every better epoch writes a checkpoint
    run = store.create(config(image_folder, epochs=1, batch_size=8, keep_model=False), name="measured only")
    assert worker.main([str(run.dir)]) == 0
    assert run.status()["state"] == "done", worker_log(run)[-3000:]
    metrics = run.metrics()
    assert metrics["model_kept"] is False and 0 <= metrics["val_accuracy"] <= 1 and "model_bytes" not in metrics
    assert len(run.predictions()) == 8 and run.history()["epoch"].tolist() == [1]
    for name in ("model.keras", "model.json", "checkpoint.keras", "calibration.json", "ood.json"):
        assert not (run.dir / name).exists(), name


def test_cancel_mid_epoch_keeps_history_and_checkpoint(store, image_folder):
    # 12 batches of 2 an epoch, 200 epochs: far longer than the test waits
    run = store.create(config(image_folder, epochs=200, batch_size=2))
    jobs.submit(run)
    progress = wait_batches(run)
    assert progress["batches"] == 12
    jobs.cancel(run)
    status = wait_state(run, "cancelled", "failed", "done", timeout=120)
    assert status["state"] == "cancelled", f"{status}\n{worker_log(run)[-3000:]}"
    assert "cancel" in status["reason"]
    history = run.history()
    assert 1 <= len(history) < 200
    # it stopped at the next batch: at most the epoch it was in plus one more began before the request landed
    assert history["epoch"].max() <= progress["epoch"] + 1
    assert run.checkpoint_path.is_file()
    model = _load(run.checkpoint_path)
    assert model.input_shape == (None, 32, 32, 3)
    assert not run.model_path.exists()  # a cancelled run keeps its checkpoint, not a final model
    wait_for(lambda: not pid_alive(status["pid"], status.get("pid_start")), 30, "the worker to exit")


def test_killed_worker_is_marked_failed_and_the_queue_moves_on(store, image_folder, tmp_path):
    first = store.create(config(image_folder, epochs=200, batch_size=2), name="to be killed")
    jobs.submit(first)
    wait_batches(first)
    second = store.create(config(tmp_path / "no-such-folder", epochs=1), name="next in line")
    jobs.submit(second)
    assert second.status()["state"] == "queued"  # the limit is 1 and the first one runs

    pid = first.status()["pid"]
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid, first.status().get("pid_start")), 30, "the killed worker to be gone")
    jobs.pump(store)
    status = first.status()
    assert status["state"] == "failed"
    assert "died" in status["reason"] and str(pid) in status["reason"]

    second_status = wait_state(second, "failed", "done", timeout=120)  # it started, and failed on its own
    assert second_status["pid"] and second_status["pid"] != pid
    assert second_status["started"] >= status["finished"] - 1
    assert "Folder not found" in second_status["reason"]


@pytest.mark.parametrize("problem", ["missing folder", "one class"])
def test_bad_config_fails_with_a_readable_reason(store, tmp_path, problem):
    if problem == "missing folder":
        dataset = tmp_path / "not-here"
        expected = f"Folder not found: {dataset}"
    else:
        dataset, expected = tmp_path / "one", "Dataset 'one' needs at least two classes"
        write_images(dataset / "train" / "only", 0, 3)
        write_images(dataset / "validation" / "only", 0, 2)
    run = store.create(config(dataset, epochs=1))
    jobs.submit(run)
    status = wait_state(run, "failed", "done", "cancelled", timeout=120)
    assert status["state"] == "failed"
    reason = status["reason"]
    assert expected in reason
    assert "\n" not in reason and "Traceback" not in reason and len(reason) <= 300
    assert "Traceback" in status["error"]  # the full trace is kept for whoever debugs it
    assert not run.model_path.exists() and run.metrics() is None
    assert isinstance(run.history(), pd.DataFrame) and run.history().empty
