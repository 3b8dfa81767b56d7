"""Typed errors whose message is what a user should read.

Pages catch ``TransferLabError`` and show ``str(err)``; anything else is a bug.
"""

from __future__ import annotations


class TransferLabError(Exception):
    """Base class: the message is written for the person using the app."""


class WeightsUnavailable(TransferLabError):
    """Pretrained weights could not be found locally nor downloaded."""


class UnknownBackbone(TransferLabError):
    """A backbone name that is not in the registry."""


class BadImage(TransferLabError):
    """A file that cannot be used as an image; the message says why."""


class DatasetError(TransferLabError):
    """A dataset source that cannot be scanned or used (missing, empty, one class...)."""


class UnsafeArchive(TransferLabError):
    """A zip upload rejected for safety (traversal, links, bombs, too many files)."""


class CacheCorrupt(TransferLabError):
    """A cache entry or stored file failed its integrity check."""


class RunError(TransferLabError):
    """A run that cannot be created, found, loaded or started."""


class StorageError(TransferLabError):
    """The data directory is missing, unwritable or full."""


class UploadTooLarge(TransferLabError):
    """An uploaded file over its size limit; the message names the file, its size and the limit."""


class EngineError(TransferLabError):
    """An inference engine that cannot be used as asked (unknown name, missing runtime)."""


class Cancelled(TransferLabError):
    """Long work (an extraction, a labelling pass) stopped because the person asked it to."""


class ConfigError(TransferLabError):
    """An option a user typed that cannot make a run configuration."""


class AccessDenied(TransferLabError):
    """A path typed into the app that leads outside the folders the server allows."""


class LowDiskSpace(StorageError):
    """Writing would leave less free disk than the server's margin; nothing was written."""


class ClusterError(TransferLabError):
    """The Ray cluster (``TRANSFER_LAB_RAY_ADDRESS``) cannot be reached or refused the work."""


class BadInputSize(UnknownBackbone, ConfigError):
    """An input size a backbone cannot take (below its smallest). A ``ConfigError`` (an option a
    user typed); also an ``UnknownBackbone`` only so that code written when that was raised for
    it still catches it: catch ``BadInputSize``."""


class NoImageNetTop(WeightsUnavailable):
    """A backbone without an ImageNet classification top asked for one (the live ImageNet
    classifier, zero-shot labelling): its top's weights are not there to load."""
