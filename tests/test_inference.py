"""core.serve.inference: the same pixels as training, top-k, batches where bad files are
listed and the rest go on, model loading (safe mode, cache by mtime), run models."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.serve import inference
from core.errors import BadImage, RunError
from tests.helpers import assert_matches_reference
from tests.helpers import pattern as _pattern

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)

SIZE = 32


# ---------------------------------------------------------------- helpers (also used by other test files)

def tiny_model(size: int = SIZE, classes: int = 3, seed: int = 0):
    """A pixels-in classifier like the ones runs save: preprocess layer inside, softmax
    (or one sigmoid unit for two classes) out."""
    import keras

    from core.nets.layers import ChannelAffine

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = ChannelAffine(scale=(1 / 127.5,) * 3, offset=(-1.0,) * 3, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    units, act = (1, "sigmoid") if classes == 2 else (classes, "softmax")
    outputs = keras.layers.Dense(units, activation=act, name="head_output")(x)
    return keras.Model(inputs, outputs, name="tiny")


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **save) if mode else Image.fromarray(array).save(buf, fmt, **save)
    return buf.getvalue()


def photo(seed: int = 0, size=(48, 40), label: int = 0) -> np.ndarray:
    return _pattern(label, np.random.default_rng(seed), size)


def crafted_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """40 wide x 20 high, left half red, right half blue, EXIF orientation 6 (rotate 90° clockwise)."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (230, 20, 20)
    arr[:, 20:] = (20, 20, 230)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), (220, 30, 30)), Image.new("RGB", (24, 24), (30, 30, 220))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def bad_and_odd_inputs() -> dict[str, tuple[bytes, str | None]]:
    """name -> (bytes, expected error substring or None when it must classify)."""
    good = png_bytes(photo(1))
    jpeg = png_bytes(photo(2), fmt="JPEG", quality=90)
    sixteen = (np.linspace(0, 65535, 30 * 20).reshape(30, 20)).astype(np.uint16)
    cmyk = io.BytesIO()
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(cmyk, "JPEG")  # CMYK red
    big = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(big, "PNG")  # a real 10,000 x 10,000 image (1-bit, small file)
    webp = png_bytes(photo(3), fmt="WEBP", lossless=True)
    bmp = png_bytes(photo(4), fmt="BMP")
    return {
        "good.png": (good, None),
        "photo.jpg": (jpeg, None),
        "notes.jpg": (b"this is a text file, not a photo\n" * 20, "not an image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "bomb.png": (crafted_png_header(30_000, 30_000), "decompression bomb"),
        "huge.png": (big.getvalue(), "100 MP exceeds the 64 MP decompression bomb limit"),
        "empty.png": (b"", "empty file"),
        "sixteen_bit.png": (png_bytes(sixteen), None),
        "cmyk.jpg": (cmyk.getvalue(), None),
        "rotated.jpg": (exif_rotated_jpeg(), None),
        "one_pixel.png": (png_bytes(np.full((1, 1, 3), 200, np.uint8)), None),
        "animated.gif": (animated_gif(), None),
        "photo.webp": (webp, None),
        "photo.bmp": (bmp, None),
    }


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.keras"
    tiny_model().save(path)
    return path


@pytest.fixture
def predictor(model_file):
    return inference.load_model_predictor(model_file, classes=["red", "green", "blue"])


# ---------------------------------------------------------------- preprocessing parity

def test_same_pixels_and_probabilities_as_the_training_pipeline(tmp_path, predictor):
    """What core.data.pipeline.image_dataset feeds at training == what inference feeds, per file."""
    from core.data.pipeline import image_dataset

    files = {}
    for name, (data, expected_error) in bad_and_odd_inputs().items():
        if expected_error is None:
            files[name] = tmp_path / name
            files[name].write_bytes(data)
    # a large non-square JPEG too: the training decoder's reduced-DCT draft must match here
    large = Image.fromarray(np.kron(photo(7, (60, 80)), np.ones((8, 8, 1), np.uint8)))
    files["large.jpg"] = tmp_path / "large.jpg"
    large.save(files["large.jpg"], "JPEG", quality=92)

    paths = [str(p) for p in files.values()]
    batches = list(image_dataset(paths, None, SIZE, batch_size=4).as_numpy_iterator())
    trained = np.concatenate([b[0] for b in batches])
    assert trained.shape == (len(paths), SIZE, SIZE, 3)
    for i, (name, path) in enumerate(files.items()):
        from_bytes = inference.decode(path.read_bytes(), SIZE)  # an upload arrives as bytes
        from_path = inference.decode(str(path), SIZE)
        assert from_bytes.dtype == np.uint8 and from_bytes.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(from_bytes, trained[i], err_msg=name)
        np.testing.assert_array_equal(from_path, trained[i], err_msg=name)

    probs = predictor.probabilities(np.stack([inference.decode(p, SIZE) for p in paths]))
    reference = np.asarray(predictor.model.predict(trained, verbose=0))
    assert_matches_reference(probs, reference, rtol=1e-5, atol=1e-6)


def test_orientation_modes_and_frames_are_decoded_right(predictor):
    inputs = bad_and_odd_inputs()
    rotated = inference.decode(inputs["rotated.jpg"][0], 40)
    # orientation 6: the stored left (red) half is shown on top after the 90° clockwise turn
    top, bottom = rotated[:15].reshape(-1, 3).mean(0), rotated[25:].reshape(-1, 3).mean(0)
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]
    gif = inference.decode(inputs["animated.gif"][0], 8)
    assert (gif[..., 0] > 180).all() and (gif[..., 2] < 80).all()  # first frame (red), not the second
    cmyk = inference.decode(inputs["cmyk.jpg"][0], 8).reshape(-1, 3).mean(0)
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60
    sixteen = inference.display_image(inputs["sixteen_bit.png"][0])
    assert sixteen.dtype == np.uint8 and sixteen[0, 0, 0] < 5 and sixteen[-1, -1, 0] > 250  # full range kept
    one = inference.decode(inputs["one_pixel.png"][0], SIZE)
    assert (one == 200).all()


# ---------------------------------------------------------------- top-k

def test_top_k_order_ties_and_bounds():
    probs = np.array([0.1, 0.4, 0.05, 0.4, 0.05])
    classes = list("abcde")
    assert inference.top_k(probs, classes, 3) == [(1, "b", 0.4), (3, "d", 0.4), (0, "a", 0.1)]
    assert [t[0] for t in inference.top_k(probs, classes, 99)] == [1, 3, 0, 2, 4]
    assert inference.top_k(probs, classes, 0) == [(1, "b", 0.4)]
    assert inference.top_k(np.array([0.2, 0.8]), ["x"], 2)[0] == (1, "class_1", 0.8)


def test_classify_matches_the_model(predictor):
    data = png_bytes(photo(5))
    result = inference.classify(predictor, data, name="p.png", k=2)
    expected = np.asarray(predictor.model(inference.decode(data, SIZE)[None].astype("float32")))[0]
    assert result.ok and result.name == "p.png"
    assert [t[0] for t in result.top] == list(np.argsort(-expected)[:2])
    assert result.label == ["red", "green", "blue"][int(expected.argmax())]
    assert_matches_reference(result.confidence, float(expected.max()), rtol=1e-5, atol=0)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.decode_ms > 0 and result.forward_ms > 0 and result.latency_ms == result.decode_ms + result.forward_ms
    assert result.pixels.shape == (SIZE, SIZE, 3)


def test_binary_sigmoid_model_gives_two_columns(tmp_path):
    path = tmp_path / "binary.keras"
    tiny_model(classes=2).save(path)
    p = inference.load_model_predictor(path, classes=["cats", "dogs"])
    assert p.binary and p.num_classes == 2
    data = png_bytes(photo(6))
    result = inference.classify(p, data)
    unit = float(np.asarray(p.model(inference.decode(data, SIZE)[None].astype("float32")))[0, 0])
    assert_matches_reference(result.probabilities, [1 - unit, unit], rtol=1e-5, atol=0)
    assert result.label == ("dogs" if unit > 0.5 else "cats")


# ---------------------------------------------------------------- bad input

def test_bad_files_get_messages_and_the_batch_goes_on(predictor):
    inputs = bad_and_odd_inputs()
    seen = []
    results = inference.classify_many(predictor, [(n, d) for n, (d, _) in inputs.items()], k=3, batch_size=3,
                                      progress=lambda done, total: seen.append((done, total)))
    assert [r.name for r in results] == list(inputs)
    for r, (name, (_, expected_error)) in zip(results, inputs.items()):
        if expected_error is None:
            assert r.ok, f"{name}: {r.error}"
            assert len(r.top) == 3 and 0 <= r.confidence <= 1
        else:
            assert not r.ok and not r.top, name
            assert expected_error in r.error, f"{name}: {r.error}"
            assert "Traceback" not in r.error
    assert seen[-1] == (len(inputs), len(inputs)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # the batch gives the same top-1 as one photo at a time
    for r, (name, (data, err)) in zip(results, inputs.items()):
        if err is None:
            single = inference.classify(predictor, data, k=3)
            assert single.top[0][0] == r.top[0][0]
            assert single.confidence == pytest.approx(r.confidence, rel=1e-4, abs=1e-6)


def test_decode_wraps_unexpected_decoder_failures(monkeypatch):
    def boom(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(inference, "load_rgb", boom)
    with pytest.raises(BadImage, match="cannot decode this image"):
        inference.decode(b"whatever", SIZE)
    with pytest.raises(BadImage, match="cannot read an image"):
        inference.decode(12345, SIZE)


def test_results_table_and_csv(predictor):
    inputs = bad_and_odd_inputs()
    items = [("good.png", inputs["good.png"][0]), ("notes.jpg", inputs["notes.jpg"][0])]
    results = inference.classify_many(predictor, items, k=2)
    frame = inference.results_frame(results, 2)
    assert list(frame.columns) == ["file", "status", "top1", "top1_index", "probability", "top_k", "latency_ms", "error",
                                   "answer", "not_sure", "unlike_data", "unusual"]
    assert frame.loc[0, "answer"] == results[0].label and frame["not_sure"].isna().all()  # not calibrated
    assert list(frame["status"]) == ["ok", "error"]
    assert frame.loc[0, "top1"] == results[0].label and frame.loc[0, "top1_index"] == results[0].index
    assert frame.loc[0, "top_k"].count(";") == 1 and frame.loc[1, "error"].startswith("not an image")
    csv = inference.results_csv(results, 2).decode()
    assert csv.splitlines()[0].startswith("file,status,top1") and "notes.jpg,error" in csv


# ---------------------------------------------------------------- loading

def test_model_cache_by_path_and_mtime(tmp_path):
    path = tmp_path / "m.keras"
    tiny_model(seed=1).save(path)
    first = inference.load_model_file(path)
    assert inference.load_model_file(path) is first
    time.sleep(0.01)
    tiny_model(seed=2).save(path)  # a rerun replaces the file: new mtime, new model
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    second = inference.load_model_file(path)
    assert second is not first
    assert not np.allclose(first.get_layer("conv").get_weights()[0], second.get_layer("conv").get_weights()[0])


def test_unsafe_or_missing_models_are_refused(tmp_path):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(RunError, match="cannot be loaded"):  # safe_mode: no arbitrary code from a file
        inference.load_model_file(tmp_path / "lambda.keras")
    with pytest.raises(RunError, match="not found"):
        inference.load_model_file(tmp_path / "absent.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(RunError, match="cannot be loaded"):
        inference.load_model_file(tmp_path / "junk.keras")


def test_load_run_reads_classes_and_refuses_unfinished(tl_home):
    from core.runs.store import RunStore

    store = RunStore()
    run = store.create({"strategy": "feature_extraction", "backbone": "tiny", "weights": "random"}, name="demo")
    with pytest.raises(RunError, match="no saved model"):
        inference.load_run(run)
    from core.runs.models import save_model

    save_model(tiny_model(classes=2), run.model_path)  # as core.runs.worker.train_run saves it
    run.write_metrics({"classes": ["cats", "dogs"], "val_accuracy": 0.5})
    run.set_status("done")
    p = inference.load_run(run)
    assert p.kind == "run" and p.run_id == run.id and p.classes == ["cats", "dogs"] and p.input_size == SIZE
    assert "demo" in p.name and "feature_extraction" in p.name
    run.write_metrics({})  # no class names stored: generic ones, still usable
    assert inference.load_run(run).classes == ["class_0", "class_1"]


def test_load_run_refuses_a_model_altered_after_training(tl_home):
    from core.errors import CacheCorrupt
    from core.runs.models import save_model
    from core.runs.store import RunStore

    run = RunStore().create({"strategy": "feature_extraction"})
    save_model(tiny_model(), run.model_path)
    run.set_status("done")
    data = run.model_path.read_bytes()
    run.model_path.write_bytes(data[: len(data) // 2])  # cut short after training
    with pytest.raises(CacheCorrupt, match="truncated or was modified"):
        inference.load_run(run)
    run.model_path.with_suffix(".json").unlink()
    run.model_path.write_bytes(data)
    with pytest.raises(CacheCorrupt, match="no integrity record"):
        inference.load_run(run)


def test_measure_latency(predictor):
    lat = inference.measure_latency(predictor, png_bytes(photo(8)), repeats=5, warmup=1)
    assert lat.repeats == 5 and len(lat.samples_ms) == 5
    assert 0 < lat.p50_ms <= lat.p95_ms
    with pytest.raises(BadImage):
        inference.measure_latency(predictor, b"nope", repeats=2)
