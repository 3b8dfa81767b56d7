"""core.nets.engine: engine choice, OpenVINO parity with TensorFlow, the parity guard, cache keys."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from core import settings
from core.data.dataset import scan_folder
from core.errors import EngineError
from core.features.cache import extract_features
from core.nets import backbones, engine


from .test_features import _reference

openvino = pytest.importorskip("openvino")


@pytest.fixture
def ds(image_folder, local_weights):
    return scan_folder(image_folder)


def _use(monkeypatch, value: str) -> None:
    monkeypatch.setenv(engine.ENGINE_ENV, value)


def _cos(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _verdict_files(home):
    folder = home / "engine" / "parity"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# ---------------------------------------------------------------- choice

def test_engine_choice_follows_the_setting_and_the_machine(monkeypatch):
    _use(monkeypatch, "tensorflow")
    assert engine.choose().label == "tensorflow f32"
    _use(monkeypatch, "openvino")
    precision, _ = engine.cpu_precision()
    assert engine.choose() == engine.Choice("openvino", precision, engine.choose().reason)
    assert precision == ("bf16" if "BF16" in engine.cpu_capabilities() else "f32")
    _use(monkeypatch, "fast")
    with pytest.raises(EngineError, match="TRANSFER_LAB_ENGINE"):
        engine.choose()
    assert "not an engine" in engine.describe()

    _use(monkeypatch, "auto")
    engine._choose.cache_clear()
    monkeypatch.setattr(engine, "has_gpu", lambda: True)
    assert engine.choose().engine == "tensorflow" and "GPU" in engine.choose().reason
    engine._choose.cache_clear()
    monkeypatch.setattr(engine, "has_gpu", lambda: False)
    assert engine.choose().engine == "openvino"
    engine._choose.cache_clear()
    monkeypatch.setattr(engine, "openvino_version", lambda: None)
    assert engine.choose().engine == "tensorflow" and "not installed" in engine.describe()
    engine._choose.cache_clear()


# ---------------------------------------------------------------- parity and the guard

@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_openvino_features_match_tensorflow_and_the_verdict_is_kept(ds, tl_home, monkeypatch, precision):
    _use(monkeypatch, "openvino")
    monkeypatch.setattr(engine, "cpu_precision", lambda: (precision, "forced by the test"))
    engine._choose.cache_clear()
    fs = extract_features(ds, "tiny", batch_size=8)
    assert fs.meta["engine"] == f"openvino {precision}"
    ref = _reference(fs.paths)
    cos = _cos(fs.X, ref)
    assert cos.min() > (0.99999 if precision == "f32" else 0.999)
    if precision == "f32":
        np.testing.assert_allclose(np.asarray(fs.X), ref, rtol=1e-3, atol=1e-4)
    [path] = _verdict_files(tl_home)
    verdict = json.loads(path.read_text())
    assert verdict["passed"] and verdict["engine"] == f"openvino {precision}" and verdict["pooling"] == "avg"
    assert verdict["metrics"]["rows"] == 8 and verdict["metrics"]["cosine_worst"] > 0.999
    engine._choose.cache_clear()


def _broken_runner(real):
    def factory(tf_fn, size, precision, ir_key=None):
        run = real(tf_fn, size, precision, ir_key)
        return lambda x: run(x)[:, ::-1].copy()  # channels reversed: same norms, wrong features
    return factory


def test_a_broken_engine_is_refused_and_tensorflow_takes_over(ds, tl_home, monkeypatch):
    _use(monkeypatch, "openvino")
    monkeypatch.setattr(engine, "openvino_runner", _broken_runner(engine.openvino_runner))
    bb = backbones.load_backbone("tiny")
    fs = extract_features(ds, "tiny", loaded=bb, batch_size=8)
    fwd = bb.frozen_forward("avg")
    assert fwd.engine == "tensorflow" and fwd.reason.startswith("parity guard refused openvino")
    assert "cosine" in fwd.reason and "\n" not in fwd.reason
    np.testing.assert_allclose(np.asarray(fs.X), _reference(fs.paths), rtol=1e-4, atol=1e-5)
    assert fs.meta["engine"] == "tensorflow f32"
    [path] = _verdict_files(tl_home)
    assert json.loads(path.read_text())["passed"] is False

    # a later process reads the verdict: no conversion, TensorFlow straight away, same key
    def no_conversion(*a, **k):
        raise AssertionError("a refused engine was converted again")

    monkeypatch.setattr(engine, "openvino_runner", no_conversion)
    fresh = backbones.load_backbone("tiny")
    again = fresh.frozen_forward("avg")
    assert again.engine == "tensorflow" and "parity guard refused" in again.reason
    assert extract_features(ds, "tiny", loaded=fresh).from_cache
    assert "refused" in engine.describe()


def test_the_guard_waits_for_a_real_batch(local_weights, tl_home, monkeypatch):
    _use(monkeypatch, "openvino")
    bb = backbones.load_backbone("tiny")
    fwd = bb.frozen_forward("avg")
    zeros = np.zeros((2, 32, 32, 3), np.float32)
    np.testing.assert_allclose(fwd(zeros), np.asarray(bb.forward("avg")(zeros)), rtol=1e-6)
    assert not _verdict_files(tl_home)  # a blank warm-up batch settles nothing
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    out = fwd(x)
    assert out.dtype == np.float32 and out.shape == (4, 12)
    assert len(_verdict_files(tl_home)) == 1 and fwd.engine == "openvino"


def test_compare_refuses_wrong_shapes_non_finite_rows_and_head_disagreement():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(10, 6))
    assert engine.compare(ref, ref + 1e-4)[0]
    assert not engine.compare(ref, ref[:, :5])[0]
    bad = ref.copy()
    bad[3, 2] = np.nan
    ok, reason, _ = engine.compare(ref, bad)
    assert not ok and "non-finite" in reason
    # features nearly equal (cosine ~0.999), but the ImageNet head's decision flips on every row
    feats = rng.uniform(1, 2, (10, 6))
    feats[:, 0] = 0.05
    flipped = feats.copy()
    flipped[:, 0] = -0.05
    W = np.zeros((6, 2))
    W[0, 0], W[0, 1] = 100.0, -100.0
    ok, reason, metrics = engine.compare(feats, flipped, head=lambda f: f @ W)
    assert metrics["cosine_worst"] > 0.99 and metrics["top1_agreement"] == 0.0
    assert not ok and "top-1 agreement" in reason
    assert engine.compare(feats, feats * 1.001, head=lambda f: f @ W)[0]
    # probabilities: a near-tie counts as agreement, a confident flip does not
    p = np.array([[0.505, 0.495], [0.9, 0.1]])
    assert engine.compare(p, np.array([[0.495, 0.505], [0.9, 0.1]]), "probabilities")[2]["top1_agreement"] == 1.0
    ok, reason, metrics = engine.compare(p, np.array([[0.505, 0.495], [0.1, 0.9]]), "probabilities")
    assert metrics["top1_agreement"] == 0.5 and not ok


# ---------------------------------------------------------------- cache keys and the kept IR

def test_engines_have_their_own_cache_rows(ds, tl_home, monkeypatch):
    _use(monkeypatch, "tensorflow")
    tf_fs = extract_features(ds, "tiny")
    _use(monkeypatch, "openvino")
    ov_fs = extract_features(ds, "tiny")
    assert tf_fs.key != ov_fs.key and not ov_fs.from_cache
    assert ov_fs.meta["reused"] == 0  # no row of the TensorFlow entry was lent to OpenVINO
    assert (tf_fs.meta["engine"], ov_fs.meta["engine"]) == ("tensorflow f32", engine.choose().label)
    assert extract_features(ds, "tiny").key == ov_fs.key and extract_features(ds, "tiny").from_cache
    _use(monkeypatch, "tensorflow")
    assert extract_features(ds, "tiny").key == tf_fs.key


def test_the_converted_model_is_kept_for_the_next_process(local_weights, tl_home, monkeypatch):
    _use(monkeypatch, "openvino")
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    first = backbones.load_backbone("tiny").frozen_forward("avg")
    a = first(x)
    assert list((tl_home / "engine" / "ir").glob("*/model.xml"))
    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: pytest.fail("converted again"))
    second = backbones.load_backbone("tiny").frozen_forward("avg")
    np.testing.assert_allclose(second(x), a, rtol=1e-6)
    # random weights have no stable identity: never kept
    rnd = backbones.load_backbone("tiny", weights=None).frozen_forward("avg")
    assert rnd.ir_key is None


# ---------------------------------------------------------------- classifier, labelling, status lines

@pytest.fixture
def tiny_imagenet(tmp_path, monkeypatch):
    from . import tiny_backbone

    folder = tiny_backbone.build(tmp_path / "tinyweights")
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    return folder


def _photos(tmp_path):
    from tests.helpers import write_images

    return [str(p) for i in range(3) for p in write_images(tmp_path / "photos" / str(i), i, 4, size=(32, 32))]


def test_live_classifier_and_zero_shot_probabilities_run_on_the_engine(tiny_imagenet, tmp_path, tl_home,
                                                                       monkeypatch):
    from core.analysis import labeling
    from core.serve import inference

    paths = _photos(tmp_path)
    _use(monkeypatch, "tensorflow")
    ref = inference.load_imagenet("tinynet")
    ref_p, _ = labeling.classifier_probabilities(paths, "tinynet")
    _use(monkeypatch, "openvino")
    pred = inference.load_imagenet("tinynet")
    pred.warm_up()  # zeros: converts, settles nothing
    assert pred.forward.engine == "openvino" and not _verdict_files(tl_home)
    results = inference.classify_many(pred, [(p, p) for p in paths], k=3)
    expected = inference.classify_many(ref, [(p, p) for p in paths], k=3)
    assert [r.index for r in results] == [r.index for r in expected]
    [path] = _verdict_files(tl_home)
    verdict = json.loads(path.read_text())
    assert verdict["passed"] and verdict["pooling"] == "probabilities" and verdict["metrics"]["top1_agreement"] == 1
    ov_p, ok = labeling.classifier_probabilities(paths, "tinynet")
    assert ok.all() and (ov_p.argmax(1) == ref_p.argmax(1)).all()
    assert np.abs(ov_p - ref_p).max() < 0.02

    # a broken engine under the classifier: refused, TensorFlow's probabilities come back
    monkeypatch.setattr(engine, "openvino_runner",
                        lambda *a, **k: (lambda x: np.full((len(x), 1000), 1e-3, np.float32)))
    monkeypatch.setenv(settings.HOME_ENV, str(tmp_path / "other_home"))
    bad_p, _ = labeling.classifier_probabilities(paths, "tinynet")
    np.testing.assert_allclose(bad_p, ref_p, rtol=1e-5, atol=1e-6)


def test_cli_and_status_line_name_the_engine(local_weights, monkeypatch, capsys):
    from core.__main__ import main

    _use(monkeypatch, "tensorflow")
    assert main(["engine"]) == 0
    assert capsys.readouterr().out.startswith("engine: tensorflow f32 · TRANSFER_LAB_ENGINE=tensorflow")
    _use(monkeypatch, "openvino")
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    backbones.load_backbone("tiny").frozen_forward("avg")(x)
    assert main(["engine"]) == 0
    out = capsys.readouterr().out
    assert f"engine: {engine.choose().label}" in out and "parity passed: tiny|" in out and "32px avg" in out


# ---------------------------------------------------------------- real weights, real photos

@pytest.mark.real
def test_real_backbone_passes_the_guard_on_real_photos_with_its_imagenet_head(cats_vs_dogs, tmp_path, monkeypatch):
    from core.data.dataset import subset

    monkeypatch.setenv(settings.HOME_ENV, str(tmp_path / "home"))
    _use(monkeypatch, "auto")
    engine._choose.cache_clear()
    ds = subset(scan_folder(cats_vs_dogs), 16, 0)
    bb = backbones.load_backbone("efficientnet_lite0")
    fs = extract_features(ds, "efficientnet_lite0", split="validation", loaded=bb)
    fwd = bb.frozen_forward("avg")
    assert fs.meta["engine"] == fwd.label == engine.choose().label
    if fwd.engine == "openvino":
        m = fwd.verdict["metrics"]
        assert fwd.verdict["passed"] and m["rows"] == min(32, len(fs.paths))
        assert m["cosine_mean"] > 0.998 and m["top1_agreement"] >= 0.9  # the ImageNet head agrees
    from core.data.images import load_rgb

    pixels = np.stack([load_rgb(p, (224, 224)) for p in fs.paths]).astype(np.float32)
    ref = np.asarray(bb.forward("avg")(pixels))
    assert _cos(fs.X, ref).min() > 0.99  # every photo, not only the probe batch


def test_the_sidebar_names_the_engine(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import REPO

    _use(monkeypatch, "tensorflow")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.sidebar.caption]
    assert "Engine: tensorflow f32 · set on the server: tensorflow" in captions, captions  # no variable name


def test_headless_extraction_names_images_seconds_speed_and_engine(ds, image_folder, monkeypatch, capsys):
    import re

    from core.__main__ import main

    _use(monkeypatch, "tensorflow")
    assert main(["extract", "--dataset", str(image_folder), "--backbone", "tiny", "--engine", "openvino"]) == 0
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    n = len(ds.paths("train")) + len(ds.paths("validation"))
    m = re.fullmatch(r"extracted ([\d,]+) images in ([\d.]+) s \((\d+) images/s\) with (openvino \w+)", last)
    assert m and int(m.group(1).replace(",", "")) == n, last
    assert m.group(4) == engine.choose("openvino").label and "validation: " in captured.err
    assert os.environ[engine.ENGINE_ENV] == "tensorflow"  # the choice was this command's, not the environment's
    with settings.engine_chosen("openvino"):
        assert extract_features(ds, "tiny", split="validation").from_cache  # what the CLI cached, the app reads
    assert main(["extract", "--dataset", str(image_folder), "--backbone", "tiny", "--engine", "openvino"]) == 0
    assert "extracted 0 images in 0.0 s (all from the cache)" in capsys.readouterr().out
