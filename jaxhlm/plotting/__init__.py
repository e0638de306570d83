"""Plots of fitted linear mixed models, drawn with matplotlib, for papers and for checking fits.

matplotlib is an optional dependency (``pip install "jaxhlm[plot]"``); it is imported only when a
plot is drawn. Single-panel plots draw on the Axes they are given (or on a new figure) and
return that :class:`matplotlib.axes.Axes`; multi-panel plots return their
:class:`matplotlib.figure.Figure`. Titles are short and neutral (no formula), and every
function takes ``title=``, ``xlabel=``, ``ylabel=`` (``title=""`` leaves the title out)::

    ax = jaxhlm.plotting.group_lines(fit, "family_inc", ylabel="Math score")
    ax.figure.savefig("lines.png", dpi=300)

==========================  ==================================================================
:func:`resid_fitted`        residuals against fitted values (R: ``plot(resid(m) ~ fitted(m))``)
:func:`scale_location`      ``sqrt(|standardised residuals|)`` against fitted values
:func:`qq`                  normal quantile-quantile plot of the residuals or of random effects
:func:`caterpillar`         sorted conditional modes of one term with intervals
:func:`caterpillar_panels`  all random-effects terms side by side (lme4's ``dotplot(ranef(m))``)
:func:`group_lines`         one regression line per group, the fixed-effects line thick
:func:`group_panels`        one panel per group: data and fitted line (``xyplot(y ~ x | g)``)
:func:`plot`                any of these by name (``fit.plot(kind=...)``)
==========================  ==================================================================
"""
from __future__ import annotations

from .._src.base.errors import ArgumentError
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
