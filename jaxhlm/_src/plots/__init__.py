"""The plots of :mod:`jaxhlm.plotting` (documented there): residuals, random effects, groups."""
from __future__ import annotations

from ..base.errors import ArgumentError
from .groups import group_lines, group_panels
from .ranef import caterpillar, caterpillar_panels
from .residuals import qq, resid_fitted, scale_location

__all__ = ["resid_fitted", "scale_location", "qq", "caterpillar", "caterpillar_panels", "group_lines",
           "group_panels", "plot"]

_KINDS = {
    "resid": resid_fitted,
    "resid_fitted": resid_fitted,
    "scale_location": scale_location,
    "qq": qq,
    "lines": group_lines,
    "group_lines": group_lines,
    "panels": group_panels,
    "group_panels": group_panels,
    "caterpillar": caterpillar,
    "caterpillar_panels": caterpillar_panels,
    "ranef": caterpillar_panels,
}
_NEEDS_X = (group_lines, group_panels)


def plot(fit, kind: str = "resid", **kwargs):
    """Draw one of the plots by name; ``fit.plot(kind, ...)`` calls this.

    Parameters
    ----------
    fit : LinearMixedModel
    kind : str
        ``"resid"`` (:func:`resid_fitted`), ``"scale_location"``, ``"qq"``, ``"lines"``
        (:func:`group_lines`, needs ``x=``), ``"panels"`` (:func:`group_panels`, needs ``x=``),
        ``"caterpillar"`` or ``"ranef"`` (:func:`caterpillar_panels`).
    **kwargs
        Passed to that function.

    Returns
    -------
    matplotlib.axes.Axes or matplotlib.figure.Figure
        What that function returns.
    """
    try:
        fn = _KINDS[kind]
    except (KeyError, TypeError):
        raise ArgumentError(
            f"unknown plot kind {kind!r}; choose one of 'resid', 'scale_location', 'qq', 'lines', 'panels', "
            "'caterpillar', 'ranef'") from None
    if fn in _NEEDS_X and "x" not in kwargs:
        raise ArgumentError(f"plot(kind={kind!r}) needs x=, the column to draw the lines over")
    return fn(fit, **kwargs)
