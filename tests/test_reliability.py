"""Faults and hostile conditions in the engine: nothing half-written is ever read as valid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import settings
from core.data.dataset import scan_folder
from core.errors import CacheCorrupt, RunError, StorageError

REPO = Path(__file__).resolve().parents[1]


def test_unwritable_data_directory_gives_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(blocker / "home"))
    with pytest.raises(StorageError, match="cannot be created or written"):
        settings.subdir("runs")


def test_disk_full_during_extraction_leaves_no_cache_entry(image_folder, monkeypatch):
    from core.features import cache as features

    ds = scan_folder(image_folder)
    real_save = np.save

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(features.np, "save", full_disk)
    with pytest.raises(StorageError, match="No space left"):
        features.extract_features(ds, "mobilenet_v2", weights=None, input_size=32, split="validation")
    monkeypatch.setattr(features.np, "save", real_save)
    root = settings.subdir("features")
    assert list(root.iterdir()) == [], "a failed extraction must leave nothing that looks like a cache entry"


_EXTRACT = """
import sys
from core.data.dataset import scan_folder
from core.features.cache import extract_features
ds = scan_folder(sys.argv[1])
fs = extract_features(ds, "mobilenet_v2", weights=None, input_size=32, split="train")
print("rows", fs.X.shape[0])
"""


def test_two_processes_writing_one_cache_entry_end_with_one_valid_entry(image_folder):
    scan_folder(image_folder)  # warm the scan cache so both start extracting at once
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", _EXTRACT, str(image_folder)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert all("rows 24" in o[0] for o in outs)
    entries = [p for p in settings.subdir("features").iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith("."), entries
    from core.features.cache import read_entry

    fs = read_entry(entries[0].name, ["a", "b"])
    assert fs.X.shape[0] == 24


def _tiny_model():
    import keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, outputs)


def test_truncated_or_modified_model_is_reported_not_loaded(tmp_path):
    from core.runs import models

    path = tmp_path / "model.keras"
    models.save_model(_tiny_model(), path)
    assert models.load_model(path) is not None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheCorrupt, match="truncated or was modified"):
        models.load_model(path)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CacheCorrupt):
        models.load_model(path)


def test_model_without_integrity_record_or_file_is_refused(tmp_path):
    from core.runs import models

    path = tmp_path / "model.keras"
    with pytest.raises(RunError, match="no saved model"):
        models.load_model(path)
    _tiny_model().save(path)  # written by someone else: no record
    with pytest.raises(CacheCorrupt, match="no integrity record"):
        models.load_model(path)


def test_no_pickle_on_untrusted_data():
    """Models load with safe_mode=True and arrays without pickle, everywhere in core/."""
    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "core").glob("*.py")}
    for path, text in sources.items():
        assert not re.search(r"^\s*import pickle|^\s*from pickle|cloudpickle|joblib\.load", text, re.M), path
        assert "allow_pickle=True" not in text, path
        assert "safe_mode=False" not in text, path
        for call in re.findall(r"load_model\(([^)]*)\)", text):
            assert "safe_mode=True" in call or "path" in call, (path, call)
