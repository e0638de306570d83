"""Helpers shared by the plots: matplotlib on demand, model lookups, labels."""
from __future__ import annotations

import numpy as np

from ..base.errors import ArgumentError, ColumnNotFoundError


def pyplot():
    """``matplotlib.pyplot``, imported on first use (matplotlib is optional)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "jaxhlm's plots need matplotlib: pip install \"jaxhlm[plot]\" (or pip install matplotlib)"
        ) from exc
    return plt


def axes(ax, figsize=(6.0, 4.5)):
    """``ax``, or the Axes of a new figure of size ``figsize``."""
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def missing(name, available, what: str) -> ColumnNotFoundError:
    """A ColumnNotFoundError saying ``name`` is not one of ``available`` (``what`` names the set)."""
    err = ColumnNotFoundError(name, available)
    err.message = f"{name!r} is not {what}; available: {', '.join(repr(str(a)) for a in available)}"
    return err


def factor(fit, group):
    """The grouping factor ``group`` (default: the model's only one)."""
    names = list(fit.ranef)
    if group is None:
        if len(names) > 1:
            raise ArgumentError(f"the model has several grouping factors ({', '.join(names)}); pass group=")
        return names[0]
    if group not in names:
        raise missing(group, names, "a grouping factor of the model")
    return group


def ranef_column(fit, group, term):
    """``(group, term, values)`` of one column of ``fit.ranef`` (defaults: the only factor, first term)."""
    group = factor(fit, group)
    re = fit.ranef[group]
    term = re.columns[0] if term is None else term
    if term not in re.columns:
        raise missing(term, list(re.columns), f"a random-effects term of {group}")
    return group, term, re[term]


def label(ax, title, xlabel, ylabel, default_title, default_x, default_y) -> None:
    """Set the title and axis labels: the defaults unless given (``""`` leaves one out)."""
    t = default_title if title is None else title
    if t:
        ax.set_title(t, fontsize="medium")
    ax.set_xlabel(default_x if xlabel is None else xlabel)
    ax.set_ylabel(default_y if ylabel is None else ylabel)


def norm_ppf(p):
    """Standard normal quantile function ``Phi^{-1}`` (scipy imported only when plotting)."""
    from scipy.special import ndtri

    return ndtri(np.asarray(p, dtype=float))


def ppoints(n: int) -> np.ndarray:
    """R's ``ppoints(n)``: ``(i - a) / (n + 1 - 2a)``, ``a = 3/8`` for ``n <= 10``, else 1/2."""
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def condsd(fit, group, term):
    """Conditional standard deviations of one term, or None where they are unavailable."""
    try:
        sds = fit.ranef_condsd
    except (NotImplementedError, ImportError):
        return None
    return sds[group][term].to_numpy()


def row_columns(fit) -> dict:
    """Per-row values of every column of ``fit.coef``: fixed-effects and random-effects columns."""
    d = fit.design
    cols = {nm: d.X[:, j] for j, nm in enumerate(d.fixef_names)}
    for td in d.terms:
        for j, nm in enumerate(td.names):
            cols.setdefault(nm, td.Z[:, j])
    return cols


def binned_means(f: np.ndarray, r: np.ndarray, nbins: int = 20):
    """Mean of ``r`` within up to ``nbins`` quantile bins of ``f``: ``(mean f, mean r)`` per bin."""
    nb = int(min(nbins, max(2, len(f) // 10)))
    edges = np.unique(np.quantile(f, np.linspace(0, 1, nb + 1)))
    which = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 2)
    cnt = np.bincount(which, minlength=len(edges) - 1)
    ok = cnt > 0
    mf = np.bincount(which, f, minlength=len(edges) - 1)[ok] / cnt[ok]
    mr = np.bincount(which, r, minlength=len(edges) - 1)[ok] / cnt[ok]
    return mf, mr


def point_style(n: int, **override) -> dict:
    """Scatter defaults for ``n`` points (smaller, lighter for many), updated by ``override``."""
    kw = {"s": 8 if n > 1000 else 16, "alpha": 0.35 if n > 1000 else 0.7, "color": "C0", "linewidths": 0}
    kw.update(override)
    return kw
