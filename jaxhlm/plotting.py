"""Plots of fitted linear mixed models, drawn with matplotlib.

matplotlib is an optional dependency (``pip install "jaxhlm[plot]"``); it is imported only when a
plot is drawn. Every function draws on the Axes it is given (or on a new figure) and returns that
:class:`matplotlib.axes.Axes`, so the plot can be restyled, annotated or saved::

    ax = jaxhlm.plotting.group_lines(fit, "family_inc")
    ax.set_title("Math score by family income, one line per school")
    ax.figure.savefig("lines.png", dpi=150)

========================  ====================================================================
:func:`resid_fitted`      residuals against fitted values (R: ``plot(resid(m) ~ fitted(m))``)
:func:`qq`                normal quantile-quantile plot of the residuals or of random effects
:func:`group_lines`       one regression line per group, the average (fixed-effects) line thick
:func:`caterpillar`       sorted conditional modes with prediction intervals (lme4's ``dotplot``)
:func:`plot`              any of these by name (``fit.plot(kind=...)``)
========================  ====================================================================
"""
from __future__ import annotations

import numpy as np

from ._src.base.errors import ArgumentError, ColumnNotFoundError

__all__ = ["resid_fitted", "qq", "group_lines", "caterpillar", "plot"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "jaxhlm's plots need matplotlib: pip install \"jaxhlm[plot]\" (or pip install matplotlib)"
        ) from exc
    return plt


def _axes(ax, figsize=(6.0, 4.5)):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def _missing(name, available, what: str) -> ColumnNotFoundError:
    """A ColumnNotFoundError saying ``name`` is not one of ``available`` (``what`` names the set)."""
    err = ColumnNotFoundError(name, available)
    err.message = f"{name!r} is not {what}; available: {', '.join(repr(str(a)) for a in available)}"
    return err


def _factor(fit, group):
    names = list(fit.ranef)
    if group is None:
        if len(names) > 1:
            raise ArgumentError(f"the model has several grouping factors ({', '.join(names)}); pass group=")
        return names[0]
    if group not in names:
        raise _missing(group, names, "a grouping factor of the model")
    return group


def _ranef_column(fit, group, term):
    """``(group, term, values)`` of one column of ``fit.ranef`` (defaults: the only factor, first term)."""
    group = _factor(fit, group)
    re = fit.ranef[group]
    term = re.columns[0] if term is None else term
    if term not in re.columns:
        raise _missing(term, list(re.columns), f"a random-effects term of {group}")
    return group, term, re[term]


def _title(ax, what: str, fit) -> None:
    ax.set_title(f"{what}\n{fit.formula}", fontsize="medium")


def resid_fitted(fit, ax=None, *, smooth: bool = True, **scatter_kw):
    """Residuals against fitted values.

    Plots the response residuals ``e_i = y_i - yhat_i`` against the conditional fitted values
    ``yhat_i = x_i' beta + z_i' b`` (R: ``plot(resid(m) ~ fitted(m))``), with a horizontal line
    at 0. With ``smooth``, a dashed curve joins the mean residual within each of up to 20
    quantile bins of the fitted values: it should stay near 0 when the mean structure fits.

    Parameters
    ----------
    fit : LinearMixedModel
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure by default.
    smooth : bool, default True
        Draw the binned-mean curve.
    **scatter_kw
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``s=``, ``alpha=``, ``color=``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    f = fit.fitted.to_numpy()
    r = fit.resid.to_numpy()
    kw = {"s": 8 if len(f) > 1000 else 16, "alpha": 0.35 if len(f) > 1000 else 0.7, "color": "C0", "linewidths": 0}
    kw.update(scatter_kw)
    ax.scatter(f, r, **kw)
    ax.axhline(0.0, color="0.2", lw=1)
    if smooth and len(f) >= 10:
        nb = int(min(20, max(2, len(f) // 10)))
        edges = np.unique(np.quantile(f, np.linspace(0, 1, nb + 1)))
        which = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 2)
        cnt = np.bincount(which, minlength=len(edges) - 1)
        ok = cnt > 0
        mf = np.bincount(which, f, minlength=len(edges) - 1)[ok] / cnt[ok]
        mr = np.bincount(which, r, minlength=len(edges) - 1)[ok] / cnt[ok]
        ax.plot(mf, mr, color="C3", lw=2, ls="--", label="binned mean")
    ax.set_xlabel("fitted values")
    ax.set_ylabel("residuals")
    _title(ax, "Residuals vs fitted values", fit)
    return ax


def _norm_ppf(p):
    """Standard normal quantile function ``Phi^{-1}`` (scipy imported only when plotting)."""
    from scipy.special import ndtri

    return ndtri(np.asarray(p, dtype=float))


def _ppoints(n: int) -> np.ndarray:
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def qq(fit, ax=None, *, group: str | None = None, term: str | None = None, **scatter_kw):
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
    **scatter_kw
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax, figsize=(5.0, 5.0))
    if group is None:
        v = fit.resid.to_numpy() / fit.sigma
        what = "scaled residuals"
    else:
        group, term, col = _ranef_column(fit, group, term)
        v = col.to_numpy()
        what = f"conditional modes, {term} | {group}"
    v = np.sort(v)
    z = _norm_ppf(_ppoints(len(v)))
    kw = {"s": 8 if len(v) > 1000 else 16, "color": "C0", "alpha": 0.6, "linewidths": 0}
    kw.update(scatter_kw)
    ax.scatter(z, v, **kw)
    q1, q3 = np.quantile(v, [0.25, 0.75])
    z1, z3 = _norm_ppf([0.25, 0.75])
    slope = (q3 - q1) / (z3 - z1)
    ax.axline((z1, q1), slope=slope, color="C3", lw=1.5)
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel(what)
    _title(ax, f"Normal Q-Q plot of {what}", fit)
    return ax


def _row_columns(fit) -> dict:
    """Per-row values of every column of ``fit.coef``: fixed-effects and random-effects columns."""
    d = fit.design
    cols = {nm: d.X[:, j] for j, nm in enumerate(d.fixef_names)}
    for td in d.terms:
        for j, nm in enumerate(td.names):
            cols.setdefault(nm, td.Z[:, j])
    return cols


def group_lines(
    fit,
    x: str,
    group: str | None = None,
    ax=None,
    *,
    at: dict | None = None,
    points: bool = False,
    line_kw: dict | None = None,
    mean_kw: dict | None = None,
):
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

    group = _factor(fit, group)
    coef = fit.coef[group]
    if x not in coef.columns:
        raise _missing(x, list(coef.columns), "a column of the model")
    inter = [c for c in coef.columns if c != x and x in c.split(":")]
    if inter:
        raise ArgumentError(
            f"group_lines draws straight lines in {x!r}, but the model has interaction column(s) "
            f"{', '.join(inter)} with it"
        )
    at = dict(at or {})
    for k in at:
        if k not in coef.columns or k == x:
            raise _missing(k, [c for c in coef.columns if c != x], "a column of the model other than x (at=)")
    rows = _row_columns(fit)
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
    slope = coef[x].to_numpy()
    xv = rows[x]
    x0, x1 = float(np.min(xv)), float(np.max(xv))

    ax = _axes(ax)
    if points:
        ax.scatter(xv, fit.y.to_numpy(), s=6, color="0.55", alpha=0.5, linewidths=0, zorder=1)
    segs = np.stack([np.column_stack([np.full_like(a, x0), a + slope * x0]),
                     np.column_stack([np.full_like(a, x1), a + slope * x1])], axis=1)
    lk = {"colors": "C0", "linewidths": 0.6, "alpha": 0.35 if len(a) > 50 else 0.7, "zorder": 2}
    lk.update(line_kw or {})
    ax.add_collection(LineCollection(segs, **lk))
    mk = {"color": "C3", "lw": 3.5, "zorder": 3, "label": "average (fixed effects)"}
    mk.update(mean_kw or {})
    bx = float(fe.get(x, 0.0))
    ax.plot([x0, x1], [a_mean + bx * x0, a_mean + bx * x1], **mk)
    ax.autoscale_view()
    ax.set_xlabel(x)
    ax.set_ylabel(fit.design.response_name)
    _title(ax, f"One line per level of {group}; thick: average", fit)
    ax.legend(loc="best", frameon=False)
    return ax


def _condsd(fit, group, term):
    try:
        sds = fit.ranef_condsd
    except (NotImplementedError, ImportError):
        return None
    return sds[group][term].to_numpy()


def caterpillar(fit, group: str | None = None, term: str | None = None, ax=None, *, level: float = 0.95,
                max_labels: int = 40):
    """Caterpillar plot: sorted conditional modes with prediction intervals.

    For each level ``j`` draws the conditional mode ``b_j`` of ``term`` with the interval
    ``b_j +- z_{(1+level)/2} s_j``, where ``s_j`` is the conditional standard deviation
    (square root of the diagonal of ``Var(b | y)``, lme4's ``condVar``, from
    :attr:`LinearMixedModel.ranef_condsd`), levels sorted by ``b_j`` (lme4's
    ``dotplot(ranef(m, condVar = TRUE))``). Where conditional variances are not available the
    points are drawn without intervals.

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

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not 0.0 < level < 1.0:
        raise ArgumentError(f"level must be between 0 and 1, got {level!r}")
    group, term, col = _ranef_column(fit, group, term)
    b = col.to_numpy()
    sd = _condsd(fit, group, term)
    order = np.argsort(b, kind="stable")
    pos = np.arange(len(b))
    many = len(b) > max_labels
    ax = _axes(ax, figsize=(6.0, 6.5 if many else max(3.0, 0.22 * len(b) + 1.0)))
    if sd is not None:
        z = float(_norm_ppf(0.5 + level / 2.0))
        ax.hlines(pos, (b - z * sd)[order], (b + z * sd)[order], color="C0", lw=0.8 if many else 1.5,
                  alpha=0.5 if many else 0.9)
    ax.scatter(b[order], pos, s=6 if many else 20, color="C3" if many else "k", zorder=3, linewidths=0)
    ax.axvline(0.0, color="0.3", lw=1, ls="--")
    if many:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(b)} levels of {group}, sorted")
    else:
        ax.set_yticks(pos)
        ax.set_yticklabels([str(v) for v in col.index[order]])
        ax.set_ylabel(group)
    ax.set_ylim(-1, len(b))
    ivl = f" with {level:.0%} intervals" if sd is not None else " (conditional variances unavailable)"
    ax.set_xlabel(f"conditional mode of {term} | {group}")
    _title(ax, f"Random effects{ivl}", fit)
    return ax


_KINDS = {
    "resid": resid_fitted,
    "resid_fitted": resid_fitted,
    "qq": qq,
    "lines": group_lines,
    "group_lines": group_lines,
    "caterpillar": caterpillar,
}


def plot(fit, kind: str = "resid", **kwargs):
    """Draw one of the plots by name; ``fit.plot(kind, ...)`` calls this.

    Parameters
    ----------
    fit : LinearMixedModel
    kind : {"resid", "qq", "lines", "caterpillar"}
        :func:`resid_fitted`, :func:`qq`, :func:`group_lines` (needs ``x=``) or :func:`caterpillar`.
    **kwargs
        Passed to that function.

    Returns
    -------
    matplotlib.axes.Axes
    """
    try:
        fn = _KINDS[kind]
    except (KeyError, TypeError):
        raise ArgumentError(f"unknown plot kind {kind!r}; choose one of 'resid', 'qq', 'lines', 'caterpillar'") from None
    if fn is group_lines and "x" not in kwargs:
        raise ArgumentError("plot(kind='lines') needs x=, the column to draw the lines over")
    return fn(fit, **kwargs)
