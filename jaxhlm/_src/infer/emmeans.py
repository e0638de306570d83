"""Estimated marginal means and their pairwise comparisons (emmeans for lmer fits).

``emmeans(m, "f")``, ``emmeans(m, ["f", "g"])``, ``emmeans(m, "f", by="g")``: the linear
functions ``L`` of the reference grid (:mod:`~jaxhlm._src.infer.emm_grid`), with

    emmean = L beta,   SE = sqrt(diag(L V L')),   CI = emmean +- t_{df, (1+level)/2} SE.

Degrees of freedom and ``V`` follow emmeans 1.8's defaults for lmer fits (``lmer.df``):

* ``"kenward-roger"`` (default while n <= ``pbkrtest_limit`` = 3000): ``V`` is pbkrtest's
  adjusted covariance ``Phi_A`` and each row's df is pbkrtest's ``Lb_ddf`` (the KR df of the
  one-row contrast). For an ML fit, as pbkrtest, ``Phi_A`` and the KR terms come from the REML
  refit of the same model (the estimates stay the ML ones; ``Lb_ddf`` uses the ML ``vcov``);
* ``"satterthwaite"`` (default when n is above the pbkrtest limit but not above
  ``lmertest_limit`` = 3000): ``V = vcov(m)`` and lmerTest's Satterthwaite df;
* ``"asymptotic"``: ``V = vcov(m)``, df = inf (z statistics; ``asymp.LCL``/``asymp.UCL``).

``pairs()``: all differences ``emmean_i - emmean_j`` (i < j) within each ``by`` group, their
SE and df as above, and p-values adjusted for the family of the group's ``k`` means: Tukey's
``P(q_{k,df} > sqrt(2)|t|)`` (studentized range), Bonferroni, Sidak, Holm, or none.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..base.lazy import scipy  # submodules imported on first use
from ..base.errors import ArgumentError, InferenceError, JaxhlmWarning, warn
from .emm_grid import emm_linfct, estimable, r_level, ref_grid
from .fixed_terms import fixed_structure, model_frame
from ..base import dist

__all__ = ["emmeans", "EMMeans", "EMMContrasts"]

PBKRTEST_LIMIT = 3000
LMERTEST_LIMIT = 3000
_PARENS = ("-", "+", "/", "*")


def _as_list(x) -> list:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


class _EMMState:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Table(pd.DataFrame):
    """A DataFrame with emmeans' footnotes (``attrs["mesg"]``) printed below it."""

    @property
    def _constructor(self):
        return pd.DataFrame

    def __str__(self) -> str:
        body = pd.DataFrame.to_string(self, index=False)
        return "\n".join([body, ""] + list(self.attrs.get("mesg", [])))

    def __repr__(self) -> str:
        return self.__str__()


class EMMContrasts(_Table):
    """Pairwise comparisons of estimated marginal means (columns as emmeans' summary)."""


class EMMeans(_Table):
    """Estimated marginal means: a DataFrame with the grid columns and ``emmean, SE, df,
    lower.CL, upper.CL`` (``asymp.LCL, asymp.UCL`` when df are infinite).

    Methods: :meth:`pairs`. ``attrs``: ``mesg`` (emmeans' footnotes), ``df_method``,
    ``messages`` (e.g. the note on interactions). :attr:`linfct`: the linear functions ``L``.
    """

    _metadata = ["_emm"]

    @property
    def linfct(self) -> pd.DataFrame:
        """Rows ``l_i`` with ``emmean_i = l_i . beta`` (columns: the fixed effects)."""
        st = self._emm
        return pd.DataFrame(st.L, columns=list(st.model.fixef.index))

    def pairs(self, adjust: str = "tukey", reverse: bool = False) -> EMMContrasts:
        """All pairwise differences within each ``by`` group (emmeans' ``pairs``).

        Parameters
        ----------
        adjust : {"tukey", "bonferroni", "sidak", "holm", "none"}
        reverse : bool
            ``emmean_j - emmean_i`` instead of ``emmean_i - emmean_j``.
        """
        return _pairs(self._emm, adjust, reverse)


def _df_engine(model, mode: str):
    """``(V, dffun)`` for the df method (see the module docstring)."""
    if mode == "asymptotic":
        return model.vcov.to_numpy(), (lambda L: np.full(L.shape[0], np.inf))
    if mode == "satterthwaite":
        from .satterthwaite import satterthwaite_df

        return model.vcov.to_numpy(), (lambda L: satterthwaite_df(model, L))
    from .kenward_roger import _cached_parts, _kr_A, _kr_scaling

    base = model
    if not model.reml:
        from .update import refit_formula

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = refit_formula(model, model.formula, reml=True)
    parts = dict(_cached_parts(base))
    parts["Phi"] = model.vcov.to_numpy()  # pbkrtest's Lb_ddf(L, vcov(object), vcovAdj(REML refit))
    if parts.get("centred") is not None:  # the same in the (shared) preconditioned columns
        _, P_c, Am = parts["centred"]
        parts["centred"] = (model.vcov_centred, P_c, Am) if np.array_equal(Am, model.xform.A) else None

    def dffun(L):
        return np.array([_kr_scaling(*_kr_A(parts, row[None, :]), 1)[0] for row in L])

    return np.asarray(_cached_parts(base)["PhiA"]), dffun


def _resolve_mode(model, lmer_df, pbkrtest_limit, lmertest_limit) -> tuple:
    n = model.nobs
    mode = "kenward-roger" if lmer_df is None else str(lmer_df).lower().replace("_", "-")
    if mode in ("kr", "kenwardroger"):
        mode = "kenward-roger"
    if mode not in ("kenward-roger", "satterthwaite", "asymptotic"):
        raise ArgumentError(f"lmer_df must be 'kenward-roger', 'satterthwaite' or 'asymptotic', got {lmer_df!r}")
    notes = []
    big_k, big_s = n > pbkrtest_limit, n > lmertest_limit
    if mode == "kenward-roger" and big_k:
        notes.append(f"D.f. calculations (Kenward-Roger) disabled: {n} observations exceed pbkrtest_limit = "
                     f"{pbkrtest_limit}; pass pbkrtest_limit={n} (or larger) to enable them")
        mode = "satterthwaite"
    if mode == "satterthwaite" and big_s:
        notes.append(f"D.f. calculations (Satterthwaite) disabled: {n} observations exceed lmertest_limit = "
                     f"{lmertest_limit}; pass lmertest_limit={n} (or larger) to enable them")
        mode = "kenward-roger" if not big_k else "asymptotic"
    return mode, notes


def _interaction_note(model, frame, keys, grid) -> bool:
    """emmeans' NOTE: a spec predictor shares a model term with a predictor averaged over/held fixed."""
    fs = fixed_structure(model)
    cols = list(frame.columns)
    for t in fs.terms:
        vs = {v for f in t.factors for v in fs.columns.get(f, ()) if v in cols}
        if vs & set(keys) and vs - set(keys):
            return True
    return False


def emmeans(model, specs, by=None, at: dict | None = None, lmer_df: str | None = None, level: float = 0.95,
            data=None, pbkrtest_limit: int = PBKRTEST_LIMIT, lmertest_limit: int = LMERTEST_LIMIT) -> EMMeans:
    """Estimated marginal means of ``specs`` (emmeans' ``emmeans(m, specs, by=, at=)``).

    Parameters
    ----------
    model : LinearMixedModel
    specs : str or list of str
        Predictors (data columns of the fixed effects) whose levels index the means.
    by : str or list of str, optional
        Predictors defining groups (comparisons in :meth:`EMMeans.pairs` stay within a group).
    at : dict, optional
        Values of numeric predictors in the grid (default: their mean), or levels of factors.
    lmer_df : {"kenward-roger", "satterthwaite", "asymptotic"}, optional
        Default Kenward-Roger (emmeans' ``lmer.df``), subject to the limits below.
    level : float
        Confidence level of the intervals.
    data : DataFrame, optional
        The data of the fit (default: kept by :func:`jaxhlm.lmer`).
    pbkrtest_limit, lmertest_limit : int
        emmeans' limits on the number of observations for KR / Satterthwaite df (3000).

    Returns
    -------
    EMMeans
    """
    if not 0 < level < 1:
        raise ArgumentError(f"level must be between 0 and 1, got {level!r}")
    specs, by = _as_list(specs), _as_list(by)
    frame = model_frame(model, data)
    grid = ref_grid(model, frame, at)
    table, L, Lf = emm_linfct(grid, specs, by)
    ok = estimable(grid, Lf)
    mode, notes = _resolve_mode(model, lmer_df, pbkrtest_limit, lmertest_limit)
    try:
        V, dffun = _df_engine(model, mode)
    except InferenceError as exc:
        if mode != "kenward-roger":
            raise
        warn(f"Kenward-Roger df not available ({exc}); using Satterthwaite", JaxhlmWarning)
        mode = "satterthwaite"
        V, dffun = _df_engine(model, mode)
    beta = model.fixef.to_numpy()
    est = np.where(ok, L @ beta, np.nan)
    se = np.where(ok, np.sqrt(np.einsum("ki,ij,kj->k", L, V, L)), np.nan)
    df = np.full(len(L), np.nan)
    if ok.any():
        df[ok] = dffun(L[ok])
    q = dist.t_ppf(0.5 + level / 2, df)
    asym = bool(np.all(np.isinf(df[ok]))) if ok.any() else False
    lo, hi = ("asymp.LCL", "asymp.UCL") if asym else ("lower.CL", "upper.CL")
    out = EMMeans(table.copy())
    out["emmean"], out["SE"], out["df"] = est, se, df
    out[lo], out[hi] = est - q * se, est + q * se
    keys = list(table.columns)
    averaged = [v for v in grid.variables if v not in keys and grid.factor[v]]
    mesg = []
    if averaged:
        mesg.append(f"Results are averaged over the levels of: {', '.join(averaged)}")
    mesg += [f"Degrees-of-freedom method: {mode}", f"Confidence level used: {level:g}"]
    out.attrs["mesg"] = mesg
    out.attrs["df_method"] = mode
    messages = list(notes)
    if _interaction_note(model, frame, keys, grid):
        messages.append("NOTE: Results may be misleading due to involvement in interactions")
    if not ok.all():
        messages.append(f"{int((~ok).sum())} means are not estimable (empty cells / aliased coefficients): NaN")
    out.attrs["messages"] = messages
    out._emm = _EMMState(model=model, L=L, V=V, dffun=dffun, table=table, specs=specs,
                         by=[b for b in by if b not in specs], ok=ok, est=est, mode=mode, level=level,
                         averaged=averaged, grid=grid)
    return out


def _labels(st) -> list:
    """emmeans' level labels of each row: numeric-looking levels prefixed with the name."""
    parts = []
    for v in st.specs:
        vals = [r_level(x) for x in st.table[v]]
        if all(_is_num(x) for x in vals):
            vals = [f"{v}{x}" for x in vals]
        parts.append(vals)
    labs = [" ".join(p) for p in zip(*parts)]
    return [f"({x})" if any(c in x for c in _PARENS) else x for x in labs]


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _adjust_p(p: np.ndarray, t: np.ndarray, df: np.ndarray, k: int, method: str) -> np.ndarray:
    m = len(p)
    if method == "none" or m <= 1 and method != "tukey":
        return p
    if method == "tukey":
        with np.errstate(all="ignore"):
            return np.array([float(scipy.stats.studentized_range.sf(abs(ti) * np.sqrt(2), k, di))
                             if np.isfinite(ti) else np.nan for ti, di in zip(t, df)])
    if method == "bonferroni":
        return np.minimum(1.0, p * m)
    if method == "sidak":
        return 1 - (1 - p) ** m
    if method == "holm":
        order = np.argsort(p)
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        out = np.empty(m)
        out[order] = adj
        return out
    raise ArgumentError(f"adjust must be 'tukey', 'bonferroni', 'sidak', 'holm' or 'none', got {method!r}")


def _pairs(st, adjust: str, reverse: bool) -> EMMContrasts:
    adjust = str(adjust).lower()
    labels = _labels(st)
    beta = st.model.fixef.to_numpy()
    groups = [np.arange(len(st.table))]
    if st.by:
        key = st.table[st.by].apply(lambda r: tuple(r_level(x) for x in r), axis=1)
        groups = [np.nonzero((key == g).to_numpy())[0] for g in pd.unique(key)]
    rows, C, fam = [], [], []
    for g in groups:
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                i, j = (g[b], g[a]) if reverse else (g[a], g[b])
                rows.append({"contrast": f"{labels[i]} - {labels[j]}",
                             **{v: st.table[v].iloc[i] for v in st.by}})
                C.append(st.L[i] - st.L[j])
                fam.append((len(g), bool(st.ok[i] and st.ok[j])))
    if not rows:
        raise InferenceError("pairs() needs at least two means in a group")
    C = np.array(C)
    ok = np.array([f[1] for f in fam])
    est = np.where(ok, C @ beta, np.nan)
    se = np.where(ok, np.sqrt(np.einsum("ki,ij,kj->k", C, st.V, C)), np.nan)
    df = np.full(len(C), np.nan)
    if ok.any():
        df[ok] = st.dffun(C[ok])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    p = 2 * dist.t_sf(np.abs(t), df)
    k_of = np.array([f[0] for f in fam])
    padj = np.empty_like(p)
    start = 0
    for g in groups:
        m = len(g) * (len(g) - 1) // 2
        sl = slice(start, start + m)
        padj[sl] = _adjust_p(p[sl], t[sl], df[sl], int(k_of[start]), adjust) if m else p[sl]
        start += m
    asym = bool(np.all(np.isinf(df[ok]))) if ok.any() else False
    out = EMMContrasts(pd.DataFrame(rows))
    out["estimate"], out["SE"], out["df"] = est, se, df
    out["z.ratio" if asym else "t.ratio"] = t
    out["p.value"] = padj
    mesg = []
    if st.averaged:
        mesg.append(f"Results are averaged over the levels of: {', '.join(st.averaged)}")
    mesg.append(f"Degrees-of-freedom method: {st.mode}")
    fams = sorted({int(k) for k in k_of})
    if adjust == "tukey" and max(fams) > 2:
        mesg.append(f"P value adjustment: tukey method for comparing a family of {fams[-1]} estimates")
    elif adjust not in ("none", "tukey"):
        mesg.append(f"P value adjustment: {adjust} method for {max(len(g) * (len(g) - 1) // 2 for g in groups)} tests")
    out.attrs["mesg"] = mesg
    out.attrs["adjust"] = adjust
    out.attrs["linfct"] = pd.DataFrame(C, columns=list(st.model.fixef.index))
    return out
