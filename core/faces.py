"""The packages' public faces (PEP 562): ``from core.runs import RunStore, jobs`` imports only
what it names, so importing a face costs nothing (no TensorFlow for a page or ``--help``)."""

from __future__ import annotations

import importlib
import sys


def face(package: str, public: list[str], names: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``'s ``__init__``: ``names`` maps an exported name to the
    submodule that defines it; any other name in ``public`` (the ``__all__``) is a submodule. Nothing is
    kept in the package: each lookup hands out the submodule's current attribute (tests monkeypatch them)."""
    exported = frozenset(public)

    def __getattr__(name: str):
        if name not in exported:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        return importlib.import_module(f"{package}.{name}")

    def __dir__():
        return sorted({*vars(sys.modules[package]), *exported})

    return __getattr__, __dir__
