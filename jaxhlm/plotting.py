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

from ._src.plots import caterpillar
from ._src.plots import caterpillar_panels
from ._src.plots import group_lines
from ._src.plots import group_panels
from ._src.plots import plot
from ._src.plots import qq
from ._src.plots import resid_fitted
from ._src.plots import scale_location

__all__ = ["resid_fitted", "scale_location", "qq", "caterpillar", "caterpillar_panels", "group_lines",
           "group_panels", "plot"]
