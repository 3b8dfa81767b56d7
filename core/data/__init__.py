"""Data: image folders become a ``Dataset`` (files, labels, a stable split, a fingerprint, the bad
files listed); safe decoding, zips, uploads, statistics, datasets built in the app, tf.data."""

from core.faces import face

_NAMES = {"DEFAULT_SEED": "dataset", "DEFAULT_VAL_FRACTION": "dataset", "check_trainable": "dataset",
          "scan_folder": "dataset", "UPLOAD_TYPES": "images", "UPLOAD_TYPES_TEXT": "images", "load_rgb": "images",
          "thumbnail": "stats"}
__all__ = ["archives", "builder", "dataset", "images", "pipeline", "samples", "stats", "uploads", *_NAMES]
__getattr__, __dir__ = face(__name__, __all__, _NAMES)
