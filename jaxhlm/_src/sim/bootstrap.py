"""Parametric bootstrap: intervals for every parameter and the bootstrap likelihood-ratio test.

Bootstrap (lme4's ``bootMer``, MixedModels.jl's ``parametricbootstrap``)
-----------------------------------------------------------------------
``nsim`` responses are simulated from the fitted model (new random effects and residuals,
:func:`jaxhlm._src.simulate.simulate`) and the model is refitted to each, all in one compiled
program (:mod:`jaxhlm._src.batchfit`). Percentile intervals are read off the replicates, with
the order-statistic rule of R's ``boot.ci(type = "perc")`` (which lme4's
``confint(method = "boot")`` uses): for ``R`` replicates and tail ``a`` the ``(R + 1) a``-th
smallest value, interpolated on the normal-quantile scale when ``(R + 1) a`` is not an integer.

Bootstrap likelihood-ratio test (pbkrtest's ``PBmodcomp``)
---------------------------------------------------------
Responses are simulated from the smaller (null) model; both models are refitted by maximum
likelihood to each; the p-value is ``(1 + #{LRT* >= LRT}) / (1 + R)`` over the ``R`` replicates
with a finite statistic.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .replicates import chunk_count, progress_bar, refit_design_many, spec_of
from ..base.errors import ArgumentError, JaxhlmWarning, ModelComparisonError, warn
from .simulate import _check_nsim, replicate_rngs, resolve_params, simulate_design
from ..base import dist

__all__ = ["BootstrapResult", "bootstrap", "bootstrap_confint", "bootstrap_lrt", "percentile_interval"]


# --------------------------------------------------------------------------------------------
# the bootstrap itself
# --------------------------------------------------------------------------------------------
def _sim_chunks(model, params, nsim, seed, use_u=False):
    """A ``Y_chunks`` callable for :func:`refit_design_many`: responses made chunk by chunk."""
    streams = replicate_rngs(seed, nsim)
    b_fixed = model.factor_modes if use_u else None

    def chunks(size):
        for rngs in streams(size):
            yield simulate_design(model.design, model.layout, params, rngs, b_fixed=b_fixed)

    return chunks


def bootstrap(model, nsim: int = 1000, seed=None, *, use_u: bool = False, satterthwaite: bool = False,
              batch_size=None, chunk_size=None, progress=None) -> "BootstrapResult":
    """Parametric bootstrap of a fitted model (lme4's ``bootMer``).

    Parameters
    ----------
    model : LinearMixedModel
    nsim : int
        Number of bootstrap replicates.
    seed : int or numpy.random.Generator, optional
        Replicate ``j`` uses the response ``simulate(model, nsim, seed)[:, j]``.
    use_u : bool
        Condition on the fitted random effects (lme4's ``use.u = TRUE``): only residuals are redrawn.
    satterthwaite : bool
        Also keep Satterthwaite df and p-values per replicate.
    batch_size, chunk_size
        As for :func:`jaxhlm._src.simulate.refit_many`.
    progress : bool or str, optional
        A progress bar labelled "bootstrap" (a string: that label), opened before anything is
        compiled. Default: shown for 4 or more compiled chunks on a terminal or in Jupyter.

    Returns
    -------
    BootstrapResult
        ``.replicates`` (one row per replicate, see ``refit_many``), ``.confint(level)``.
    """
    nsim = _check_nsim(nsim)
    params = resolve_params(model)
    chunks = _sim_chunks(model, params, nsim, seed, use_u=use_u)
    reps = refit_design_many(spec_of(model), chunks, nsim, satterthwaite=satterthwaite, batch_size=batch_size,
                             chunk_size=chunk_size, progress=progress, label="bootstrap")
    return BootstrapResult(model, reps, seed=seed)


def _sdcor(model, reps: pd.DataFrame) -> pd.DataFrame:
    """Per replicate: lme4's ``.sig01 ...`` (standard deviations and correlations in theta's order) and ``.sigma``."""
    from ..infer.confint import profile_param_names

    short, _ = profile_param_names(model)
    TH = reps[[f"theta.{nm}" for nm in model.theta.index]].to_numpy()
    sigma = reps["sigma"].to_numpy()
    out = {}
    k = 0
    for td in model.design.terms:
        q = td.p
        T = np.zeros((len(reps), q, q))
        idx = []
        for c in range(q):
            for r in range(c, q):
                T[:, r, c] = TH[:, k]
                idx.append((r, c))
                k += 1
        S = np.einsum("bij,bkj->bik", T, T) * (sigma**2)[:, None, None]
        sd = np.sqrt(np.einsum("bii->bi", S))
        for j, (r, c) in enumerate(idx):
            name = short[k - len(idx) + j]
            if r == c:
                out[name] = sd[:, r]
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[name] = S[:, r, c] / (sd[:, r] * sd[:, c])
    out[".sigma"] = sigma
    return pd.DataFrame(out, index=reps.index)


def percentile_interval(x: np.ndarray, level: float) -> tuple:
    """R's ``boot.ci(type = "perc")`` end points of the sorted finite values of ``x``.

    For ``R`` values and tail probability ``a``, the ``k = (R + 1) a``-th order statistic; when
    ``k`` is not an integer, interpolation between the neighbouring order statistics on the
    normal-quantile scale (``boot:::norm.inter``); beyond the extremes, the extreme value.
    """
    t = np.sort(np.asarray(x, dtype=np.float64)[np.isfinite(x)])
    R = t.size
    if R == 0:
        return (np.nan, np.nan)
    ends = []
    for a in ((1 - level) / 2, (1 + level) / 2):
        rk = (R + 1) * a
        k = int(math.floor(rk + 1e-10 * max(1.0, rk)))
        if abs(rk - round(rk)) < 1e-10 * max(1.0, rk):
            k = int(round(rk))
            ends.append(t[min(max(k, 1), R) - 1])
            continue
        if k <= 0:
            ends.append(t[0])
            continue
        if k >= R:
            ends.append(t[-1])
            continue
        z = dist.norm_ppf
        tk = z(a)
        z1, z2 = z(k / (R + 1)), z(( k + 1) / (R + 1))
        ends.append(t[k - 1] + (tk - z1) / (z2 - z1) * (t[k] - t[k - 1]))
    return tuple(ends)


class BootstrapResult:
    """The result of :func:`bootstrap`.

    Attributes
    ----------
    replicates : pandas.DataFrame
        One row per replicate (see :func:`jaxhlm._src.simulate.refit_many`).
    params : pandas.DataFrame
        Per replicate, the parameters on lme4's ``confint`` scale: ``.sig01 ...`` (standard
        deviations and correlations), ``.sigma``, then the fixed effects.
    estimates : pandas.Series
        The same quantities for the fitted model.
    nsim, n_failed
    """

    def __init__(self, model, replicates: pd.DataFrame, seed=None):
        self.model = model
        self.replicates = replicates
        self.seed = seed
        fe = list(model.fixef.index)
        sd = _sdcor(model, replicates)
        beta = replicates[[f"beta.{nm}" for nm in fe]].set_axis(fe, axis=1)
        self.params = pd.concat([sd, beta], axis=1)
        one = pd.DataFrame({f"theta.{k}": [v] for k, v in model.theta.items()} | {"sigma": [model.sigma]})
        est = _sdcor(model, one).iloc[0]
        self.estimates = pd.concat([est, model.fixef])
        self.nsim = len(replicates)
        self.n_failed = int((~replicates["converged"]).sum())

    def confint(self, level: float = 0.95, parm=None, include_failed: bool = False) -> pd.DataFrame:
        """Percentile intervals for every parameter (lme4's ``confint(method = "boot")``).

        Parameters
        ----------
        level : float
        parm : str or list of str, optional
            Names as :func:`jaxhlm._src.confint.confint` accepts (``.sig01``, ``sd_(Intercept)|g``,
            ``"theta_"``, ``"beta_"``, fixed-effect names). Default: all.
        include_failed : bool
            Use replicates that did not converge too (default: only converged ones).

        Returns
        -------
        pandas.DataFrame
            Index as lme4 (``.sig01 ...``, ``.sigma``, fixed effects), columns ``"2.5 %"`` and
            ``"97.5 %"``; ``attrs["names_long"]``, ``attrs["nsim"]`` (replicates used).
        """
        from ..infer.confint import _colnames, _select

        if not (isinstance(level, (int, float)) and 0 < level < 1):
            raise ArgumentError(f"level must be a number between 0 and 1, got {level!r}")
        idx, allnames, longnames = _select(self.model, parm)
        use = np.ones(self.nsim, bool) if include_failed else self.replicates["converged"].to_numpy()
        if self.n_failed and not include_failed:
            warn(
                f"{self.n_failed} of {self.nsim} bootstrap refits did not converge and are left out of the intervals",
                JaxhlmWarning,
            )
        rows = []
        for i in idx:
            rows.append(percentile_interval(self.params[allnames[i]].to_numpy()[use], level))
        lo, hi = (np.array(c, dtype=np.float64) for c in zip(*rows)) if rows else (np.zeros(0), np.zeros(0))
        out = pd.DataFrame(dict(zip(_colnames(level), (lo, hi))), index=[allnames[i] for i in idx])
        out.attrs["names_long"] = [longnames[i] for i in idx]
        out.attrs["method"] = "boot"
        out.attrs["nsim"] = int(use.sum())
        return out

    def summary(self) -> pd.DataFrame:
        """Estimate, bootstrap mean, bias and standard error of every parameter.

        Returns
        -------
        pandas.DataFrame
            One row per parameter (``.sig01`` ..., ``.sigma``, fixed effects); columns
            ``estimate``, ``boot_mean``, ``bias`` (``boot_mean - estimate``) and ``std_error``
            (standard deviation of the converged replicates).
        """
        conv = self.replicates["converged"].to_numpy()
        P = self.params[conv]
        return pd.DataFrame({
            "estimate": self.estimates,
            "boot_mean": P.mean(),
            "bias": P.mean() - self.estimates,
            "std_error": P.std(ddof=1),
        })

    def __repr__(self) -> str:
        return (f"<BootstrapResult of {self.model.formula!r}: {self.nsim} replicates, "
                f"{self.n_failed} not converged>")


def bootstrap_confint(model, parm=None, level: float = 0.95, nsim: int = 1000, seed=None, boot=None, **kwargs):
    """``confint(method="boot")``: percentile intervals from :func:`bootstrap` (or a given ``boot``)."""
    if boot is None:
        boot = bootstrap(model, nsim=nsim, seed=seed, **kwargs)
    elif not isinstance(boot, BootstrapResult):
        raise ArgumentError(f"boot must be a BootstrapResult from model.bootstrap(), got {type(boot).__name__}")
    return boot.confint(level=level, parm=parm)


# --------------------------------------------------------------------------------------------
# bootstrap likelihood-ratio test
# --------------------------------------------------------------------------------------------
class BootstrapLRT(pd.DataFrame):
    """pbkrtest's ``PBmodcomp`` table: rows ``LRT`` (chi-square), ``PBtest`` (bootstrap), ``Bartlett``."""

    _metadata = ["lrt_samples", "n_used", "note"]

    @property
    def _constructor(self):
        return BootstrapLRT

    def __str__(self) -> str:
        head = [f"Parametric bootstrap test; number of simulations: {self.n_used}"]
        if self.note:
            head.append(self.note)
        return "\n".join(head) + "\n" + pd.DataFrame(self).to_string()

    def __repr__(self) -> str:
        return self.__str__()


def bootstrap_lrt(m0, m1, nsim: int = 1000, seed=None, *, batch_size=None, chunk_size=None, progress=None) -> BootstrapLRT:
    """Parametric bootstrap likelihood-ratio test of nested models (pbkrtest's ``PBmodcomp``).

    Parameters
    ----------
    m0, m1 : LinearMixedModel
        Nested models fitted to the same rows (either order: the one with fewer parameters is
        the null). REML fits are refitted by maximum likelihood first.
    nsim : int
    seed : int or numpy.random.Generator, optional
    batch_size, chunk_size
        As for :func:`jaxhlm._src.simulate.refit_many`.
    progress : bool or str, optional
        One progress bar for both models' refits (``2 nsim``), labelled "bootstrap LRT: refit
        m0", then "... m1" (a string replaces "bootstrap LRT"). Default: shown for 4 or more
        compiled chunks on a terminal or in Jupyter.

    Returns
    -------
    BootstrapLRT (a DataFrame)
        Index ``LRT``, ``PBtest``, ``Bartlett``; columns ``stat``, ``df``, ``p.value``.
        ``LRT``: ``2 (logLik1 - logLik0)`` against chi2(df); ``PBtest``: ``(1 + #{LRT* >= LRT})
        / (1 + R)``; ``Bartlett``: ``LRT / (mean(LRT*) / df)`` against chi2(df).
        ``.lrt_samples`` holds the simulated statistics (NaN where a refit failed).
    """
    from ..infer.anova import _check_same_data, _ml_version
    from ..model.state import FitState as LinearMixedModel

    for i, m in enumerate((m0, m1)):
        if not isinstance(m, LinearMixedModel):
            raise ArgumentError(f"argument {i + 1} of bootstrap_lrt is a {type(m).__name__}, not a fitted model from lmer()")
    nsim = _check_nsim(nsim)
    if m0.npar == m1.npar:
        raise ModelComparisonError("the two models have the same number of parameters; they are not nested")
    if m0.npar > m1.npar:
        m0, m1 = m1, m0
    _check_same_data([m0, m1], ["null model", "alternative model"])
    if m0.reml or m1.reml:
        warn("refitting model(s) with ML (instead of REML)", JaxhlmWarning)
        m0 = _ml_version(m0) if m0.reml else m0
        m1 = _ml_version(m1) if m1.reml else m1
    lrt = m0.objective - m1.objective
    df = m1.npar - m0.npar
    params = resolve_params(m0)
    streams = replicate_rngs(seed, nsim)
    # the same simulated responses are refitted by both models (the streams are replayed)

    def chunks(size):
        for rngs in streams(size):
            yield simulate_design(m0.design, m0.layout, params, rngs)

    task = progress if isinstance(progress, str) else "bootstrap LRT"
    bar = progress_bar(progress, 2 * nsim, f"{task}: refit m0", chunks=2 * chunk_count(m0.nobs, nsim, chunk_size))
    kw = dict(satterthwaite=False, batch_size=batch_size, chunk_size=chunk_size, bar=bar)
    try:
        r0 = refit_design_many(spec_of(m0), chunks, nsim, **kw)
        if bar is not None:
            bar.set_description(f"{task}: refit m1")
        r1 = refit_design_many(spec_of(m1), chunks, nsim, **kw)
    finally:
        if bar is not None:
            bar.close()
    ok = r0["converged"].to_numpy() & r1["converged"].to_numpy()
    samples = np.where(ok, r0["objective"].to_numpy() - r1["objective"].to_numpy(), np.nan)
    used = samples[np.isfinite(samples)]
    R = used.size
    p_chi = float(dist.chi2_sf(lrt, df))
    p_pb = float((1 + np.sum(used >= lrt)) / (1 + R)) if R else np.nan
    mean = float(np.mean(used)) if R else np.nan
    bart = lrt / (mean / df) if R and mean > 0 else np.nan
    p_b = float(dist.chi2_sf(bart, df)) if np.isfinite(bart) else np.nan
    tab = BootstrapLRT(
        {"stat": [lrt, lrt, bart], "df": [float(df), np.nan, float(df)], "p.value": [p_chi, p_pb, p_b]},
        index=["LRT", "PBtest", "Bartlett"],
    )
    tab.lrt_samples = samples
    tab.n_used = R
    tab.note = f"{nsim - R} of {nsim} simulations left out (refit did not converge)" if R < nsim else ""
    return tab
