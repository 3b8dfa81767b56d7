"""core.nets.backbones: registry, weight resolution, offline errors, random init,
local backbones, and the preprocessing layer against keras.applications."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils

from core.hashing import file_id
from core import settings
from core.nets.backbones import (
    KERAS_BACKBONES,
    get_spec,
    list_backbones,
    load_backbone,
    load_classifier,
    preprocess_layer,
    weights_location,
)
from core.errors import UnknownBackbone, WeightsUnavailable
from core.nets.layers import ChannelAffine
from tests.helpers import make_local_backbone

# ---------------------------------------------------------------- helpers


@pytest.fixture
def keras_models(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache (``$KERAS_HOME/models``) for this test only."""
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home / "models"


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    return folder


@pytest.fixture
def offline(monkeypatch) -> list:
    """No network: every Keras download attempt is recorded and fails at once."""
    calls: list[tuple[str, str]] = []

    def no_network(fname=None, origin=None, *args, **kwargs):
        calls.append((fname, origin))
        raise URLError("network is unreachable (test)")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return calls


@pytest.fixture(scope="module")
def mobilenet_32():
    """A MobileNet no-top base at 32 px, random init, built once for the module."""
    return keras.applications.MobileNet(weights=None, include_top=False, input_shape=(32, 32, 3))


def _write_weights(model, path: Path, seed: int) -> list[np.ndarray]:
    """Write distinguishable weights to ``path`` in the legacy .h5 layout the official files use."""
    rng = np.random.default_rng(seed)
    # positive values keep BatchNorm variances valid, so the model still computes
    weights = [rng.uniform(0.01, 0.1, w.shape).astype(np.float32) for w in model.get_weights()]
    weights[0][...] = seed / 10.0  # first conv kernel: a visible marker
    model.set_weights(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return weights


def _same_weights(model, expected: list[np.ndarray]) -> bool:
    got = model.get_weights()
    return len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


def _pixels(shape=(2, 32, 32, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


# ---------------------------------------------------------------- registry

# name: (constructor, default size, min size, params (M), depth, top-1, top-5) from the Keras docs
EXPECTED = {
    "vgg16": ("VGG16", 224, 32, 138.4, 16, 71.3, 90.1),
    "vgg19": ("VGG19", 224, 32, 143.7, 19, 71.3, 90.0),
    "resnet50": ("ResNet50", 224, 32, 25.6, 107, 74.9, 92.1),
    "inception_v3": ("InceptionV3", 299, 75, 23.9, 189, 77.9, 93.7),
    "xception": ("Xception", 299, 71, 22.9, 81, 79.0, 94.5),
    "inception_resnet_v2": ("InceptionResNetV2", 299, 75, 55.9, 449, 80.3, 95.3),
    "mobilenet": ("MobileNet", 224, 32, 4.3, 55, 70.4, 89.5),
    "mobilenet_v2": ("MobileNetV2", 224, 32, 3.5, 105, 71.3, 90.1),
    "densenet121": ("DenseNet121", 224, 32, 8.1, 242, 75.0, 92.3),
    "nasnet_mobile": ("NASNetMobile", 224, 32, 5.3, 389, 74.4, 91.9),
    "efficientnet_b0": ("EfficientNetB0", 224, 32, 5.3, 132, 77.1, 93.3),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_entry(name):
    ctor, size, min_size, params_m, depth, top1, top5 = EXPECTED[name]
    spec = get_spec(name)
    assert spec.family == "keras" and spec.name == name
    assert spec.constructor == ctor and callable(getattr(keras.applications, spec.constructor))
    assert (spec.default_size, spec.min_size) == (size, min_size)
    assert spec.params == pytest.approx(params_m * 1e6, rel=0.01)
    assert spec.depth == depth
    assert (spec.top1, spec.top5) == (top1, top5)
    assert spec.has_top is True
    assert spec.weights_filename(False).endswith(".h5") and spec.weights_filename(True).endswith(".h5")
    assert spec.weights_filename(False) != spec.weights_filename(True)
    assert spec.extra["url"].startswith("https://")


def test_every_registry_constructor_exists():
    for spec in KERAS_BACKBONES.values():
        assert hasattr(keras.applications, spec.constructor), spec.name
        assert spec.min_size <= spec.default_size
        assert 0 < spec.top1 < spec.top5 < 100


@pytest.mark.parametrize("name,include_top", [("mobilenet_v2", True), ("mobilenet", True)])
def test_registry_params_match_the_built_model(name, include_top):
    spec = get_spec(name)
    ctor = getattr(keras.applications, spec.constructor)
    model = ctor(weights=None, include_top=include_top, input_shape=(224, 224, 3) if include_top else (64, 64, 3))
    if include_top:
        assert model.count_params() == pytest.approx(spec.params, rel=0.05)
    else:
        assert model.count_params() < spec.params  # the top is part of the published count


def test_sized_weight_file_names():
    mv2 = get_spec("mobilenet_v2")
    assert mv2.weights_filename(False, 160) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    assert mv2.weights_filename(True, 96) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96.h5"
    # sizes without published weights fall back to the default size, as Keras does
    assert mv2.weights_filename(False, 32) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert get_spec("mobilenet").weights_filename(True, 128) == "mobilenet_1_0_128_tf.h5"
    assert get_spec("vgg16").weights_filename(False, 150) == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_unknown_backbone_and_too_small_input():
    with pytest.raises(UnknownBackbone, match="Unknown backbone 'resnet9000'.*vgg16"):
        get_spec("resnet9000")
    with pytest.raises(UnknownBackbone, match="at least 75 px"):
        load_backbone("inception_v3", weights=None, input_size=64)


# The file name Keras itself asks ``get_file`` for (and so caches under), no top,
# default size -- read from keras.applications' source.
KERAS_CACHE_NAMES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "xception": "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_resnet_v2": "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet": "mobilenet_1_0_224_tf_no_top.h5",
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "nasnet_mobile": "nasnet_mobile_no_top.h5",
    "efficientnet_b0": "efficientnetb0_notop.h5",
}

@pytest.mark.parametrize("name", sorted(KERAS_CACHE_NAMES))
def test_weights_already_in_keras_cache_are_found(name, keras_models):
    spec = get_spec(name)
    cached = keras_models / KERAS_CACHE_NAMES[name]
    cached.write_bytes(b"weights")
    assert weights_location(spec) == cached


@pytest.mark.parametrize("name", ["vgg16", "mobilenet", "nasnet_mobile"])
def test_keras_cache_names_are_what_keras_requests(name, offline):
    """Checks the table above against the real constructors (the download is intercepted)."""
    spec = get_spec(name)
    ctor = getattr(keras.applications, spec.constructor)
    with pytest.raises(URLError):
        ctor(weights="imagenet", include_top=False, input_shape=(spec.min_size, spec.min_size, 3))
    (fname, origin), = offline
    assert fname == KERAS_CACHE_NAMES[name]
    # and the registry's download URL is the one Keras uses
    assert origin == spec.extra["url"] + spec.weights_filename(False)


# ---------------------------------------------------------------- weight resolution

def test_weights_resolution_order(tmp_path, monkeypatch, keras_models, weights_dir, offline, mobilenet_32):
    spec = get_spec("mobilenet")
    fname = spec.weights_filename(include_top=False, size=32)
    assert fname == KERAS_CACHE_NAMES["mobilenet"]
    in_dir = _write_weights(mobilenet_32, weights_dir / fname, seed=1)
    in_cache = _write_weights(mobilenet_32, keras_models / fname, seed=2)
    downloaded_path = tmp_path / "download" / fname
    downloaded = _write_weights(mobilenet_32, downloaded_path, seed=3)

    # 1. the weights directory wins over the Keras cache, with no download attempt
    bb = load_backbone("mobilenet", "imagenet", input_size=32)
    assert _same_weights(bb.base, in_dir)
    assert float(bb.base.get_layer("conv1").kernel.numpy().mean()) == pytest.approx(0.1)
    assert bb.weights_id == f"imagenet-{file_id(weights_dir / fname)}"
    assert offline == []

    # 2. without it, the Keras cache wins over a download
    (weights_dir / fname).unlink()
    bb = load_backbone("mobilenet", "imagenet", input_size=32)
    assert _same_weights(bb.base, in_cache)
    assert bb.weights_id == f"imagenet-{file_id(keras_models / fname)}"
    assert offline == []

    # 3. with neither, Keras downloads the official file
    (keras_models / fname).unlink()
    requested = []

    def fake_download(fname=None, origin=None, *args, **kwargs):
        requested.append((fname, origin))
        return str(downloaded_path)

    monkeypatch.setattr(file_utils, "get_file", fake_download)
    bb = load_backbone("mobilenet", "imagenet", input_size=32)
    assert _same_weights(bb.base, downloaded)
    assert requested == [(fname, spec.extra["url"] + fname)]
    assert bb.weights_id == "imagenet-download"
    # and the features really come from those weights
    x = _pixels()
    direct = bb.base(preprocess_layer(spec)(x)).numpy()
    assert np.allclose(bb.model(x).numpy(), direct, atol=1e-5)


def test_missing_weights_offline_names_file_and_folder(keras_models, offline, monkeypatch, tmp_path):
    spec = get_spec("mobilenet_v2")
    fname = spec.weights_filename(False, 32)
    with pytest.raises(WeightsUnavailable) as err:
        load_backbone("mobilenet_v2", "imagenet", input_size=32)
    message = str(err.value)
    assert offline and offline[0][0] == fname  # Keras tried to fetch exactly this file
    assert f"'{fname}'" in message
    assert str(keras_models) in message
    assert spec.extra["url"] + fname in message
    assert settings.WEIGHTS_ENV in message

    # with a weights folder configured, the message points there
    folder = tmp_path / "my_weights"
    folder.mkdir()
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    with pytest.raises(WeightsUnavailable) as err:
        load_backbone("vgg16", "imagenet", input_size=32)
    message = str(err.value)
    assert "'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'" in message
    assert str(folder) in message
    assert offline[-1][0] == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_missing_classifier_weights_offline(keras_models, offline):
    with pytest.raises(WeightsUnavailable, match="'mobilenet_1_0_224_tf.h5'"):
        load_classifier("mobilenet", "imagenet")


def test_explicit_weights_file(tmp_path, mobilenet_32, offline):
    with pytest.raises(WeightsUnavailable, match="not found"):
        load_backbone("mobilenet", tmp_path / "nope.h5", input_size=32)
    path = tmp_path / "mine.h5"
    expected = _write_weights(mobilenet_32, path, seed=5)
    bb = load_backbone("mobilenet", str(path), input_size=32)
    assert _same_weights(bb.base, expected)
    assert bb.weights_id == f"file-{file_id(path)}"
    assert offline == []


# ---------------------------------------------------------------- random init

def test_random_weights_reproducible_by_seed(offline):
    a = load_backbone("mobilenet", weights=None, input_size=32, seed=1)
    b = load_backbone("mobilenet", weights=None, input_size=32, seed=1)
    c = load_backbone("mobilenet", weights=None, input_size=32, seed=2)
    assert a.weights_id == "random-1" and c.weights_id == "random-2"
    assert _same_weights(b.base, a.base.get_weights())
    assert not np.array_equal(a.base.get_weights()[0], c.base.get_weights()[0])
    x = _pixels()
    fa, fb, fc = (m.model(x).numpy() for m in (a, b, c))
    assert a.feature_shape == (1, 1, 1024) and fa.shape == (2, 1, 1, 1024)
    assert np.array_equal(fa, fb)
    # random-init features are tiny (BatchNorm keeps identity statistics): compare relatively
    assert np.abs(fa - fc).max() > 1e-2 * np.abs(fa).max() > 0
    assert offline == []  # random init never touches the network


# ---------------------------------------------------------------- local backbones

def test_local_backbone_is_listed_and_loads(weights_dir):
    net = make_local_backbone(weights_dir)
    specs = list_backbones()
    assert specs[0].name == "tiny"  # local first: they work offline
    assert {s.name for s in specs} >= set(EXPECTED)
    spec = get_spec("tiny")
    assert spec.family == "local" and spec.fixed_size and spec.has_top
    assert (spec.default_size, spec.params, spec.top1) == (32, net.count_params(), 12.5)
    assert spec.display_name == "tiny test net"
    assert weights_location(spec) == weights_dir / "tiny.keras"

    bb = load_backbone("tiny", input_size=224)  # fixed size: the manifest's 32 wins
    assert bb.input_size == 32 and bb.feature_shape == (8, 8, 12)
    assert bb.weights_id == f"imagenet-{file_id(weights_dir / 'tiny.keras')}"
    x = _pixels()
    mean, std = np.array([100.0, 110.0, 120.0]), np.array([50.0, 60.0, 70.0])
    expected = keras.Model(net.inputs, net.get_layer("top_activation").output)((x - mean) / std).numpy()
    assert np.allclose(bb.model(x).numpy(), expected, atol=1e-5)

    clf, size = load_classifier("tiny")
    assert size == 32
    probs = clf(x).numpy()
    assert probs.shape == (2, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(probs, net((x - mean) / std).numpy(), atol=1e-5)


def test_local_backbone_bgr_manifest(weights_dir):
    make_local_backbone(weights_dir, preprocessing={"mean": [1, 2, 3], "std": [2, 2, 2], "channel_order": "BGR"})
    scale, offset, reverse = get_spec("tiny").preprocess
    assert reverse is True and scale == (0.5, 0.5, 0.5) and offset == (-0.5, -1.0, -1.5)


def test_broken_manifests_are_skipped(weights_dir):
    make_local_backbone(weights_dir)
    model_bytes = (weights_dir / "tiny.keras").read_bytes()
    for bad in ("badjson", "nolayer", "badsize", "nosize"):
        (weights_dir / f"{bad}.keras").write_bytes(model_bytes)
    (weights_dir / "badjson.json").write_text("{ this is not json")
    manifest = json.loads((weights_dir / "tiny.json").read_text())
    del_layer = {k: v for k, v in manifest.items() if k != "feature_layer"}
    (weights_dir / "nolayer.json").write_text(json.dumps({**del_layer, "name": "nolayer"}))
    (weights_dir / "badsize.json").write_text(json.dumps({**manifest, "name": "badsize", "input_size": "big"}))
    (weights_dir / "nosize.json").write_text(json.dumps({**manifest, "name": "nosize", "input_size": []}))
    (weights_dir / "orphan.json").write_text(json.dumps({**manifest, "name": "orphan"}))  # no orphan.keras
    (weights_dir / "notes.json").write_text(json.dumps([1, 2, 3]))

    local = [s.name for s in list_backbones() if s.family == "local"]
    assert local == ["tiny"]
    for bad in ("badjson", "nolayer", "badsize", "nosize", "orphan", "notes"):
        with pytest.raises(UnknownBackbone):
            get_spec(bad)
    assert load_backbone("tiny").feature_shape == (8, 8, 12)


def test_local_random_weights_reproducible(weights_dir):
    net = make_local_backbone(weights_dir)
    a = load_backbone("tiny", weights=None, seed=3)
    b = load_backbone("tiny", weights=None, seed=3)
    c = load_backbone("tiny", weights=None, seed=4)
    pretrained = net.get_layer("conv").get_weights()[0]
    ka, kb, kc = (m.base.get_layer("conv").get_weights()[0] for m in (a, b, c))
    assert np.array_equal(ka, kb)
    assert not np.array_equal(ka, kc)
    assert not np.array_equal(ka, pretrained)
    assert a.weights_id == "random-3"


def test_weights_dir_without_local_backbones_lists_keras_only(weights_dir):
    assert [s.name for s in list_backbones()] == list(KERAS_BACKBONES)


# ---------------------------------------------------------------- preprocessing layer

PREPROCESS_MODULES = {
    "vgg16": "vgg16", "vgg19": "vgg19", "resnet50": "resnet50", "resnet50v2": "resnet_v2",
    "inception_v3": "inception_v3", "xception": "xception", "inception_resnet_v2": "inception_resnet_v2",
    "mobilenet": "mobilenet", "mobilenet_v2": "mobilenet_v2", "densenet121": "densenet",
    "nasnet_mobile": "nasnet", "efficientnet_b0": "efficientnet",
}


@pytest.mark.parametrize("name", sorted(PREPROCESS_MODULES))
def test_preprocess_layer_equals_keras_preprocess_input(name):
    spec = get_spec(name)
    reference = getattr(keras.applications, PREPROCESS_MODULES[name]).preprocess_input
    x = _pixels((3, 5, 7, 3), seed=11)
    expected = np.asarray(reference(x.copy()))
    got = preprocess_layer(spec)(x).numpy()
    assert got.shape == x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name,mode", [("vgg16", "caffe"), ("mobilenet_v2", "tf"), ("densenet121", "torch")])
def test_preprocess_modes_are_not_identity(name, mode):
    spec = get_spec(name)
    assert spec.preprocess_name == mode
    x = _pixels((1, 2, 2, 3), seed=1)
    ref = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode=mode)
    got = preprocess_layer(spec)(x).numpy()
    assert not np.allclose(ref, x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    if mode == "caffe":  # RGB -> BGR really happens: a pure red pixel lands in the last channel
        red = np.zeros((1, 1, 1, 3), np.float32)
        red[..., 0] = 255
        out = preprocess_layer(spec)(red).numpy()[0, 0, 0]
        assert out == pytest.approx([-103.939, -116.779, 255 - 123.68], abs=1e-3)


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2", "densenet121"])
def test_preprocess_layer_survives_save_and_safe_load(name, tmp_path):
    spec = get_spec(name)
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, preprocess_layer(spec, name="prep")(inputs))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    layer = loaded.get_layer("prep")
    assert isinstance(layer, ChannelAffine)
    assert layer.get_config()["scale"] == list(spec.preprocess[0])
    assert layer.reverse_channels == spec.preprocess[2]
    x = _pixels((2, 6, 6, 3), seed=4)
    expected = getattr(keras.applications, PREPROCESS_MODULES[name]).preprocess_input(x.copy())
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_backbone_model_survives_save_and_safe_load(weights_dir, tmp_path):
    make_local_backbone(weights_dir)
    bb = load_backbone("tiny")
    path = tmp_path / "features.keras"
    bb.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = _pixels()
    np.testing.assert_allclose(loaded(x).numpy(), bb.model(x).numpy(), atol=1e-6)
    assert any(isinstance(l, ChannelAffine) for l in loaded.layers)


# ---------------------------------------------------------------- one registry, resolved once (issue 31)

def test_a_dropped_in_backbone_is_seen_without_a_restart_and_lookups_do_not_reparse(weights_dir, monkeypatch):
    """Adding a local backbone is one place (a manifest + model file in the weights folder): the
    registry picks it up on the next lookup, and an unchanged folder is never parsed again."""
    from core.nets import backbones
    from core.nets.loaded import loaded_backbone

    parsed: list[str] = []
    real = backbones.local_backbone
    monkeypatch.setattr(backbones, "local_backbone", lambda manifest: parsed.append(manifest.stem) or real(manifest))

    make_local_backbone(weights_dir)
    assert get_spec("tiny").family == "local" and parsed == ["tiny"]
    registry = backbones.registry()
    for _ in range(25):  # every kind of lookup the pages and analyses make
        get_spec("tiny"), get_spec("vgg16"), list_backbones(), backbones.default_backbone()
    assert parsed == ["tiny"] and backbones.registry() is registry

    make_local_backbone(weights_dir, name="tiny48", size=48)  # the one place a new backbone goes
    spec = get_spec("tiny48")
    assert parsed == ["tiny", "tiny", "tiny48"]  # rebuilt once for the new folder state
    assert [s.name for s in list_backbones()][:2] == ["tiny", "tiny48"] and backbones.registry() is not registry
    assert spec.size_for() == spec.size_for(224) == 48  # a local backbone's size is fixed
    assert backbones.resolve(spec) is spec and get_spec("tiny48") is spec  # the object, passed on as is
    bb = loaded_backbone(spec, weights=None)
    assert bb.spec is spec and bb.input_size == 48 and bb.feature_shape == (12, 12, 12)
    assert len(parsed) == 3

    (weights_dir / "tiny48.json").unlink()
    with pytest.raises(UnknownBackbone, match="Known backbones: tiny, vgg16"):
        get_spec("tiny48")


def test_one_input_size_rule_and_typed_errors(weights_dir):
    from core.errors import BadInputSize, ConfigError, NoImageNetTop, TransferLabError

    v3 = get_spec("inception_v3")
    assert (v3.size_for(), v3.size_for(None), v3.size_for(0), v3.size_for(150)) == (299, 299, 299, 150)
    assert v3.check_size(75) == 75
    with pytest.raises(BadInputSize, match="at least 75 px, got 64") as err:
        v3.check_size(64)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, UnknownBackbone)  # broad catches still work
    with pytest.raises(BadInputSize):
        load_backbone(v3, weights=None, input_size=64)

    make_local_backbone(weights_dir, name="headless", predictions_layer="")
    headless = get_spec("headless")
    assert not headless.has_top
    with pytest.raises(NoImageNetTop, match="no ImageNet classification top") as err:
        load_classifier(headless)
    assert isinstance(err.value, WeightsUnavailable) and isinstance(err.value, TransferLabError)
    assert not isinstance(err.value, UnknownBackbone)  # it is a known backbone


def test_one_default_backbone(tmp_path, monkeypatch, keras_models):
    import inspect

    from core.__main__ import parser
    from core.analysis import advisor
    from core.nets import backbones
    from core.train.strategies import StrategyConfig

    assert backbones.DEFAULT_BACKBONE == "efficientnet_lite0"  # the shipped offline weights
    assert StrategyConfig().backbone == backbones.DEFAULT_BACKBONE
    assert inspect.signature(advisor.advise).parameters["backbone"].default == backbones.DEFAULT_BACKBONE
    for command in (["extract", "--dataset", "d"], ["advise", "--dataset", "d"]):
        assert parser().parse_args(command).backbone == backbones.DEFAULT_BACKBONE

    # the app's default where the default backbone is not installed: the first backbone usable
    # offline, else a small download (with the shipped weights: test_the_app_starts_offline_...)
    folder = tmp_path / "only_tiny"
    make_local_backbone(folder)
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    assert backbones.default_backbone() == "tiny"
    monkeypatch.delenv(settings.WEIGHTS_ENV)
    assert backbones.default_backbone() == "mobilenet_v2"


@pytest.mark.real
def test_the_app_starts_offline_on_the_default_backbone(shared_assets):
    from core.nets import backbones

    assert backbones.default_backbone() == backbones.DEFAULT_BACKBONE
    spec = get_spec(backbones.DEFAULT_BACKBONE)
    assert spec.family == "local" and weights_location(spec) is not None  # no download needed
