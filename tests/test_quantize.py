"""int8 export with NNCF on a tiny model: the artifact loads in OpenVINO Runtime (what the card says
runs it), its report measures accuracy, per-class change, agreement, size and speed against the
float IR, the live classifier can serve it, and the deployment card measures every format."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from core.serve import export, inference, quantize
from tests.helpers import write_images
from tests.test_inference import tiny_model

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8_photos")
    paths, labels = [], []
    for c in range(3):
        written = write_images(root / CLASSES[c], c, 10, size=(32, 32), seed=c)
        paths += [str(p) for p in written]
        labels += [c] * len(written)
    return paths, labels


@pytest.fixture(scope="module")
def exported(photos, tmp_path_factory):
    paths, labels = photos
    model = tiny_model()
    out = tmp_path_factory.mktemp("int8_out")
    report = export.export_all(model, out, formats=["keras", "openvino", "openvino_int8"], parity_images=paths[:6],
                               classes=CLASSES, stem="tiny",
                               int8=export.Int8Data(paths[::2], paths, labels, CLASSES))
    return model, report


def test_int8_artifact_loads_in_openvino_runtime_and_agrees(exported, photos):
    import openvino as ov

    model, report = exported
    assert not report.errors, report.errors
    artifact = report.artifacts["openvino_int8"]
    assert artifact.file_name == "tiny_int8_openvino.zip" and export.RUNTIMES["openvino_int8"] == "OpenVINO Runtime"
    with zipfile.ZipFile(artifact.path) as zf:
        names = zf.namelist()
        xml = next(n for n in names if n.endswith(".xml"))
        net = ov.Core().read_model(zf.read(xml), ov.Tensor(np.frombuffer(zf.read(xml[:-4] + ".bin"), np.uint8)))
    kinds = {op.get_type_name() for op in net.get_ops()}
    assert "FakeQuantize" in kinds or "FakeConvert" in kinds  # really quantized, not a float copy
    pixels, _ = quantize.pixels_of(photos[0], 32)
    out = np.asarray(ov.Core().compile_model(net, "CPU")(pixels)[0])
    keras_top = np.asarray(model(pixels, training=False)).argmax(1)
    assert np.mean(out.argmax(1) == keras_top) >= 0.9
    assert report.parity["all agree"].all()


def test_int8_report_measures_against_float(exported):
    _, report = exported
    q = report.int8
    assert q.images == 30 and q.calibration_images == 15
    assert [c["class"] for c in q.per_class] == CLASSES and sum(c["images"] for c in q.per_class) == 30
    for c in q.per_class:
        assert c["change"] == pytest.approx(c["int8"] - c["float"])
    assert 0 <= q.agreement <= 1 and q.accuracy_drop == pytest.approx(q.float_accuracy - q.int8_accuracy)
    assert q.parity_holds == (q.agreement >= 0.98 and q.accuracy_drop <= 0.01)
    for s in (q.float_speed, q.int8_speed):
        assert 0 < s["p50_ms"] <= s["p95_ms"] and s["photos_per_s"] > 0
    stored = quantize.read_report(report.artifacts["openvino_int8"].path)
    assert stored["agreement"] == q.agreement and stored["parity_holds"] == q.parity_holds


def test_int8_needs_photos_and_the_other_formats_still_export(tmp_path):
    report = export.export_all(tiny_model(), tmp_path, formats=["keras", "openvino_int8"])
    assert "keras" in report.artifacts and "openvino_int8" not in report.artifacts
    assert "training photos" in report.errors["openvino_int8"]


def test_the_live_classifier_serves_int8(exported, photos, tmp_path):
    model, report = exported
    path = tmp_path / "tiny.keras"
    model.save(path)
    float_predictor = inference.load_model_predictor(path, CLASSES)
    served = inference.int8_predictor(float_predictor, report.artifacts["openvino_int8"].path)
    assert served.forward.precision == "int8" and float_predictor.forward.precision != "int8"
    items = [(p, p) for p in photos[0][:6]]
    float_top = [r.index for r in inference.classify_many(float_predictor, items)]
    int8_results = inference.classify_many(served, items)
    assert all(r.ok for r in int8_results) and [r.index for r in int8_results] == float_top


def test_deployment_card_measures_every_format(exported, photos):
    model, report = exported
    paths, labels = photos
    card = export.deployment_card(model, report, paths[:9], labels[:9], repeats=3)
    assert list(card["format"]) == [export.LABELS[k] for k in report.artifacts]
    assert list(card["runs on"]) == [export.RUNTIMES[k] for k in report.artifacts]
    assert (card["p50 (ms)"] > 0).all() and (card["p95 (ms)"] >= card["p50 (ms)"]).all()
    assert card.loc[card["format"] == export.LABELS["keras"], "agreement with Keras"].item() == 1.0
    assert ((card["accuracy"] >= 0) & (card["accuracy"] <= 1)).all() and (card["photos"] == 9).all()
