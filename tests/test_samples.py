"""Finding the cats-vs-dogs sample locally, and fetching it (from a local file:// URL)."""

from __future__ import annotations

import zipfile

import pytest

from core.data import samples
from core.errors import DatasetError
from tests.helpers import write_images


def _make_sample(root):
    for i, cls in enumerate(["cats", "dogs"]):
        write_images(root / "train" / cls, i, 2)
        write_images(root / "validation" / cls, i, 1)
    return root


def test_not_found_says_where_to_put_it(tl_home, monkeypatch):
    monkeypatch.delenv(samples.SAMPLES_ENV, raising=False)
    assert samples.find_sample() is None
    msg = samples.missing_message()
    assert samples.SAMPLE_URL in msg and str(tl_home / "samples" / "cats_vs_dogs") in msg


@pytest.mark.parametrize("where", ["samples", "users/local/datasets"])  # the team's copy; the flat layout's, migrated
def test_found_in_data_directory(tl_home, monkeypatch, where):
    monkeypatch.delenv(samples.SAMPLES_ENV, raising=False)
    wrapped = _make_sample(tl_home / where / "cats_vs_dogs" / "cats_and_dogs_filtered")
    assert samples.find_sample() == wrapped.parent


@pytest.mark.parametrize("named", [True, False])
def test_found_through_samples_env(tmp_path, monkeypatch, named):
    target = _make_sample(tmp_path / "samples" / "cats_vs_dogs")
    monkeypatch.setenv(samples.SAMPLES_ENV, str(target.parent if named else target))
    assert samples.find_sample() == target


def test_empty_folders_do_not_count(tmp_path, monkeypatch):
    (tmp_path / "cats_vs_dogs" / "train").mkdir(parents=True)
    monkeypatch.setenv(samples.SAMPLES_ENV, str(tmp_path))
    assert samples.find_sample() is None


def test_download_extracts_into_data_directory(tmp_path, tl_home):
    src = _make_sample(tmp_path / "cats_and_dogs_filtered")
    archive = tmp_path / "sample.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.rglob("*.png"):
            zf.write(f, f.relative_to(tmp_path).as_posix())
    seen = []
    found = samples.download_sample(archive.as_uri(), progress=lambda d, t: seen.append((d, t)))
    assert found == tl_home / "samples" / "cats_vs_dogs"
    assert (found / "cats_and_dogs_filtered" / "train" / "dogs").is_dir()
    assert seen[-1][0] == archive.stat().st_size
    assert not list((tl_home / "samples").glob(".sample.*"))  # temp zip removed


def test_download_offline_is_a_friendly_error(tl_home):
    with pytest.raises(DatasetError, match="Could not download the sample.*unzip it into"):
        samples.download_sample("http://127.0.0.1:9/cats.zip", timeout=5)
    assert not list((tl_home / "samples").iterdir())


def test_download_of_a_bad_zip_is_rejected(tmp_path, tl_home):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip")
    with pytest.raises(DatasetError, match="not usable.*bad zip"):
        samples.download_sample(bad.as_uri())
