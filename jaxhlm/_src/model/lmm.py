"""The fitted linear mixed model: ``lmer()`` and :class:`LinearMixedModel`.

Pipeline (each step usable on its own, as lme4's ``lFormula -> mkLmerDevfun -> optimizeLmer ->
mkMerMod``): :func:`~jaxhlm._src.design.build_design` -> :func:`~jaxhlm._src.suffstats.compute_stats`
-> :func:`~jaxhlm._src.optimize.fit_theta` -> :class:`LinearMixedModel`.
"""
from __future__ import annotations

import functools
import math
import time
import warnings

import numpy as np
import pandas as pd

from ..base import config  # noqa: F401  (importing config turns on float64)
from ..design.build import Design, build_design
from ..base.errors import ArgumentError, ConvergenceWarning, FitError, SingularFitWarning
from ..optim.fit import criterion, fd_hessian, random_effects, rectify, run_fit, theta_start
from ..optim.start import moment_start
from ..stats.suffstats import build_structure, compute_stats

__all__ = ["LinearMixedModel", "lmer"]

SINGULAR_TOL = 1e-4

CONV_TOL = 2e-3  # lme4's check.conv.grad tolerance


def _decrement(fit, grad) -> float:
    """``g' H_inv g`` with the optimiser's final inverse-Hessian estimate (inf if unavailable)."""
    Hi = fit.get("Hinv")
    if Hi is None:
        return float("inf")
    Hi = np.asarray(Hi, dtype=np.float64)
    if Hi.shape != (grad.size, grad.size):
        return float("inf")
    return float(abs(grad @ Hi @ grad))


def _make_unique(names):
    seen: dict = {}
    out = []
    for nm in names:
        if nm in seen:
            seen[nm] += 1
            out.append(f"{nm}.{seen[nm]}")
        else:
            seen[nm] = 0
            out.append(nm)
    return out


class LinearMixedModel:
    """A linear mixed model fitted by maximum likelihood or REML.

    ``y = X beta + Z b + e``, ``b ~ N(0, sigma^2 Lambda Lambda')``, ``e ~ N(0, sigma^2 I)``,
    with ``Lambda`` block diagonal, built from the relative covariance factors ``T_f(theta)``.
    Create it with :func:`jaxhlm.lmer`.

    Properties
    ----------
    fixef : pandas.Series
        Fixed-effects estimates ``beta``.
    vcov : pandas.DataFrame
        ``sigma^2 (X' V^{-1} X)^{-1}`` (lme4's ``vcov``).
    sigma : float
        Residual standard deviation.
    theta : pandas.Series
        Relative covariance parameters, named as lme4's ``getME(m, "theta")``.
    varcorr : pandas.DataFrame
        Variance components as R's ``as.data.frame(VarCorr(m))``: ``grp, var1, var2, vcov, sdcor``.
    ranef, coef : dict of str -> pandas.DataFrame
        Conditional modes of the random effects / per-level coefficients, indexed by level.
    loglik, aic, bic, deviance, reml_criterion, objective, df_resid, nobs, ngroups
    fitted, resid : pandas.Series (indexed like the rows used from the data)
    coef_table : pandas.DataFrame
        Estimate, Std. Error, df (Satterthwaite), t value, Pr(>|t|).
    is_singular, converged : bool
    """

    def __init__(self, design: Design, reml: bool, fit: dict, struct, stats, timings: dict, name=None):
        self._design = design
        self.reml = bool(reml)
        self._fit = fit
        self._struct = struct
        self._stats = stats
        self.timings = timings
        self.name = name
        self.formula = design.formula.formula
        self.optinfo = {
            "iterations": int(fit["iterations"]),
            "grad": np.asarray(fit["grad"]),
            "max_abs_grad": float(np.max(np.abs(fit["grad"]))) if np.size(fit["grad"]) else 0.0,
            "converged": bool(fit["converged"]),
            "messages": [],
        }
        self._check_fit()

    # ------------------------------------------------------------------ basic quantities
    @property
    def nobs(self) -> int:
        """Number of observations used (rows with missing values dropped)."""
        return self._design.n

    @property
    def n_dropped(self) -> int:
        """Rows dropped because of missing values."""
        return self._design.n_dropped

    @property
    def ngroups(self) -> dict:
        """Number of levels of each grouping factor."""
        return {f.name: f.nlevels for f in self._design.factors}

    @functools.cached_property
    def theta(self) -> pd.Series:
        th = rectify(np.asarray(self._fit["theta"]), self._struct)
        return pd.Series(th, index=self._theta_names(), name="theta")

    def _theta_names(self):
        names = []
        for td in self._design.terms:
            g = td.term.group_name
            for c in range(td.p):
                for r in range(c, td.p):
                    if r == c:
                        names.append(f"{g}.{td.names[c]}")
                    else:
                        names.append(f"{g}.{td.names[r]}.{td.names[c]}")
        return names

    @property
    def theta_lower(self) -> np.ndarray:
        """lme4's lower bounds of theta: 0 for diagonal elements, -inf otherwise."""
        return np.where(self._struct.theta_is_diag(), 0.0, -np.inf)

    @property
    def objective(self) -> float:
        """The minimised criterion: ML deviance or REML criterion."""
        return float(self._fit["objective"])

    @property
    def p(self) -> int:
        return self._design.p

    @property
    def sigma(self) -> float:
        r2 = float(self._fit["r2"])
        return math.sqrt(r2 / (self.nobs - self.p if self.reml else self.nobs))

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(np.asarray(self._fit["beta"]), index=self._design.fixef_names, name="fixef")

    @functools.cached_property
    def vcov(self) -> pd.DataFrame:
        Lx = np.asarray(self._fit["Lx"])
        Li = np.linalg.solve(Lx, np.eye(self.p)) if self.p else np.zeros((0, 0))
        V = self.sigma**2 * (Li.T @ Li)
        names = self._design.fixef_names
        return pd.DataFrame(V, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self._design.fixef_names, name="se")

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, theta and sigma (lme4's ``logLik`` df)."""
        return self.p + self._struct.ntheta + 1

    @property
    def loglik(self) -> float:
        """Log-likelihood (the REML log-likelihood for REML fits, as lme4 reports)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.npar

    @property
    def deviance(self) -> float:
        """-2 log-likelihood. For REML fits: the ML deviance at the REML estimates."""
        if not self.reml:
            return self.objective
        s2 = self.sigma**2
        n = self.nobs
        return float(self._fit["ldL2"]) + float(self._fit["r2"]) / s2 + n * math.log(2 * math.pi * s2)

    @property
    def reml_criterion(self):
        """REML criterion at convergence (REML fits; ``None`` for ML fits)."""
        return self.objective if self.reml else None

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    @property
    def block_description(self) -> pd.DataFrame:
        """How the Cholesky factor of ``Lambda'Z'Z Lambda + I`` is stored (as MixedModels.jl's
        BlockDescription): one row per block of the lower triangle.

        The first factor (most levels) is a batched block diagonal of ``q x q`` blocks; the other
        factors share one dense block (block diagonal and batched as well when the first factor
        is nested in a single second one, e.g. classes in schools); their coupling with the first is kept as a sparse list of
        (level, level) pairs, and its contribution to the dense block as pairs of pairs.
        """
        s, st, d = self._struct, self._stats, self._design
        rows = [(d.factors[0].name, d.factors[0].name, "BlkDiag",
                 f"{d.factors[0].nlevels} blocks of {s.q[0]}x{s.q[0]}")]
        for f in range(1, s.nfactors):
            K = int(np.sum(np.any(st[f"C{f}"] != 0, axis=(0, 1))))
            rows.append((d.factors[f].name, d.factors[0].name, "Sparse",
                         f"{K} nonzero {s.q[f]}x{s.q[0]} blocks"))
            if s.b_diag:  # nested in the second factor: its block is block diagonal too
                rows.append((d.factors[f].name, d.factors[f].name, "BlkDiag",
                             f"{d.factors[f].nlevels} blocks of {s.q[f]}x{s.q[f]} (first factor nested)"))
                continue
            for g in range(1, f + 1):
                rows.append((d.factors[f].name, d.factors[g].name, "Dense",
                             f"{s.nlev[f] * s.q[f]}x{s.nlev[g] * s.q[g]} (part of a {s.QB}x{s.QB} dense block)"))
        rows.append(("[X y]", "all", "Dense", f"{s.p + 1} columns"))
        return pd.DataFrame(rows, columns=["rows", "columns", "storage", "size"])

    # ------------------------------------------------------------------ random effects
    @functools.cached_property
    def _modes(self) -> dict:
        """The conditional modes at the optimum, computed on first use (not part of the fit)."""
        if "bA" in self._fit:
            return self._fit
        return random_effects(self._fit["theta"], self._stats, self._struct)

    def _factor_blocks(self):
        """b per factor as arrays of shape (nlevels, q_f)."""
        d = self._design
        s = self._struct
        modes = self._modes
        out = [np.asarray(modes["bA"]).T[: d.factors[0].nlevels]]
        if s.nfactors > 1:
            bB = np.asarray(modes["bB"])
            o = 0
            for f in range(1, s.nfactors):
                L, q = s.nlev[f], s.q[f]
                out.append(bB[o:o + L * q].reshape(L, q))
                o += L * q
        return out

    def _factor_colnames(self, f):
        return [nm for td in self._design.terms if td.factor == f for nm in td.names]

    @functools.cached_property
    def ranef(self) -> dict:
        """Conditional modes of the random effects, one DataFrame per grouping factor."""
        out = {}
        for f, (fac, b) in enumerate(zip(self._design.factors, self._factor_blocks())):
            out[fac.name] = pd.DataFrame(b, index=fac.levels, columns=self._factor_colnames(f))
        return out

    @functools.cached_property
    def coef(self) -> dict:
        """Per-level coefficients: fixed effects plus the level's random effects (lme4's ``coef``)."""
        fe = self.fixef
        out = {}
        for name, re in self.ranef.items():
            # random-only columns get a fixed part of 0 and come first, as in lme4
            cols = [c for c in re.columns if c not in fe.index] + list(fe.index)
            df = pd.DataFrame({c: np.full(len(re), fe.get(c, 0.0)) for c in cols}, index=re.index)
            for c in re.columns:
                df[c] = df[c] + re[c].to_numpy()
            out[name] = df
        return out

    @functools.cached_property
    def _zb(self) -> np.ndarray:
        d = self._design
        blocks = self._factor_blocks()
        zb = np.zeros(d.n)
        offs = [0] * len(d.factors)
        for td in d.terms:
            b = blocks[td.factor][:, offs[td.factor]:offs[td.factor] + td.p]
            zb += np.einsum("ij,ij->i", td.Z, b[d.factors[td.factor].codes])
            offs[td.factor] += td.p
        return zb

    @property
    def fitted(self) -> pd.Series:
        """Conditional fitted values ``X beta + Z b``."""
        d = self._design
        return pd.Series(d.X @ np.asarray(self._fit["beta"]) + self._zb, index=d.index, name="fitted")

    @property
    def resid(self) -> pd.Series:
        """Response residuals ``y - fitted``."""
        return pd.Series(self._design.y - self.fitted.to_numpy(), index=self._design.index, name="resid")

    @property
    def y(self) -> pd.Series:
        return pd.Series(self._design.y, index=self._design.index, name=self._design.response_name)

    # ------------------------------------------------------------------ variance components
    def _term_covs(self):
        """For each term (lme4 order): (group label, column names, covariance matrix sigma^2 T T')."""
        th = self.theta.to_numpy()
        s = self._struct
        out = []
        k = 0
        for td in self._design.terms:
            T = np.zeros((td.p, td.p))
            for c in range(td.p):
                for r in range(c, td.p):
                    T[r, c] = th[k]
                    k += 1
            out.append((td.term.group_name, td.names, self.sigma**2 * T @ T.T))
        return out

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        rows = []
        covs = self._term_covs()
        grps = _make_unique([g for g, _, _ in covs])
        for grp, (_, names, S) in zip(grps, covs):
            sd = np.sqrt(np.diag(S))
            for i, nm in enumerate(names):
                rows.append((grp, nm, None, S[i, i], sd[i]))
            for j in range(len(names)):
                for i in range(j + 1, len(names)):
                    den = sd[i] * sd[j]
                    rows.append((grp, names[j], names[i], S[i, j], S[i, j] / den if den > 0 else np.nan))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        cols = list(zip(*rows))
        return pd.DataFrame({
            "grp": pd.Series(cols[0], dtype=object), "var1": pd.Series(cols[1], dtype=object),
            "var2": pd.Series(cols[2], dtype=object), "vcov": np.asarray(cols[3], float),
            "sdcor": np.asarray(cols[4], float),
        })

    # ------------------------------------------------------------------ diagnostics
    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a diagonal element of theta within 1e-4 of its bound 0."""
        th = np.asarray(self._fit["theta"], dtype=np.float64)  # (sign normalisation keeps |diag|)
        return bool(np.any(np.abs(th[self._struct.theta_is_diag()]) < SINGULAR_TOL))

    @property
    def converged(self) -> bool:
        return self.optinfo["converged"]

    @functools.cached_property
    def hessian(self) -> np.ndarray:
        """Hessian of the criterion in theta at the optimum (central differences of the exact gradient)."""
        return fd_hessian(np.asarray(self._fit["theta"]), self._stats, self._struct, self.reml)

    def _check_fit(self):
        """lme4's post-fit checks: a finite criterion, convergence (gradient), singularity.

        Convergence follows lme4's ``checkConv``: the fit is flagged when the optimiser stopped
        early, or when for some component both the gradient and the gradient scaled by the
        Hessian's Cholesky factor (``R^{-1} g`` with ``H = R'R``) exceed ``CONV_TOL`` in absolute
        value. The Hessian is only computed when the plain gradient is above the tolerance.
        """
        msgs = self.optinfo["messages"]
        fit = self._fit
        if not (np.isfinite(self.objective) and np.all(np.isfinite(np.asarray(fit["theta"])))
                and np.isfinite(float(fit["r2"])) and np.all(np.isfinite(np.asarray(fit["beta"])))):
            raise FitError(
                f"the {'REML criterion' if self.reml else 'deviance'} is not finite at the optimum "
                f"(objective = {self.objective}); check the data for a response that is (almost) "
                "exactly determined by the predictors, or predictors with extreme values"
            )
        grad = np.asarray(self.optinfo["grad"], dtype=np.float64)
        gmax = self.optinfo["max_abs_grad"]
        problem = None
        if not self.optinfo["converged"]:
            problem = (
                f"optimizer stopped after {self.optinfo['iterations']} iterations with max|grad| = {gmax:.3g}"
            )
        elif gmax > CONV_TOL and not (_decrement(fit, grad) <= CONV_TOL**2):
            # (the quasi-Newton decrement g'H^{-1}g, with the optimiser's inverse-Hessian
            # estimate, bounds lme4's scaled gradient: the Hessian is needed only when it is not small)
            try:
                H = self.hessian
                R = np.linalg.cholesky(H).T  # H = R'R
                scaled = np.linalg.solve(R, grad)
                mingrad = np.minimum(np.abs(scaled), np.abs(grad))
            except np.linalg.LinAlgError:
                mingrad = np.abs(grad)
            if not np.all(np.isfinite(mingrad)):
                mingrad = np.abs(grad)
            k = int(np.argmax(mingrad))
            if mingrad[k] > CONV_TOL:
                problem = (
                    f"max|grad| = {mingrad[k]:.3g} (tol = {CONV_TOL:g}, component {k + 1}, "
                    f"{self.theta.index[k]})"
                )
        if problem is not None:
            self.optinfo["converged"] = False
            msg = f"Model failed to converge: {problem}"
            th = np.abs(np.asarray(fit["theta"]))
            if th.size and th.max() > 1e3:
                msg += (
                    f"; theta = {th.max():.3g} means a random-effect standard deviation {th.max():.3g} times "
                    "the residual one: is the response (almost) exactly determined by a grouping factor?"
                )
            msgs.append(msg)
            warnings.warn(msg, ConvergenceWarning, stacklevel=5)
        if self.is_singular:
            msg = "boundary (singular) fit: a variance is (nearly) zero or a correlation is +-1; see is_singular"
            msgs.append(msg)
            warnings.warn(msg, SingularFitWarning, stacklevel=5)

    # ------------------------------------------------------------------ inference
    @functools.cached_property
    def _satterthwaite(self):
        from ..infer.satterthwaite import satterthwaite_parts

        return satterthwaite_parts(self)

    @property
    def coef_table(self) -> pd.DataFrame:
        """Fixed effects with Satterthwaite degrees of freedom (lmerTest's ``summary`` table)."""
        from ..infer.satterthwaite import coef_table

        return coef_table(self)

    def summary(self, **kwargs):
        """An lme4/lmerTest-style summary; ``print()`` it, or display it in Jupyter."""
        from ..infer.summary import Summary

        return Summary(self, **kwargs)

    def _repr_html_(self) -> str:
        """Jupyter's display of the model (R's ``print(m)``); see ``Summary.short_html``."""
        from ..infer.summary import Summary

        return Summary(self).short_html()

    # ------------------------------------------------------------------ delegated methods
    # Each delegates to the module that implements it; the module's function holds the docs.
    # (issue 3: inference)
    def confint(self, parm=None, level: float = 0.95, method: str = "profile", **kwargs) -> pd.DataFrame:
        """Confidence intervals: ``method="profile"`` (lme4's default) or ``"wald"``.

        Index ``.sig01``..., ``.sigma``, fixed effects; columns ``"2.5 %"``, ``"97.5 %"``.
        See :func:`jaxhlm._src.confint.confint`.
        """
        from ..infer.confint import confint

        return confint(self, parm=parm, level=level, method=method, **kwargs)

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = True) -> pd.Series:
        """Predictions, conditional (``re_form=None``) or population level (``re_form="~0"``).

        Unseen grouping levels get the population prediction. See :func:`jaxhlm._src.predict.predict`.
        """
        from ..infer.predict import predict

        return predict(self, newdata=newdata, re_form=re_form, allow_new_levels=allow_new_levels)

    def icc(self) -> pd.Series:
        """Adjusted and conditional intraclass correlation (R's ``performance::icc``); see :mod:`jaxhlm._src.icc`."""
        from ..infer.icc import model_icc

        return model_icc(self)

    def ranef_chisq(self) -> pd.DataFrame:
        """Raudenbush & Bryk's (HLM) chi-square test that each random coefficient varies; see :mod:`jaxhlm._src.ranef_chisq`."""
        from ..infer.ranef_chisq import ranef_chisq

        return ranef_chisq(self)

    def contest(self, L, rhs=0.0, joint: bool = True, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """t / F tests of contrasts ``L beta = rhs`` (lmerTest's ``contest``); see :func:`jaxhlm._src.contest.contest`."""
        from ..infer.contest import contest

        return contest(self, L, rhs=rhs, joint=joint, ddf=ddf, level=level)

    @property
    def ranef_condsd(self) -> dict:
        """Conditional standard deviations of the random effects (lme4's condVar), per factor."""
        from ..infer.condvar import ranef_condsd

        return ranef_condsd(self)

    @property
    def ranef_condvar(self) -> dict:
        """Per-level conditional covariance matrices of the random effects, ``(nlevels, q, q)`` per factor."""
        from ..infer.condvar import ranef_condvar

        return ranef_condvar(self)

    def coef_table_kr(self, max_q: int | None = None) -> pd.DataFrame:
        """Fixed effects with Kenward-Roger df (REML fits); see :mod:`jaxhlm._src.kenward_roger`."""
        from ..infer.kenward_roger import coef_table_kr

        return coef_table_kr(self, max_q=max_q)

    # (issue 5: simulation)
    def simulate(self, *args, **kwargs):
        """Responses simulated from the fitted model; see :func:`jaxhlm._src.simulate.simulate`."""
        from ..sim.simulate import simulate

        return simulate(self, *args, **kwargs)

    def refit(self, *args, **kwargs):
        """Refit to a new response with the same design; see :func:`jaxhlm._src.simulate.refit`."""
        from ..sim.simulate import refit

        return refit(self, *args, **kwargs)

    def refit_many(self, *args, **kwargs):
        """Refit to many responses at once; see :func:`jaxhlm._src.simulate.refit_many`."""
        from ..sim.simulate import refit_many

        return refit_many(self, *args, **kwargs)

    def bootstrap(self, *args, **kwargs):
        """Parametric bootstrap; see :func:`jaxhlm._src.bootstrap.bootstrap`."""
        from ..sim.bootstrap import bootstrap

        return bootstrap(self, *args, **kwargs)

    # (issue 7: plots)
    def plot(self, kind: str = "resid", **kwargs):
        """Draw a plot of the fit with matplotlib and return its Axes; see :mod:`jaxhlm.plotting`.

        ``kind``: ``"resid"`` (residuals vs fitted), ``"qq"`` (normal Q-Q), ``"lines"`` (one
        regression line per group over ``x=``, the average thick) or ``"caterpillar"``
        (conditional modes with 95% intervals). Keyword arguments go to that plot's function.
        """
        from ... import plotting

        return plotting.plot(self, kind=kind, **kwargs)

    def __repr__(self) -> str:
        kind = "REML" if self.reml else "ML"
        return (
            f"<LinearMixedModel {self.formula!r} fit by {kind}: n={self.nobs}, "
            f"groups={self.ngroups}, objective={self.objective:.4f}>"
        )


def lmer(formula: str, data, reml: bool = True, *, name: str | None = None, start=None) -> LinearMixedModel:
    """Fit a linear mixed model with an lme4 formula.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"mathscore ~ family_inc + (family_inc | sch_id)"``. The fixed part is
        read by formulaic; random terms ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)``.
    data : pandas.DataFrame, dask.dataframe.DataFrame, or path(s) of Parquet / CSV files
        Never modified. Rows with missing values in used columns are dropped. A Dask DataFrame
        or files are read in chunks and never gathered (see :mod:`jaxhlm._src.bigdata`).
    reml : bool, default True
        REML (lme4's default) or maximum likelihood (``reml=False``, needed for ``anova``).
    name : str, optional
        Label used in model comparisons.
    start : array-like, optional
        Starting theta (lme4 order); default a moment estimate (lme4 starts at 1 on the diagonals, 0 below).

    Returns
    -------
    LinearMixedModel

    Notes
    -----
    Minimises the profiled deviance (Bates et al. 2015, JSS 67(1), eqs. 34 and 41) over theta
    with BFGS on exact gradients, in float64, compiled once per model structure (and cached on
    disk, see :mod:`jaxhlm._src.programcache`). Without ``start`` the search begins at a moment
    estimate of theta (:mod:`jaxhlm._src.start`), with its inverse Hessian seeded by finite
    differences of the gradient; ``start`` gives lme4's behaviour (e.g. ``start=[1, 0, 1]``).
    """
    if not isinstance(reml, (bool, np.bool_)):
        raise ArgumentError(f"reml must be True or False, got {reml!r} ({type(reml).__name__})")
    from ..design.outofcore import is_out_of_core  # Dask DataFrame or Parquet/CSV files (issue 5)

    if is_out_of_core(data):
        from ..design.outofcore import lmer_out_of_core

        return lmer_out_of_core(formula, data, reml=bool(reml), name=name, start=start)
    t0 = time.perf_counter()
    design = build_design(formula, data)
    struct = build_structure(design)
    t1 = time.perf_counter()
    stats = compute_stats(design, struct)
    t2 = time.perf_counter()
    return _fit_design(design, struct, stats, bool(reml), start=start, name=name, t_design=t1 - t0, t_stats=t2 - t1)


def _escape_zero_saddle(fit, stats, struct, reml):
    """Make sure a zero diagonal element of theta is a minimum, not a saddle.

    The criterion is even in every column of ``T_f``, so its gradient vanishes wherever a
    diagonal element is 0, minimum or not (ENGINE-NOTES, pitfall 2). When the optimiser ends
    with such an element, the criterion is evaluated a little away from 0; if that is lower, the
    fit is restarted from there.
    """
    theta = np.asarray(fit["theta"], dtype=np.float64)
    diag = struct.theta_is_diag()
    small = np.nonzero(diag & (np.abs(theta) < SINGULAR_TOL))[0]
    if small.size == 0:
        return fit
    f0 = float(fit["objective"])
    scale = max(1e-2, 0.1 * float(np.max(np.abs(theta[diag])))) if np.any(diag) else 0.1
    for k in small:
        trial = theta.copy()
        trial[k] = scale
        f1 = criterion(trial, stats, struct, reml)
        if np.isfinite(f1) and f1 < f0 - 1e-6 * (1 + abs(f0)):
            refit = run_fit(trial, stats, struct, reml)
            if float(refit["objective"]) < f0:
                return _escape_zero_saddle(refit, stats, struct, reml)
    return fit


def _fit_design(design, struct, stats, reml, start=None, name=None, t_design=0.0, t_stats=0.0):
    moment = False
    if start is None and struct.nfactors == 1:
        th0, moment = theta_start(struct), True  # the moment start is computed inside the fit
    elif start is None:
        th0 = moment_start(struct, stats)
    else:
        try:
            th0 = np.asarray(start, dtype=np.float64)
        except (TypeError, ValueError):
            raise ArgumentError(f"start must be {struct.ntheta} numbers (theta, lme4 order), got {start!r}") from None
        if th0.shape != (struct.ntheta,):
            raise ArgumentError(f"start must have {struct.ntheta} elements (theta), got shape {th0.shape}")
        if not np.all(np.isfinite(th0)):
            raise ArgumentError(f"start must be finite, got {th0}")
    t2 = time.perf_counter()
    fit = run_fit(th0, stats, struct, reml, moment=moment)
    fit = _escape_zero_saddle(fit, stats, struct, reml)
    t3 = time.perf_counter()
    timings = {"design": t_design, "stats": t_stats, "optimize": t3 - t2}
    return LinearMixedModel(design, reml, fit, struct, stats, timings, name=name)
