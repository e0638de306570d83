"""Confidence intervals: Wald, and profile likelihood (lme4's ``confint.merMod``).

Wald: ``beta_k +- z_{(1+level)/2} se_k`` for the fixed effects; NaN for the variance parameters
(as lme4).

Profile (lme4's default method): see :mod:`.profile`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError
from .profile import _profile_ci
from ..base import dist

__all__ = ["confint", "profile_param_names"]


# ------------------------------------------------------------------------------ names
def profile_param_names(model) -> tuple:
    """lme4's ``.sig01 ...``, ``.sigma`` names and the long forms (``sd_(Intercept)|g``)."""
    short, long_ = [], []
    k = 0
    for td in model.design.terms:
        g = td.term.group_name
        for c in range(td.p):
            for r in range(c, td.p):
                k += 1
                short.append(f".sig{k:02d}")
                long_.append(f"sd_{td.names[c]}|{g}" if r == c else f"cor_{td.names[r]}.{td.names[c]}|{g}")
    short.append(".sigma")
    long_.append("sigma")
    return short, long_


def _profile_intervals(model, idx, allnames, level):
    """Profile intervals; for a fit searched with centred random-effect columns
    (:mod:`jaxhlm._src.optim.recentre`), those of the quantities centring leaves unchanged (fixed
    effects, sigma, the slopes' SDs and correlations) are profiled on the centred twin, whose
    statistics are well conditioned; the others (the intercept's SD and correlations, defined
    by the user's columns) in the user's columns."""
    twin = model.centred_twin() if hasattr(model, "centred_twin") else None
    if twin is None:
        return _profile_ci(model, idx, allnames, level)
    from ..optim.recentre import variant_theta

    search = model.opt.search
    variant = variant_theta(model.layout, model.design, list(search.shifts))
    own = [k for k, i in enumerate(idx) if i < len(variant) and variant[i]]
    lo, hi = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
    for pos, m in ((own, model), ([k for k in range(len(idx)) if k not in own], twin)):
        if pos:
            lo[pos], hi[pos] = _profile_ci(m, [idx[k] for k in pos], allnames, level)
    return lo, hi


def _colnames(level):
    a = (1 - level) / 2
    return [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]


def _select(model, parm):
    short, long_ = profile_param_names(model)
    fixed = list(model.fixef.index)
    allnames = short + fixed
    if parm is None:
        return list(range(len(allnames))), allnames, long_ + fixed
    if isinstance(parm, str):
        parm = [parm]
    out = []
    for p_ in parm:
        if p_ == "theta_":
            out += list(range(len(short)))
        elif p_ == "beta_":
            out += list(range(len(short), len(allnames)))
        elif p_ in allnames:
            out.append(allnames.index(p_))
        elif p_ in long_:
            out.append(long_.index(p_))
        else:
            raise ArgumentError(f"parm {p_!r} is not a parameter of the model; use one of {allnames}, 'theta_' or 'beta_'")
    seen = []
    for i in out:
        if i not in seen:
            seen.append(i)
    return seen, allnames, long_ + fixed


# ------------------------------------------------------------------------------ Wald
def _wald(model, idx, allnames, level):
    z = dist.norm_ppf(0.5 + level / 2)
    nvar = len(allnames) - model.p
    lo = np.full(len(idx), np.nan)
    hi = np.full(len(idx), np.nan)
    beta, se = model.fixef.to_numpy(), model.se.to_numpy()
    for n, i in enumerate(idx):
        if i >= nvar:
            lo[n] = beta[i - nvar] - z * se[i - nvar]
            hi[n] = beta[i - nvar] + z * se[i - nvar]
    return lo, hi


def confint(model, parm=None, level: float = 0.95, method: str = "profile", **kwargs) -> pd.DataFrame:
    """Confidence intervals for the parameters (lme4's ``confint``).

    Parameters
    ----------
    model : LinearMixedModel
    parm : str or list of str, optional
        Parameter names (``".sig01"``, ``".sigma"``, ``"(Intercept)"``, or long forms such as
        ``"sd_(Intercept)|Subject"``), or ``"theta_"`` (all variance parameters) / ``"beta_"``
        (all fixed effects). Default: all.
    level : float, default 0.95
    method : {"profile", "wald", "boot"}
        ``"profile"`` (lme4's default): profile-likelihood intervals of the ML deviance (REML
        fits are refitted by ML, as lme4 does); ``"wald"``: fixed effects only, NaN for the
        variance parameters; ``"boot"``: parametric bootstrap, see :meth:`bootstrap`.

    Returns
    -------
    pandas.DataFrame
        Index: parameter names as lme4 (``.sig01``..., ``.sigma``, fixed effects); columns
        ``"2.5 %"`` and ``"97.5 %"`` (for ``level=0.95``). ``attrs["names_long"]`` holds the
        descriptive names (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``).

    Notes
    -----
    The profile intervals for a standard deviation stop at 0 and for a correlation at -1 / 1
    when the profile does not reach the cut-off before the boundary (as lme4 reports them).

    Each profile is checked for monotonicity at the points evaluated and at three more points
    between the estimate and each end; a signed root deviance that falls away from the estimate
    raises :class:`~jaxhlm._src.base.errors.NonMonotonicProfileWarning`. The ends are roots of the
    exact profile, not of a spline through a grid as in lme4: where lme4 warns "non-monotonic
    profile" / "bad spline fit" the two differ. Example: for the correlation of
    ``mathscore ~ family_inc + (family_inc | sch_id)`` (nels_like, ML) lme4 gives an upper end of
    about -0.15; the exact profile (independently: minimising the deviance over both scales with
    the correlation fixed) is monotonic, rises to zeta = 2.045 as the slope variance shrinks to
    0 near correlation 0 and stays flat beyond, and crosses 1.96 at -0.1955, which is returned.
    """
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ArgumentError(f"level must be a number between 0 and 1, got {level!r}")
    meth = str(method).lower()
    if meth not in ("profile", "wald", "boot"):
        raise ArgumentError(f"method must be 'profile', 'wald' or 'boot', got {method!r}")
    if meth == "boot":  # simulation sits above inference: LinearMixedModel.confint dispatches it
        raise ArgumentError("bootstrap intervals come from the model: model.confint(method='boot')")
    if kwargs:
        raise ArgumentError(f"unexpected arguments for method={method!r}: {sorted(kwargs)}")
    idx, allnames, longnames = _select(model, parm)
    if meth == "wald":
        lo, hi = _wald(model, idx, allnames, level)
    else:
        lo, hi = _profile_intervals(model, idx, allnames, level)
    out = pd.DataFrame({c: v for c, v in zip(_colnames(level), (lo, hi))}, index=[allnames[i] for i in idx])
    out.attrs["names_long"] = [longnames[i] for i in idx]
    out.attrs["method"] = meth
    return out
