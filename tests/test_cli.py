"""Command line: ``python -m core train|runs|show|backbones`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.runs.store import RunStore
from tests.helpers import REPO, SHARED_WEIGHTS


def cli(*args, home: Path, timeout=300, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "TRANSFER_LAB_WEIGHTS_DIR"}
    full_env.update({"TRANSFER_LAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_writes_a_run_that_runs_lists(image_folder, tl_home):
    proc = cli("train", "--dataset", image_folder, "--strategy", "scratch", "--epochs", 1, "--input-size", 32,
               "--batch-size", 8, "--seed", 3, "--name", "cli smoke", home=tl_home)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "state: done" in proc.stdout

    runs = RunStore().list()
    assert len(runs) == 1
    run = runs[0]
    assert run.name == "cli smoke" and run.status()["state"] == "done"
    assert run.config["strategy"] == "scratch" and run.config["input_size"] == 32
    assert run.config["epochs"] == 1 and run.config["batch_size"] == 8 and run.config["seed"] == 3
    assert run.config["dataset"] == str(image_folder)
    metrics = run.metrics()
    assert metrics["epochs_run"] == 1 and 0 <= metrics["val_accuracy"] <= 1
    for name in ("model.keras", "predictions.csv", "history.csv"):
        assert (run.dir / name).is_file(), name
    assert f"run {run.id}" in proc.stdout
    printed = proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1]
    assert json.loads(printed)["val_accuracy"] == pytest.approx(metrics["val_accuracy"])

    listed = cli("runs", home=tl_home)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if run.id in line)
    assert "done" in line and "scratch" in line and f"val_acc={metrics['val_accuracy']:.3f}" in line

    shown = cli("show", run.id, "--json", home=tl_home)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["metrics"]["val_accuracy"] == pytest.approx(metrics["val_accuracy"])

    summary = cli("show", run.id, home=tl_home)  # for a person: a few lines, not the confusion matrix
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert lines[0] == f"cli smoke  [{run.id}]" and "state:     done" in lines
    lo, hi = metrics["val_accuracy_ci"]
    assert f"accuracy:  {metrics['val_accuracy']:.1%} (95% CI {lo * 100:.1f}–{hi * 100:.1f}%) on" in summary.stdout
    assert "balanced:  " in summary.stdout and "worst class recall" in summary.stdout
    assert "weights:   class weights off" in summary.stdout  # two even classes: off by default, recorded
    assert "From scratch" in summary.stdout and f"folder:    {run.dir}" in lines
    assert len(lines) < 12 and "confusion" not in summary.stdout


def test_backbones_lists_the_registry(tl_home):
    proc = cli("backbones", home=tl_home)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert {"vgg16", "mobilenet_v2", "resnet50", "efficientnet_b0"} <= set(names)
    assert "efficientnet_lite0" not in names  # no weights folder set
    vgg = next(line for line in proc.stdout.splitlines() if line.startswith("vgg16 "))
    assert " 224px" in vgg and "download needed" in vgg


@pytest.mark.real
def test_backbones_lists_local_backbones_from_the_weights_folder(shared_assets, tl_home):
    """The shared EfficientNet-Lite weights folder (``shared_assets`` fails when it is missing)."""
    proc = cli("backbones", home=tl_home, TRANSFER_LAB_WEIGHTS_DIR=str(SHARED_WEIGHTS))
    assert proc.returncode == 0, proc.stderr
    lite0 = next(line for line in proc.stdout.splitlines() if line.startswith("efficientnet_lite0 "))
    assert "local" in lite0 and str(SHARED_WEIGHTS / "efficientnet_lite0.keras") in lite0


def test_train_on_a_missing_folder_fails_cleanly(tmp_path, tl_home):
    proc = cli("train", "--dataset", tmp_path / "nope", "--strategy", "scratch", "--epochs", 1, home=tl_home)
    assert proc.returncode != 0
    assert "state: failed" in proc.stdout
    run = RunStore().list()[0]
    assert "Folder not found" in run.status()["reason"]


def test_bad_arguments_are_refused_by_argparse(tl_home):
    proc = cli("train", "--dataset", "x", "--strategy", "magic", home=tl_home)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    assert not (tl_home / "users" / "local" / "runs").exists() or not list((tl_home / "users" / "local" / "runs").iterdir())


def test_train_on_a_missing_folder_says_why_without_a_traceback(tmp_path, tl_home):
    missing = tmp_path / "nope"
    proc = cli("train", "--dataset", missing, "--strategy", "scratch", "--epochs", 1, home=tl_home)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output
    assert f"Folder not found: {missing}" in output
