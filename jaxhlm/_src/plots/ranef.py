"""Caterpillar plots of the conditional modes (lme4's ``dotplot(ranef(m, condVar = TRUE))``)."""
from __future__ import annotations

import numpy as np

from ..base.errors import ArgumentError
from . import _common as c

__all__ = ["caterpillar", "caterpillar_panels"]


def _draw(ax, b, sd, order, z, many, labels=None):
    """Points ``b`` (with ``b +- z sd`` when ``sd`` is given) at rows 0..J-1 in ``order``."""
    pos = np.arange(len(b))
    if sd is not None:
        ax.hlines(pos, (b - z * sd)[order], (b + z * sd)[order], color="C0", lw=0.8 if many else 1.5,
                  alpha=0.5 if many else 0.9)
    ax.scatter(b[order], pos, s=6 if many else 20, color="C3" if many else "k", zorder=3, linewidths=0)
    ax.axvline(0.0, color="0.3", lw=1, ls="--")
    ax.set_ylim(-1, len(b))
    if labels is None:
        ax.set_yticks([])
    else:
        ax.set_yticks(pos)
        ax.set_yticklabels(labels)


def _interval(level):
    if not 0.0 < level < 1.0:
        raise ArgumentError(f"level must be between 0 and 1, got {level!r}")
    return float(c.norm_ppf(0.5 + level / 2.0))


def caterpillar(fit, group: str | None = None, term: str | None = None, ax=None, *, level: float = 0.95,
                max_labels: int = 40, title=None, xlabel=None, ylabel=None):
    """Caterpillar plot of one random-effects term: sorted conditional modes with intervals.

    For each level ``j`` draws the conditional mode ``b_j`` of ``term`` with the interval
    ``b_j +- z_{(1+level)/2} s_j``, where ``s_j`` is the conditional standard deviation
    (square root of the diagonal of ``Var(b | y)``, lme4's ``condVar``, from
    :attr:`LinearMixedModel.ranef_condsd`), levels sorted by ``b_j``. Where conditional
    variances are not available the points are drawn without intervals (the x label says so).
    :func:`caterpillar_panels` draws all terms side by side.

    Parameters
    ----------
    fit : LinearMixedModel
    group : str, optional
        Grouping factor; required when the model has several.
    term : str, optional
        Column of ``fit.ranef[group]``; default the first (usually ``(Intercept)``).
    ax : matplotlib.axes.Axes, optional
    level : float, default 0.95
        Coverage of the normal intervals.
    max_labels : int, default 40
        Label the levels on the y axis only when there are at most this many.
    title, xlabel, ylabel : str, optional
        Replace the defaults (no title; "<term> | <group>, conditional mode and 95% interval";
        the factor's name).

    Returns
    -------
    matplotlib.axes.Axes
    """
    z = _interval(level)
    group, term, col = c.ranef_column(fit, group, term)
    b = col.to_numpy()
    sd = c.condsd(fit, group, term)
    order = np.argsort(b, kind="stable")
    many = len(b) > max_labels
    ax = c.axes(ax, figsize=(6.0, 6.5 if many else max(3.0, 0.22 * len(b) + 1.0)))
    _draw(ax, b, sd, order, z, many, None if many else [str(v) for v in col.index[order]])
    what = f"conditional mode and {level:.0%} interval" if sd is not None else \
        "conditional mode (no intervals: conditional variances unavailable)"
    c.label(ax, title, xlabel, ylabel, "", f"{term} | {group}, {what}",
            f"{len(b)} levels of {group}, sorted" if many else group)
    return ax


def caterpillar_panels(fit, group: str | None = None, *, level: float = 0.95, sort_by: str | None = None,
                       max_labels: int = 40, panel_width: float = 2.6, title=None):
    """Caterpillar plot of every random-effects term, side by side (lme4's
    ``dotplot(ranef(m, condVar = TRUE))``).

    One panel per term (column of ``fit.ranef[g]``) and grouping factor: the conditional
    modes ``b_jk`` with the intervals ``b_jk +- z_{(1+level)/2} s_jk`` (conditional standard
    deviations, :attr:`LinearMixedModel.ranef_condsd`). Within a factor all panels share the
    vertical order of the levels, sorted by the modes of ``sort_by`` (default its first term,
    as lme4), so a level reads across one row; the levels are named on the first panel.

    Parameters
    ----------
    fit : LinearMixedModel
    group : str, optional
        One grouping factor; default all of them (their panels one after another).
    level : float, default 0.95
        Coverage of the intervals.
    sort_by : str, optional
        The term whose modes order the levels (only with one factor, or a term of every
        factor); default each factor's first term.
    max_labels : int, default 40
        Name the levels only when a factor has at most this many.
    panel_width : float, default 2.6
        Width of one panel in inches.
    title : str, optional
        A title over the figure (default none).

    Returns
    -------
    matplotlib.figure.Figure
        Its axes are ``fig.axes`` in panel order; each panel's title is ``"<term> | <group>"``.
    """
    z = _interval(level)
    groups = [c.factor(fit, group)] if group is not None else list(fit.ranef)
    panels = []
    for g in groups:
        re = fit.ranef[g]
        key = re.columns[0] if sort_by is None else sort_by
        if key not in re.columns:
            raise c.missing(key, list(re.columns), f"a random-effects term of {g} (sort_by=)")
        order = np.argsort(re[key].to_numpy(), kind="stable")
        panels += [(g, t, order, k == 0) for k, t in enumerate(re.columns)]
    nmax = max(len(fit.ranef[g]) for g in groups)
    many_any = nmax > max_labels
    height = 6.5 if many_any else max(3.0, 0.22 * nmax + 1.2)
    fig = c.pyplot().figure(figsize=(panel_width * len(panels) + (1.2 if not many_any else 0.4), height),
                            layout="constrained")
    axs = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (g, t, order, first) in zip(axs, panels):
        col = fit.ranef[g][t]
        b = col.to_numpy()
        many = len(b) > max_labels
        sd = c.condsd(fit, g, t)
        _draw(ax, b, sd, order, z, many, [str(v) for v in col.index[order]] if first and not many else None)
        if not first and not many:
            ax.set_yticks(np.arange(len(b)))
            ax.set_yticklabels([])
        ax.set_title(f"{t} | {g}", fontsize="medium")
        ax.set_xlabel(f"conditional mode, {level:.0%} interval" if sd is not None else "conditional mode")
        if first:
            ax.set_ylabel(f"{len(b)} levels of {g}, sorted by {_order_name(fit, g, sort_by)}" if many else g)
    if title:
        fig.suptitle(title)
    return fig


def _order_name(fit, g, sort_by):
    """The term the levels of ``g`` are sorted by."""
    return fit.ranef[g].columns[0] if sort_by is None else sort_by
