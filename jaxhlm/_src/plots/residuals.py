"""Residual diagnostics: residuals vs fitted, scale-location, normal Q-Q."""
from __future__ import annotations

import numpy as np

from . import _common as c

__all__ = ["resid_fitted", "scale_location", "qq"]


def resid_fitted(fit, ax=None, *, smooth: bool = False, nbins: int = 20, title=None, xlabel=None, ylabel=None,
                 **scatter_kw):
    """Residuals against fitted values.

    Plots the response residuals ``e_i = y_i - yhat_i`` against the conditional fitted values
    ``yhat_i = x_i' beta + z_i' b`` (R: ``plot(resid(m) ~ fitted(m))``), with a horizontal line
    at 0. With ``smooth``, a dashed curve joins the mean residual within each of up to
    ``nbins`` quantile bins of the fitted values (labelled in a legend): it should stay near 0
    when the mean structure fits.

    Parameters
    ----------
    fit : LinearMixedModel
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure by default.
    smooth : bool, default False
        Draw the binned-mean curve.
    nbins : int, default 20
        Number of quantile bins of the curve.
    title, xlabel, ylabel : str, optional
        Replace the defaults ("Residuals vs fitted", "Fitted values", "Residuals"); ``""``
        leaves the title out.
    **scatter_kw
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``s=``, ``alpha=``, ``color=``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = c.axes(ax)
    f = fit.fitted.to_numpy()
    r = fit.resid.to_numpy()
    ax.scatter(f, r, **c.point_style(len(f), **scatter_kw))
    ax.axhline(0.0, color="0.2", lw=1)
    if smooth and len(f) >= 10:
        mf, mr = c.binned_means(f, r, nbins)
        ax.plot(mf, mr, color="C3", lw=2, ls="--", label=f"binned mean ({len(mf)} quantile bins)")
        ax.legend(loc="best", frameon=False)
    c.label(ax, title, xlabel, ylabel, "Residuals vs fitted", "Fitted values", "Residuals")
    return ax


def scale_location(fit, ax=None, *, smooth: bool = False, nbins: int = 20, title=None, xlabel=None, ylabel=None,
                   **scatter_kw):
    """Scale-location plot: ``sqrt(|standardised residual|)`` against fitted values.

    The standardised residual is ``e_i / sigma`` (lme4's scaled residual); under constant
    residual variance the points show no trend in the fitted values (R's
    ``plot(m, sqrt(abs(resid(., scaled = TRUE))) ~ fitted(.))``). A dashed line marks
    ``E sqrt(|z|) = 0.822`` for a standard normal ``z``.

    Parameters
    ----------
    fit : LinearMixedModel
    ax : matplotlib.axes.Axes, optional
    smooth : bool, default False
        Add the binned-mean curve (labelled in a legend), as in :func:`resid_fitted`.
    nbins : int, default 20
    title, xlabel, ylabel : str, optional
        Replace the defaults ("Scale-location", "Fitted values",
        "sqrt(|standardised residuals|)").
    **scatter_kw
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = c.axes(ax)
    f = fit.fitted.to_numpy()
    v = np.sqrt(np.abs(fit.resid.to_numpy() / fit.sigma))
    ax.scatter(f, v, **c.point_style(len(f), **scatter_kw))
    # E sqrt|z| = 2^(1/4) Gamma(3/4) / sqrt(pi) for z ~ N(0, 1)
    ax.axhline(2**0.25 * 1.2254167024651776 / np.sqrt(np.pi), color="0.3", lw=1, ls=":",
               label="expected under normality")
    if smooth and len(f) >= 10:
        mf, mv = c.binned_means(f, v, nbins)
        ax.plot(mf, mv, color="C3", lw=2, ls="--", label=f"binned mean ({len(mf)} quantile bins)")
    ax.legend(loc="best", frameon=False)
    c.label(ax, title, xlabel, ylabel, "Scale-location", "Fitted values", "sqrt(|standardised residuals|)")
    return ax


def qq(fit, ax=None, *, group: str | None = None, term: str | None = None, title=None, xlabel=None, ylabel=None,
       **scatter_kw):
    """Normal quantile-quantile plot of the scaled residuals or of one random effect.

    Sorted values ``v_(i)`` are plotted against the normal quantiles
    ``Phi^{-1}((i - a) / (n + 1 - 2a))`` (``a = 3/8`` for ``n <= 10``, else ``1/2``, as R's
    ``ppoints``), with the line through the first and third quartiles (R's ``qqline``). Points
    near the line mean the values look normally distributed, as the model assumes.

    Parameters
    ----------
    fit : LinearMixedModel
    ax : matplotlib.axes.Axes, optional
    group : str, optional
        A grouping factor: plot its conditional modes (``fit.ranef[group][term]``) instead of the
        scaled residuals ``(y - yhat) / sigma``.
    term : str, optional
        Column of ``fit.ranef[group]``; default the first (usually ``(Intercept)``).
    title, xlabel, ylabel : str, optional
        Replace the defaults ("Normal Q-Q plot", "Standard normal quantiles", and "Scaled
        residuals" or "Conditional modes, <term> | <group>").
    **scatter_kw
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = c.axes(ax, figsize=(5.0, 5.0))
    if group is None:
        v = fit.resid.to_numpy() / fit.sigma
        what = "Scaled residuals"
    else:
        group, term, col = c.ranef_column(fit, group, term)
        v = col.to_numpy()
        what = f"Conditional modes, {term} | {group}"
    v = np.sort(v)
    z = c.norm_ppf(c.ppoints(len(v)))
    kw = {"s": 8 if len(v) > 1000 else 16, "color": "C0", "alpha": 0.6, "linewidths": 0}
    kw.update(scatter_kw)
    ax.scatter(z, v, **kw)
    q1, q3 = np.quantile(v, [0.25, 0.75])
    z1, z3 = c.norm_ppf([0.25, 0.75])
    ax.axline((z1, q1), slope=(q3 - q1) / (z3 - z1), color="C3", lw=1.5)
    c.label(ax, title, xlabel, ylabel, "Normal Q-Q plot", "Standard normal quantiles", what)
    return ax
