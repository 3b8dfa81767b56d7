"""Saving and loading run models with an integrity record.

``model.keras`` is written atomically beside ``model.json`` (size + sha256);
loading checks both first, so a truncated or altered file is reported instead
of loaded, and Keras loads it with ``safe_mode=True`` (no lambdas, no pickle).
"""

from __future__ import annotations

from pathlib import Path

from core import atomic
from core.hashing import file_sha256
from core.errors import CacheCorrupt, RunError


def _record_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def save_model(model, target: Path) -> dict:
    """Save ``model`` to ``target`` (.keras) atomically and record its size and checksum."""
    from core.train.callbacks import save_model_atomic  # lazy: starts TensorFlow

    target = Path(target)
    save_model_atomic(model, target)
    record = {"file": target.name, "bytes": target.stat().st_size, "sha256": file_sha256(target)}
    atomic.write_json(_record_path(target), record)
    return record


def verify(path: Path) -> None:
    """Raise ``CacheCorrupt`` unless ``path`` matches its size and checksum record."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"This run has no saved model ({path.name} is missing).")
    record = atomic.read_json(_record_path(path))
    if not record:
        raise CacheCorrupt(f"{path} has no integrity record; it was not written by Transfer Lab or was cut short.")
    if path.stat().st_size != record["bytes"] or file_sha256(path) != record["sha256"]:
        raise CacheCorrupt(f"{path} is truncated or was modified after training; retrain the run to rebuild it.")


def load_model(path: Path):
    """Verify, then load a run model with Keras ``safe_mode=True``."""
    import keras

    from core.nets import layers  # noqa: F401  (registers ChannelAffine for deserialisation; lazy: starts TensorFlow)

    verify(path)
    try:
        return keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # a corrupt zip or an unknown layer: report, never load half
        raise CacheCorrupt(f"{path} could not be loaded: {exc}") from exc
