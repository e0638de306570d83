"""``scipy`` with its submodules, and ``formulaic``, imported on first use.

``scipy.stats`` alone takes about 0.6 s to import, and jaxhlm needs it only for p-values,
intervals and tests, not to fit. Modules write ``from ._lazy import scipy`` and then
``scipy.stats.t.sf(...)`` as usual; the submodule is imported at its first use (after that the
lookup is a dictionary access in ``sys.modules``).
"""
from __future__ import annotations

import importlib

__all__ = ["scipy", "formulaic"]


class _LazyScipy:
    """Attribute ``name`` is ``importlib.import_module("scipy." + name)``."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return importlib.import_module(f"scipy.{name}")

    def __repr__(self) -> str:
        return "<scipy, submodules imported on first use (jaxhlm._src._lazy)>"


scipy = _LazyScipy()


class _LazyModule:
    """A module imported at the first attribute lookup (formulaic: about 0.5 s beyond pandas, and
    only the out-of-core encoder uses it)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<{self._name}, imported on first use (jaxhlm._src.base.lazy)>"


formulaic = _LazyModule("formulaic")
