"""``scipy`` with its submodules imported on first use.

``scipy.stats`` alone takes about 0.6 s to import, and jaxhlm needs it only for p-values,
intervals and tests, not to fit. Modules write ``from ._lazy import scipy`` and then
``scipy.stats.t.sf(...)`` as usual; the submodule is imported at its first use (after that the
lookup is a dictionary access in ``sys.modules``).
"""
from __future__ import annotations

import importlib

__all__ = ["scipy"]


class _LazyScipy:
    """Attribute ``name`` is ``importlib.import_module("scipy." + name)``."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return importlib.import_module(f"scipy.{name}")

    def __repr__(self) -> str:
        return "<scipy, submodules imported on first use (jaxhlm._src._lazy)>"


scipy = _LazyScipy()
