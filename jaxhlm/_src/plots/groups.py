"""Per-group regression lines: all groups on one Axes, or one panel per group (lattice style)."""
from __future__ import annotations

import math

import numpy as np

from ..base.errors import ArgumentError
from . import _common as c

__all__ = ["group_lines", "group_panels"]


def _lines(fit, x: str, group, at):
    """Per-level intercepts and slopes over ``x`` and the average line, as
    ``(group, a, slope, a_mean, slope_mean, x values per row, factor)``."""
    group = c.factor(fit, group)
    coef = fit.coef[group]
    if x not in coef.columns:
        raise c.missing(x, list(coef.columns), "a column of the model")
    inter = [col for col in coef.columns if col != x and x in col.split(":")]
    if inter:
        raise ArgumentError(
            f"straight lines in {x!r} need a model without interactions with it; it has {', '.join(inter)}")
    at = dict(at or {})
    for k in at:
        if k not in coef.columns or k == x:
            raise c.missing(k, [col for col in coef.columns if col != x], "a column of the model other than x (at=)")
    rows = c.row_columns(fit)
    fac = next(f for f in fit.design.factors if f.name == group)
    cnt = np.bincount(fac.codes, minlength=fac.nlevels).astype(float)
    C = coef.to_numpy()
    a = np.zeros(len(coef))
    a_mean = 0.0
    fe = fit.fixef
    for k, col in enumerate(coef.columns):
        if col == x:
            continue
        if col in at:
            w, wbar = np.full(len(coef), float(at[col])), float(at[col])
        else:
            v = rows[col]
            w = np.bincount(fac.codes, v, minlength=fac.nlevels) / np.maximum(cnt, 1.0)
            wbar = float(v.mean())
        a += C[:, k] * w
        a_mean += float(fe.get(col, 0.0)) * wbar
    return group, a, coef[x].to_numpy(), a_mean, float(fe.get(x, 0.0)), rows[x], fac


def group_lines(fit, x: str, group: str | None = None, ax=None, *, at: dict | None = None, points: bool = False,
                line_kw: dict | None = None, mean_kw: dict | None = None, legend: bool = True, title=None,
                xlabel=None, ylabel=None):
    """One regression line per group over ``x``, with the average line drawn thick.

    For level ``j`` of the grouping factor the line is ``y = a_j + c_{jx} x`` with the
    per-level coefficients of :attr:`LinearMixedModel.coef` (fixed effects plus the level's
    conditional modes, lme4's ``coef``), ``c_{jx}`` the coefficient of ``x`` and
    ``a_j = sum_{k != x} c_{jk} w_{jk}``: every other column ``k`` is held at ``w_{jk}``, its
    mean over level ``j``'s rows (1 for the intercept; a school-level predictor such as
    ``urban`` at the school's own value). The thick average line is
    ``y = sum_{k != x} beta_k wbar_k + beta_x x`` with the means ``wbar_k`` over all rows.
    Lines span the observed range of ``x`` (ggplot's ``geom_abline`` per school).

    Random intercepts give parallel lines; random slopes fan out; ``(0 + x | g)`` gives lines
    through a common intercept.

    Parameters
    ----------
    fit : LinearMixedModel
    x : str
        A numeric column of the model (a fixed or random-effects column, e.g. ``"family_inc"``).
    group : str, optional
        Grouping factor; required when the model has several.
    ax : matplotlib.axes.Axes, optional
    at : dict, optional
        Values ``{column: value}`` at which to hold other columns, for all lines.
    points : bool, default False
        Also draw the data (light grey).
    line_kw, mean_kw : dict, optional
        Styling of the group lines (a :class:`~matplotlib.collections.LineCollection`) and of the
        average line (:meth:`~matplotlib.axes.Axes.plot`).
    legend : bool, default True
        Label the two kinds of line in a legend.
    title, xlabel, ylabel : str, optional
        Replace the defaults (no title; ``x``; the response).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ColumnNotFoundError
        ``x`` or a key of ``at`` is not a column of the model.
    ArgumentError
        A column of the model is an interaction with ``x`` (the lines would not be straight).
    """
    from matplotlib.collections import LineCollection

    group, a, slope, a_mean, bx, xv, _ = _lines(fit, x, group, at)
    x0, x1 = float(np.min(xv)), float(np.max(xv))
    ax = c.axes(ax)
    if points:
        ax.scatter(xv, fit.y.to_numpy(), s=6, color="0.55", alpha=0.5, linewidths=0, zorder=1)
    segs = np.stack([np.column_stack([np.full_like(a, x0), a + slope * x0]),
                     np.column_stack([np.full_like(a, x1), a + slope * x1])], axis=1)
    lk = {"colors": "C0", "linewidths": 0.6, "alpha": 0.35 if len(a) > 50 else 0.7, "zorder": 2,
          "label": f"{group} ({len(a)} levels)"}
    lk.update(line_kw or {})
    ax.add_collection(LineCollection(segs, **lk))
    mk = {"color": "C3", "lw": 3.5, "zorder": 3, "label": "fixed effects (average)"}
    mk.update(mean_kw or {})
    ax.plot([x0, x1], [a_mean + bx * x0, a_mean + bx * x1], **mk)
    ax.autoscale_view()
    c.label(ax, title, xlabel, ylabel, "", x, fit.design.response_name)
    if legend:
        ax.legend(loc="best", frameon=False)
    return ax


def _pick_levels(fit, group, levels, max_panels):
    """Indices of the levels to draw: the given ones, all, or ``max_panels`` spread evenly
    over the levels sorted by their first conditional mode."""
    fac = next(f for f in fit.design.factors if f.name == group)
    labels = [str(v) for v in fac.levels]
    if levels is not None:
        want = [str(v) for v in levels]
        bad = [v for v in want if v not in labels]
        if bad:
            raise c.missing(bad[0], labels[:20], f"a level of {group}")
        return [labels.index(v) for v in want], False
    if fac.nlevels <= max_panels:
        return list(range(fac.nlevels)), False
    b = fit.ranef[group].iloc[:, 0].to_numpy()
    order = np.argsort(b, kind="stable")
    pick = order[np.unique(np.round(np.linspace(0, fac.nlevels - 1, max_panels)).astype(int))]
    return sorted(int(i) for i in pick), True


def group_panels(fit, x: str, group: str | None = None, *, levels=None, max_panels: int = 24, ncols: int | None = None,
                 at: dict | None = None, average: bool = True, panel_size: float = 1.9, point_kw: dict | None = None,
                 line_kw: dict | None = None, title=None, xlabel=None, ylabel=None):
    """One panel per group with its data and fitted line (lattice's ``xyplot(y ~ x | g)``).

    Each panel shows the rows of one level of the grouping factor (``y`` against ``x``) and
    the level's fitted line ``y = a_j + c_{jx} x`` of :func:`group_lines` (other columns held
    at the level's means) over the level's range of ``x``; with ``average`` also the fixed-
    effects line (dashed). Panels share both axes and carry the level as a strip label.

    Parameters
    ----------
    fit : LinearMixedModel
    x : str
        A numeric column of the model.
    group : str, optional
        Grouping factor; required when the model has several.
    levels : sequence, optional
        The levels to draw, in this order. Default: all when there are at most
        ``max_panels``, else ``max_panels`` levels spread evenly over the levels sorted by
        their first conditional mode (the figure's title says so).
    max_panels : int, default 24
    ncols : int, optional
        Panels per row (default about square).
    at : dict, optional
        Values at which to hold other columns (as :func:`group_lines`).
    average : bool, default True
        Draw the fixed-effects line in every panel.
    panel_size : float, default 1.9
        Width and height of one panel in inches.
    point_kw, line_kw : dict, optional
        Styling of the points (:meth:`~matplotlib.axes.Axes.scatter`) and of the fitted lines.
    title, xlabel, ylabel : str, optional
        Figure title (default none, or a note on the levels shown) and the shared axis labels
        (default ``x`` and the response).

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes`` holds the panels in level order (unused grid cells are removed).
    """
    group, a, slope, a_mean, bx, xv, fac = _lines(fit, x, group, at)
    idx, sampled = _pick_levels(fit, group, levels, max_panels)
    if not idx:
        raise ArgumentError("levels is empty")
    n = len(idx)
    ncols = int(ncols) if ncols else int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    fig = c.pyplot().figure(figsize=(panel_size * ncols + 0.8, panel_size * nrows + 0.8), layout="constrained")
    axs = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    y = fit.y.to_numpy()
    pk = {"s": 10, "color": "C0", "alpha": 0.6, "linewidths": 0}
    pk.update(point_kw or {})
    lk = {"color": "C3", "lw": 1.6}
    lk.update(line_kw or {})
    for ax, j in zip(axs, idx):
        rows = fac.codes == j
        xj = xv[rows]
        ax.scatter(xj, y[rows], **pk)
        if xj.size:
            lo, hi = float(np.min(xj)), float(np.max(xj))
            ax.plot([lo, hi], [a[j] + slope[j] * lo, a[j] + slope[j] * hi], **lk)
            if average:
                ax.plot([lo, hi], [a_mean + bx * lo, a_mean + bx * hi], color="0.35", lw=1, ls="--")
        ax.set_title(str(fac.levels[j]), fontsize="small", pad=2,
                     bbox={"boxstyle": "square,pad=0.15", "facecolor": "#e8e8f4", "edgecolor": "none"})
        ax.tick_params(labelsize="small")
    for k, ax in enumerate(axs[n:], start=n):
        ax.remove()
        if k - ncols >= 0 and k - ncols < n:  # the panel above is now the last of its column
            axs[k - ncols].xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel(x if xlabel is None else xlabel)
    fig.supylabel(fit.design.response_name if ylabel is None else ylabel)
    note = f"{n} of {fac.nlevels} levels of {group}, spread over the sorted conditional modes" if sampled else ""
    t = note if title is None else title
    if t:
        fig.suptitle(t, fontsize="medium")
    return fig
