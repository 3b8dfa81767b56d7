"""Features: a backbone's vectors for a dataset, cached (checksummed, chunked, reused), and what
reads them: the one kNN, the one linear probe, extraction shared across a Ray cluster."""

from core.faces import face

_NAMES = {"extract_features": "cache", "dataset_features": "dataset", "features_cached": "dataset"}
__all__ = ["cache", "dataset", "neighbours", "probe", "sharded", *_NAMES]
__getattr__, __dir__ = face(__name__, __all__, _NAMES)
