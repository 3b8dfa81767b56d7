"""Faults and hostile conditions in the engine: nothing half-written is ever read as valid."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from core import layout
from core.data.dataset import scan_folder
from core.errors import CacheCorrupt, RunError, StorageError
from tests.helpers import REPO


def test_unwritable_data_directory_gives_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(blocker / "home"))
    with pytest.raises(StorageError, match="cannot be created or written"):
        layout.workspace_dir("runs")


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
    root = layout.cache("features")
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
    entries = [p for p in layout.cache("features").iterdir()]
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


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {"read_pickle", "enable_unsafe_deserialization"}


def _imports(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from every import in the module."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, imports: dict[str, str]) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([imports.get(node.id, node.id), *reversed(parts)])


def unsafe_loading(source: str, where: str = "<source>") -> tuple[list[str], int]:
    """What in ``source`` could run code from a file: pickle-like imports, ``allow_pickle``
    not literally False, a Keras ``load_model`` without a literal ``safe_mode=True`` (or with
    ``**kwargs`` that could override it), unsafe deserialisation switched on. Returns the
    findings and how many Keras ``load_model`` calls were checked."""
    tree = ast.parse(source)
    imports = _imports(tree)
    found, loaders = [], 0
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{line} imports {m}" for m in modules if m.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, imports)
        keywords = {k.arg: k.value for k in node.keywords}
        if name.rsplit(".", 1)[-1] in UNSAFE_CALLS:
            found.append(f"{line} calls {name}")
        if "allow_pickle" in keywords and not (isinstance(keywords["allow_pickle"], ast.Constant)
                                               and keywords["allow_pickle"].value is False):
            found.append(f"{line} passes allow_pickle")
        if name.endswith(".load_model") and name.split(".")[0] in ("keras", "tensorflow", "tf_keras"):
            loaders += 1
            safe = keywords.get("safe_mode")
            if not (isinstance(safe, ast.Constant) and safe.value is True) or None in keywords:
                found.append(f"{line} {name} without a literal safe_mode=True")
    return found, loaders


def test_the_unsafe_loading_check_catches_what_it_should():
    bad = (
        "import pickle\nfrom joblib import load\nimport numpy as np\nfrom keras import saving\n"
        "from keras.models import load_model as lm\nimport keras\nimport pandas as pd\n"
        "def f(path, kw):\n"
        "    np.load(path, allow_pickle=True)\n"
        "    saving.load_model(path)\n"
        "    lm(path, safe_mode=False)\n"
        "    keras.saving.load_model(path, safe_mode=True, **kw)\n"
        "    keras.config.enable_unsafe_deserialization()\n"
        "    pd.read_pickle(path)\n"
    )
    found, loaders = unsafe_loading(bad)
    assert loaders == 3
    assert [f.split(" ", 1)[1] for f in found] == [
        "imports pickle", "imports joblib", "passes allow_pickle",
        "keras.saving.load_model without a literal safe_mode=True",
        "keras.models.load_model without a literal safe_mode=True",
        "keras.saving.load_model without a literal safe_mode=True",
        "calls keras.config.enable_unsafe_deserialization", "calls pandas.read_pickle",
    ], found
    good = ("import keras\nimport numpy as np\nfrom core.runs import models\n"
            "def f(path):\n    np.load(path, allow_pickle=False)\n    models.load_model(path)\n"
            "    keras.saving.load_model(str(path), safe_mode=True, compile=False)\n")
    assert unsafe_loading(good) == ([], 1)


def test_no_pickle_on_untrusted_data():
    """Models load with safe_mode=True and arrays without pickle, everywhere in core/ (every
    subpackage), the pages, the shell and the benchmarks."""
    paths = sorted({*(REPO / "core").rglob("*.py"), *(REPO / "app_pages").rglob("*.py"),
                    REPO / "streamlit_app.py", *(REPO / "benchmarks").rglob("*.py")})
    assert any(p.parent.parent == REPO / "core" for p in paths), "the scan misses core's subpackages"
    findings, loaders = [], 0
    for path in paths:
        found, count = unsafe_loading(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
        findings += found
        loaders += count
    assert not findings, findings
    assert loaders >= 1, "no Keras load_model call found: the scan does not see the model loaders"
