"""core.serve.export: .keras / SavedModel zip / TFLite (float32, float16, dynamic range) / OpenVINO IR
zip / ONNX round trips, top-1 parity with the Keras model, sizes, and failures reported per format."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from core.serve import export
from core.errors import TransferLabError
from tests.helpers import write_images
from tests.test_inference import SIZE, tiny_model


def model_with_augmentation(classes: int = 3, wide: bool = False):
    """pixels -> augmentation (inactive at inference) -> preprocess -> conv -> pool -> head,
    like a frozen_augment run; ``wide`` adds a 512x512 Dense so quantization has weights to shrink."""
    import keras

    from core.nets.layers import ChannelAffine
    from core.train.strategies import Augment, augmentation

    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = augmentation(Augment(), seed=3)(inputs)
    x = ChannelAffine(scale=(1 / 255.0,) * 3, offset=(0.0,) * 3, name="preprocess")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if wide:
        x = keras.layers.Dense(512, activation="relu", name="wide1")(x)
        x = keras.layers.Dense(512, activation="relu", name="wide2")(x)
    units, act = (1, "sigmoid") if classes == 2 else (classes, "softmax")
    return keras.Model(inputs, keras.layers.Dense(units, activation=act, name="head_output")(x))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    paths = []
    for label in range(3):
        paths += write_images(root / str(label), label, 3, size=(40, 40), seed=5)
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    model = model_with_augmentation()
    out = tmp_path_factory.mktemp("export")
    report = export.export_all(model, out, parity_images=images, classes=["a", "b", "c"], stem="tiny")
    return model, out, report


def test_every_format_exports_with_sizes(exported):
    _, out, report = exported
    assert report.errors == {}
    assert set(report.artifacts) == set(export.FORMATS)
    names = {k: a.file_name for k, a in report.artifacts.items()}
    assert names == {"keras": "tiny.keras", "savedmodel": "tiny_savedmodel.zip", "tflite": "tiny.tflite",
                     "tflite_float16": "tiny_float16.tflite", "tflite_dynamic": "tiny_dynamic.tflite",
                     "openvino": "tiny_openvino.zip", "onnx": "tiny.onnx"}
    sizes = report.sizes()
    assert list(sizes["format"]) == [export.FORMATS[k] for k in export.FORMATS]
    assert (sizes["size (MB)"] > 0).all()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp")]  # no half-written leftovers
    with zipfile.ZipFile(report.artifacts["savedmodel"].path) as zf:
        members = zf.namelist()
    assert "tiny_savedmodel/saved_model.pb" in members
    assert any(m.startswith("tiny_savedmodel/variables/") for m in members)
    with zipfile.ZipFile(report.artifacts["openvino"].path) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == ["tiny_openvino/tiny.bin", "tiny_openvino/tiny.xml"]
    assert (out / "tiny.onnx").is_file() and not (out / "tiny_openvino").exists()  # only the zip stays


def test_parity_table_top1_equal(exported, images):
    _, _, report = exported
    parity = report.parity
    assert list(parity["image"]) == ["/".join(p.split("/")[-2:]) for p in images]  # class folder / file
    assert parity["all agree"].all()
    for key in export.FORMATS:
        assert (parity[key] == parity["keras"]).all(), key
    # float32 exports are the same function; quantized ones are close
    assert parity["keras max |Δp|"].max() < 1e-6
    assert parity["savedmodel max |Δp|"].max() < 1e-5
    assert parity["tflite max |Δp|"].max() < 1e-4
    assert parity["tflite_float16 max |Δp|"].max() < 0.02
    assert parity["tflite_dynamic max |Δp|"].max() < 0.05
    assert parity["openvino max |Δp|"].max() < 1e-5  # run at f32: the export's difference, not bf16's
    assert parity["onnx max |Δp|"].max() < 1e-5


def test_round_trips_give_the_keras_outputs(exported, images):
    import tensorflow as tf

    from core.data.images import load_rgb

    model, out, report = exported
    pixels = np.stack([load_rgb(p, (SIZE, SIZE)) for p in images]).astype(np.float32)
    expected = np.asarray(model(pixels, training=False))
    # SavedModel reloaded from the zip, as a user would after downloading it
    unzip = out / "unzipped"
    with zipfile.ZipFile(report.artifacts["savedmodel"].path) as zf:
        zf.extractall(unzip)
    reloaded = tf.saved_model.load(str(unzip / "tiny_savedmodel"))
    np.testing.assert_allclose(np.asarray(reloaded.serve(pixels)), expected, atol=1e-5)
    # TFLite float32 through the interpreter, one image at a time
    runner = export.TFLiteRunner(report.artifacts["tflite"].path)
    np.testing.assert_allclose(runner(pixels), expected, atol=1e-4)
    assert (runner(pixels).argmax(1) == expected.argmax(1)).all()
    # .keras reloads in safe mode (the augmentation and preprocess layers are serialisable)
    keras_run = export.runner_for(report.artifacts["keras"])
    np.testing.assert_allclose(keras_run(pixels), expected, atol=1e-6)


def test_openvino_and_onnx_files_stand_alone(exported, images):
    """The IR unzipped and the .onnx file, read by OpenVINO as a user would: one pixels input of any
    batch, one probabilities output (no augmentation tensors left over), the Keras outputs; the
    ONNX file passes ONNX's own checker."""
    import onnx
    import openvino as ov

    from core.data.images import load_rgb

    model, out, report = exported
    pixels = np.stack([load_rgb(p, (SIZE, SIZE)) for p in images]).astype(np.float32)
    expected = np.asarray(model(pixels, training=False))
    with zipfile.ZipFile(report.artifacts["openvino"].path) as zf:
        zf.extractall(out / "ir")
    core = ov.Core()
    for path in (out / "ir" / "tiny_openvino" / "tiny.xml", report.artifacts["onnx"].path):
        read = core.read_model(str(path))
        assert [i.get_any_name() for i in read.inputs] == ["pixels"], path
        assert str(read.input(0).get_partial_shape()) == f"[?,{SIZE},{SIZE},3]", path
        assert len(read.outputs) == 1, (path, read.outputs)
        compiled = core.compile_model(read, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        np.testing.assert_allclose(compiled(pixels)[0], expected, atol=1e-5, err_msg=str(path))
        np.testing.assert_allclose(compiled(pixels[:1])[0], expected[:1], atol=1e-5, err_msg=str(path))
    onnx.checker.check_model(str(report.artifacts["onnx"].path))
    runner = export.runner_for(report.artifacts["openvino"])
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def test_sigmoid_model_parity_and_uploaded_bytes(tmp_path, images):
    model = model_with_augmentation(classes=2)
    uploads = [(f"upload{i}.png", open(p, "rb").read()) for i, p in enumerate(images[:4])]
    uploads.append(("broken.png", b"not an image"))
    report = export.export_all(model, tmp_path, formats=["tflite"], parity_images=uploads, classes=["cats", "dogs"])
    assert set(report.artifacts) == {"tflite"} and not report.errors
    parity = report.parity
    assert list(parity["image"]) == ["upload0.png", "upload1.png", "upload2.png", "upload3.png", "broken.png"]
    assert set(parity["keras"][:4]) <= {"cats", "dogs"}
    assert parity["all agree"][:4].all()
    assert parity.loc[4, "keras"].startswith("skipped: not an image")
    assert not (tmp_path / "model.keras").exists()  # only what was asked for (the SavedModel is the TFLite source)


def test_quantization_shrinks_the_file(tmp_path):
    report = export.export_all(model_with_augmentation(wide=True), tmp_path,
                               formats=["tflite", "tflite_float16", "tflite_dynamic"])
    size = {k: a.size_bytes for k, a in report.artifacts.items()}
    assert size["tflite"] > 4 * 512 * 512  # float32 weights
    assert size["tflite_float16"] < 0.6 * size["tflite"]
    assert size["tflite_dynamic"] < 0.35 * size["tflite"]
    assert report.parity is None  # no images given: no parity table


def test_failures_are_reported_per_format(tmp_path, monkeypatch, images):
    def broken(*args, **kwargs):
        raise RuntimeError("converter exploded")

    import tensorflow as tf

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", broken)
    report = export.export_all(tiny_model(), tmp_path, formats=["keras", "tflite", "tflite_dynamic"],
                               parity_images=images[:2], classes=["a", "b", "c"])
    assert set(report.artifacts) == {"keras"}
    assert set(report.errors) == {"tflite", "tflite_dynamic"}
    assert "converter exploded" in report.errors["tflite"] and "float32" in report.errors["tflite"]
    assert report.parity["all agree"].all()  # the .keras export is still checked
    with pytest.raises(TransferLabError, match="Unknown export format"):
        export.export_all(tiny_model(), tmp_path, formats=["coreml"])
    with pytest.raises(TransferLabError, match="No usable image"):
        export.parity_check(tiny_model(), {}, [("x.png", b"nope")], ["a"])
    report = export.export_all(tiny_model(), tmp_path, formats=["keras"], parity_images=[("x.png", b"nope")])
    assert set(report.artifacts) == {"keras"} and "No usable image" in report.errors["parity"]


def test_openvino_and_onnx_failures_leave_the_others(tmp_path, monkeypatch, images):
    import keras
    import openvino as ov

    def broken(*args, **kwargs):
        raise RuntimeError("no conversion rule")

    def no_tf2onnx(*args, **kwargs):
        raise ImportError("This requires the tf2onnx module.")

    monkeypatch.setattr(ov, "convert_model", broken)
    monkeypatch.setattr(keras.Model, "export", no_tf2onnx)
    report = export.export_all(model_with_augmentation(), tmp_path, formats=["tflite", "openvino", "onnx"],
                               parity_images=images[:3], classes=["a", "b", "c"])
    assert set(report.artifacts) == {"tflite"}
    assert report.errors == {"openvino": "OpenVINO IR conversion failed: no conversion rule",
                             "onnx": "ONNX export failed: This requires the tf2onnx module."}
    assert report.parity["all agree"].all() and "openvino" not in report.parity
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite", "model_savedmodel", "model_savedmodel.zip"]


def test_an_export_that_does_not_run_is_named_and_the_others_checked(tmp_path, monkeypatch, images):
    def unconvertible(self, path):
        raise RuntimeError("No conversion rule found for operations: StatelessRandomUniformV2")

    monkeypatch.setattr(export.OpenVINORunner, "__init__", unconvertible)
    model = model_with_augmentation()
    report = export.export_all(model, tmp_path, formats=["tflite", "onnx"], parity_images=images[:3],
                               classes=["a", "b", "c"])
    assert set(report.artifacts) == {"tflite", "onnx"}  # still offered: another runtime may run it
    assert report.errors == {"onnx": "exported, but it did not run for the parity check: "
                                     "No conversion rule found for operations: StatelessRandomUniformV2"}
    assert "tflite" in report.parity and "onnx" not in report.parity and report.parity["all agree"].all()
    with pytest.raises(TransferLabError, match=r"ONNX \(\.onnx\): exported, but it did not run"):
        export.parity_check(model, {"onnx": report.artifacts["onnx"]}, images[:1], ["a", "b", "c"])


def test_onnx_alone_skips_the_savedmodel(tmp_path, images):
    report = export.export_all(tiny_model(), tmp_path, formats=["onnx"], parity_images=images[:3],
                               classes=["a", "b", "c"])
    assert set(report.artifacts) == {"onnx"} and not report.errors
    assert report.parity["all agree"].all() and report.parity["onnx max |Δp|"].max() < 1e-5
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_validation_images_of_a_run_mix_the_classes(tl_home, image_folder):
    import pandas as pd

    from core.runs.store import RunStore

    run = RunStore().create({"strategy": "feature_extraction", "dataset": str(image_folder)})
    val = sorted(str(p) for p in (image_folder / "validation").rglob("*.png"))
    # no predictions yet: the dataset's validation split, classes interleaved
    picked = export.validation_images(run, 4)
    assert len(picked) == 4 and [p.split("/")[-2] for p in picked] == ["a", "b", "a", "b"]
    frame = pd.DataFrame({"path": val + ["/gone.png"], "true": [p.split("/")[-2] for p in val] + ["a"]})
    run.write_predictions(frame)
    picked = export.validation_images(run, 3)
    assert [p.split("/")[-2] for p in picked] == ["a", "b", "a"] and "/gone.png" not in picked
    assert export.validation_images(run, 100) == [p for pair in zip(val[:4], val[4:]) for p in pair]


def test_export_folder_is_inside_the_data_directory(tl_home):
    folder = export.export_folder("run-20260101-000000-x ../../etc")
    assert folder.is_dir() and tl_home in folder.parents
    assert ".." not in folder.name.split("-")

