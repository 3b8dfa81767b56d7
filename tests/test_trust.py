"""Calibrated confidence, "not sure" and "unlike the training data": the statistics on generated
numbers (where the truth is known), the records read back as checked data, and a finished run
end to end: the post-fit step writes them, the classifier and ``python -m core predict`` use them,
and a run made before them still works, "not calibrated"."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest

from core import atomic
from core.serve import abstain, calibration, inference, ood, trust
from core.serve import predict as batch_predict
from tests.helpers import write_images
from tests.test_strategies import TINY_SIZE, make_tiny_backbone


def overconfident(n: int = 2000, k: int = 3, seed: int = 0, sharpen: float = 3.0):
    """Labels drawn from softmax(logits), shown sharpened: a network too sure of itself (T = sharpen)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in true_p])
    shown = np.exp(logits * sharpen)
    return shown / shown.sum(1, keepdims=True), labels


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside score > an inside score), ties half."""
    a, b = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float(((b > a).sum() + 0.5 * (b == a).sum()) / (a.size * b.size))


# ---------------------------------------------------------------- calibration

def test_temperature_recovers_the_sharpening_and_lowers_ece_without_touching_accuracy():
    probs, labels = overconfident()
    cal = calibration.calibrate(probs, labels)
    assert cal.method == "temperature" and cal.temperature == pytest.approx(3.0, rel=0.15)
    assert cal.ece_after < cal.ece_before / 2 and cal.nll_after < cal.nll_before
    scaled = cal.apply(probs)
    assert np.array_equal(scaled.argmax(1), probs.argmax(1))
    assert np.allclose(scaled.sum(1), 1.0)
    assert calibration.expected_calibration_error(scaled, labels) <= cal.ece_before


def test_binary_sigmoid_probabilities_scale_like_logits():
    p = np.array([[0.1, 0.9], [0.7, 0.3]])
    scaled = calibration.apply_temperature(p, 2.0)
    logit = np.log(0.9 / 0.1) / 2
    assert scaled[0, 1] == pytest.approx(1 / (1 + math.exp(-logit)))


def test_a_calibrated_network_keeps_its_probabilities():
    probs, labels = overconfident(sharpen=1.0, seed=1)
    cal = calibration.calibrate(probs, labels)
    assert cal.ece_after <= cal.ece_before
    if cal.method == "none":
        assert cal.temperature == 1.0 and np.array_equal(cal.apply(probs), probs)


def test_reliability_bins_count_every_photo():
    probs, labels = overconfident(n=300)
    bins = calibration.reliability_bins(probs, labels)
    assert sum(b["count"] for b in bins) == 300
    assert all(b["low"] <= b["confidence"] <= b["high"] for b in bins)


# ---------------------------------------------------------------- not sure

def test_default_threshold_halves_the_error_on_what_it_answers():
    probs, labels = overconfident(sharpen=1.0, seed=2)
    found = abstain.fit(probs, labels)
    assert found.accuracy_answered >= found.target_accuracy >= found.accuracy_all
    assert 0 < found.coverage < 1
    assert found.at(found.threshold)["coverage"] == pytest.approx(found.coverage)
    curve = found.curve
    assert [c["threshold"] for c in curve] == sorted(c["threshold"] for c in curve)
    assert curve[0]["coverage"] == 1.0


def test_a_perfect_run_answers_everything():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    found = abstain.fit(probs, np.array([0, 1, 0]))
    assert found.coverage == 1.0 and found.threshold == 0.5


# ---------------------------------------------------------------- unlike the training data

def test_feature_distance_separates_another_kind_of_photo():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2, 64))
    def photos(n, cls, spread=0.3):
        return directions[cls] + spread * rng.normal(size=(n, 64)) @ np.diag(np.r_[np.ones(8), 0.05 * np.ones(56)])
    train = np.concatenate([photos(200, 0), photos(200, 1)])
    labels = np.r_[np.zeros(200, int), np.ones(200, int)]
    val = np.concatenate([photos(50, 0), photos(50, 1)])
    other = rng.normal(size=(100, 64))  # another kind: directions the training photos never took
    stats = ood.fit(train, labels, val, components=8)
    inside, outside = stats.scores(val), stats.scores(other)
    assert auroc(inside, outside) > 0.99
    assert stats.flags(inside).mean() <= 0.05 and stats.flags(outside).mean() > 0.9
    assert 0.9 < stats.unusual_share(outside).min() <= 1.0


def test_stored_records_are_checked_when_read_back(tmp_path):
    probs, labels = overconfident(n=200)
    trust.assess(tmp_path, _frame(probs, labels, ["x", "y", "z"]), ["x", "y", "z"], [], [], None)
    assert trust.load(tmp_path).calibration.method in ("temperature", "none")
    good = atomic.read_json(tmp_path / trust.CALIBRATION_FILE)
    for field, bad in [("temperature", "2.0"), ("temperature", 1e9), ("ece_before", -1), ("method", "eval")]:
        atomic.write_json(tmp_path / trust.CALIBRATION_FILE, {**good, field: bad})
        assert trust.load(tmp_path) is None, field
    atomic.write_text(tmp_path / trust.CALIBRATION_FILE, "not json")
    assert trust.load(tmp_path) is None
    stats = ood.fit(np.eye(4), [0, 0, 1, 1], np.eye(4)).to_dict()
    for field, bad in [("variances", [0.0] * len(stats["variances"])), ("mean", [1.0]), ("threshold", "1"),
                       ("quantiles", [3.0, 1.0]), ("components", [["nan"]])]:
        with pytest.raises(ValueError):
            ood.from_dict({**stats, field: bad})
    assert json.loads(json.dumps(stats)) == stats  # numbers only


def _frame(probs, labels, classes):
    import pandas as pd

    frame = pd.DataFrame({"path": [f"v{i}.png" for i in range(len(labels))], "true": [classes[i] for i in labels]})
    for i, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, i]
    return frame


@pytest.fixture(scope="module")
def digits_fits(tmp_path_factory):
    """Every strategy fitted on the tiny backbone over a far-from-ImageNet set (the digits), lazily."""
    from core.train import fit as training
    from tests.digits import write_digits
    from tests.test_training import tiny_config

    root = tmp_path_factory.mktemp("digits_fits")
    data = write_digits(root / "digits", per_class=24, size=TINY_SIZE)
    for digit in range(4, 10):  # four classes are enough, and keep the fits fast
        shutil.rmtree(data / str(digit))
    weights = make_tiny_backbone(root / "weights")
    done: dict = {}

    def get(strategy: str):
        if strategy not in done:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("TRANSFER_LAB_HOME", str(root / "home"))
                mp.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(weights))
                done[strategy] = training.fit(tiny_config(data, strategy, val_fraction=0.5))
        return done[strategy]

    return get


STRATEGIES = ["linear_probe", "feature_extraction", "frozen_augment", "fine_tune", "scratch", "pixel_baseline"]


def test_the_calibration_test_covers_every_strategy():
    from core.train import registry

    assert sorted(STRATEGIES) == sorted(registry.STRATEGIES)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_calibrates_without_losing_ece_or_accuracy(strategy, digits_fits, tmp_path):
    result = digits_fits(strategy)
    classes = result.metrics["classes"]
    found = trust.assess(tmp_path, result.predictions, classes, [], [], None)
    probs, labels = trust.validation_probabilities(result.predictions, classes)
    cal = found.calibration
    assert cal.ece_after <= cal.ece_before
    assert np.array_equal(cal.apply(probs).argmax(1), probs.argmax(1))  # the accuracy cannot move
    assert cal.accuracy == pytest.approx(result.metrics["val_accuracy"])
    assert found.abstention.accuracy_answered >= found.abstention.accuracy_all


# ---------------------------------------------------------------- a finished run, end to end

@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """A feature-extraction run on the tiny backbone through ``train_run`` (what the worker calls), once."""
    from core.runs.store import RunStore
    from core.runs.worker import train_run
    from tests.test_training import tiny_config

    root = tmp_path_factory.mktemp("trust")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFER_LAB_HOME", str(root / "home"))
        mp.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(make_tiny_backbone(root / "weights")))
        data = root / "ds"
        for i, cls in enumerate(["a", "b"]):
            write_images(data / "train" / cls, i, 16, size=(TINY_SIZE, TINY_SIZE), seed=1)
            write_images(data / "validation" / cls, i, 10, size=(TINY_SIZE, TINY_SIZE), seed=2)
        run = RunStore().create(tiny_config(data, "feature_extraction", epochs=3).to_dict(), name="trusted")
        run.set_status("running")
        train_run(run)
        run.set_status("done")  # as the worker does once train_run returns
    return run.dir, data, root / "weights"


@pytest.fixture
def trained(trained_once, tl_home, monkeypatch):
    """A copy of that run in this test's own data directory (tests may take its records away)."""
    from core.runs.store import RunStore

    run_dir, data, weights = trained_once
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(weights))
    store = RunStore()
    shutil.copytree(run_dir, store.root / run_dir.name)
    return store.get(run_dir.name), data


def test_a_finished_run_is_calibrated_and_flags_other_photos(trained, tmp_path):
    run, data = trained
    found = trust.load(run.dir)
    assert found is not None and found.ood is not None
    assert found.calibration.images == 20 and found.ood.train_images == 32 and found.ood.validation_images == 20
    assert found.calibration.ece_after <= found.calibration.ece_before
    metrics = run.metrics()
    assert metrics["ece_before"] == found.calibration.ece_before and metrics["not_sure_threshold"] > 0
    predictor = inference.load_run(run)
    assert predictor.calibrated and predictor.with_features

    other = tmp_path / "other"
    for i in range(8):  # another kind of photo: flat grey noise, nothing like the stripes
        write_images(other, 2 + i % 2, 1, size=(TINY_SIZE, TINY_SIZE), seed=50 + i)[0].rename(other / f"o{i}.png")
    own = [("v", p) for p in sorted((data / "validation").rglob("*.png"))]
    results = inference.classify_many(predictor, own + [("o", p) for p in sorted(other.glob("o*.png"))])
    mine, theirs = results[:20], results[20:]
    assert all(r.calibrated and r.not_sure is not None and r.unlike_data is not None for r in results)
    assert auroc([r.ood_score for r in mine], [r.ood_score for r in theirs]) >= 0.9
    assert np.mean([r.unlike_data for r in mine]) <= 0.05 + 1e-9
    raw = predictor.probabilities(np.stack([inference.decode(p, predictor.input_size) for _, p in own]))
    assert np.array_equal(raw.argmax(1), np.array([r.index for r in mine]))  # calibration keeps every class
    unsure = [r for r in results if r.not_sure]
    assert all(r.verdict.startswith("not sure: closest classes ") and " or " in r.verdict for r in unsure)


def test_predict_cli_writes_the_csv_and_old_runs_say_not_calibrated(trained, tmp_path, capsys):
    from core.__main__ import main

    run, data = trained
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "answers.csv"
    assert main(["predict", "--run", run.id, str(data / "validation"), str(tmp_path / "bad.png"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "class", "probability", "not_sure", "unlike_data"]
    assert len(rows) == 21 and rows[-1]["class"] == "" and "bad.png" in capsys.readouterr().err
    for row in rows[:-1]:
        assert row["class"] in ("a", "b") and 0.5 <= float(row["probability"]) <= 1
        assert row["not_sure"] in ("true", "false") and row["unlike_data"] in ("true", "false")

    for name in (trust.CALIBRATION_FILE, trust.OOD_FILE):  # a run made before this change
        (run.dir / name).unlink()
    assert main(["predict", "--run", run.id, str(data / "validation"), "--out", str(out)]) == 0
    assert "not calibrated" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 and all(r["not_sure"] == "" and r["unlike_data"] == "" for r in rows)
    assert not inference.load_run(run).calibrated
    assert batch_predict.image_files([data / "validation"])[0].suffix == ".png"


# ---------------------------------------------------------------- the pages

def test_classifier_page_shows_calibrated_answers_and_moves_the_threshold(trained, tmp_path):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import REPO

    run, data = trained
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.switch_page("app_pages/classifier.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Calibrated on the run's validation photos" in c.value for c in at.caption)
    files = sorted((data / "validation").rglob("*.png"))[:6]
    at.file_uploader(key="tl_clf_files").set_value([(p.name, p.read_bytes(), "image/png") for p in files]).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert {"Answered", "Not sure", "Unlike the training data"} <= set(metrics)
    assert int(metrics["Answered"]) + int(metrics["Not sure"]) == 6
    assert len(at.get("plotly_chart")) >= 1  # the trade-off curve
    at.slider(key="tl_clf_not_sure").set_value(1.0).run()  # answer only the certain: nothing here is
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Not sure"]) == 6 and int(metrics["Answered"]) == 0
    assert sum("not sure: closest classes" in m.value for m in at.markdown) == 6


def test_curves_page_draws_the_reliability_diagram_or_says_not_calibrated(trained):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import REPO

    run, _ = trained
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
    at.session_state["tl_curves_runs"] = [run.id]
    at.run()
    at.switch_page("app_pages/curves.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Calibration" in [h.value for h in at.subheader]
    labels = {m.label for m in at.metric}
    assert {"ECE before", "ECE after"} <= labels
    (run.dir / trust.CALIBRATION_FILE).unlink()
    at.run()
    assert any("not calibrated" in c.value for c in at.caption)


def test_export_panel_int8_serving_and_deployment_card(trained):
    """The page's export panel: int8 quantized on the run's training photos and measured on its validation
    photos, the switch that serves it (when its parity holds), and the deployment card of every format."""
    from streamlit.testing.v1 import AppTest

    from tests.helpers import REPO

    run, data = trained
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.switch_page("app_pages/classifier.py").run()
    at.multiselect(key="tl_clf_formats").set_value(["keras", "openvino", "openvino_int8"]).run()
    at.button(key="tl_clf_export_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "int8 against float32" in [h.value for h in at.subheader]
    metrics = {m.label: m.value for m in at.metric}
    assert {"Accuracy, int8", "Top-1 agreement", "Size", "Throughput"} <= set(metrics)
    report = at.session_state["tl_clf_export"][1]
    assert report.int8.images == 20 and report.int8.calibration_images == 32
    if report.int8.parity_holds:
        at.toggle(key="tl_clf_int8").set_value(True).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Serving the int8 export" in i.value for i in at.info)
    at.button(key="tl_clf_card_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    card = at.session_state["tl_clf_card"][1]
    assert len(card) == 3 and card["accuracy"].notna().all() and (card["p95 (ms)"] >= card["p50 (ms)"]).all()
    assert list(card["runs on"]) == ["TensorFlow / Keras", "OpenVINO Runtime", "OpenVINO Runtime"]


def test_a_run_whose_features_cannot_be_read_is_still_calibrated(tmp_path):
    probs, labels = overconfident(n=100, k=2)
    frame = _frame(probs, labels, ["x", "y"])

    def no_features(paths):
        raise ValueError("cannot tell the features tiny's head reads")

    found = trust.assess(tmp_path, frame, ["x", "y"], [f"t{i}.png" for i in range(10)], [0, 1] * 5, no_features)
    assert found.ood is None and not (tmp_path / trust.OOD_FILE).exists()
    loaded = trust.load(tmp_path)
    assert loaded.calibration.images == 100 and loaded.ood is None
