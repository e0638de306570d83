"""The fitted state of a linear mixed model: what every later step reads.

:class:`FitState` holds the typed pieces of a fit — the :class:`~jaxhlm._src.design.build.Design`,
its :class:`~jaxhlm._src.stats.layout.Layout`, the sufficient :class:`~jaxhlm._src.stats.suffstats.Stats`,
the REML flag and the optimum (:class:`~jaxhlm._src.optim.fit.OptResult`) — and the quantities
lme4 derives from them, with lme4's names (NumPy and pandas; no JAX program runs here except
the conditional modes, compiled on first use). The inference and simulation modules read a fit
through these fields and properties; the facade (:class:`jaxhlm.LinearMixedModel`) adds the
methods that delegate to them.

Model: ``y = X beta + Z b + e``, ``b ~ N(0, sigma^2 Lambda Lambda')``, ``e ~ N(0, sigma^2 W^{-1})``
(prior weights ``W``), ``Lambda`` block diagonal from the relative covariance factors ``T_f(theta)``.
"""
from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pandas as pd

from ..base.config import jit
from ..engine import pls
from ..stats.layout import theta_names
from ..stats.xform import original_objective, original_scale, xform_of

__all__ = ["FitState", "conditional_modes"]


@jit(static_argnames=("layout",))
def _modes_program(theta, stats, layout):
    return pls.modes(theta, stats, layout)


def conditional_modes(theta, stats, layout) -> list:
    """Conditional modes per factor, ``(q_f, L_f)`` arrays (NumPy), through the program cache."""
    from ..base import programcache

    args = (np.asarray(theta, dtype=np.float64), stats)
    return [np.asarray(b) for b in jax.device_get(programcache.call(_modes_program, "modes", args, {"layout": layout}))]


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


def varcorr_frame(covs, residual_sd=None) -> pd.DataFrame:
    """R's ``as.data.frame(VarCorr(m))`` from ``term_covariances()`` (``(group, names, S)`` per
    term): a variance and SD row per column, a covariance and correlation row per pair, and a
    ``Residual`` row when ``residual_sd`` is given (none for glmer)."""
    rows = []
    grps = _make_unique([g for g, _, _ in covs])
    for grp, (_, names, S) in zip(grps, covs):
        sd = np.sqrt(np.diag(S))
        for i, nm in enumerate(names):
            rows.append((grp, nm, None, S[i, i], sd[i]))
        for j in range(len(names)):
            for i in range(j + 1, len(names)):
                den = sd[i] * sd[j]
                rows.append((grp, names[j], names[i], S[i, j], S[i, j] / den if den > 0 else np.nan))
    if residual_sd is not None:
        rows.append(("Residual", None, None, residual_sd**2, residual_sd))
    cols = list(zip(*rows)) if rows else [()] * 5
    return pd.DataFrame({
        "grp": pd.Series(cols[0], dtype=object), "var1": pd.Series(cols[1], dtype=object),
        "var2": pd.Series(cols[2], dtype=object), "vcov": np.asarray(cols[3], float),
        "sdcor": np.asarray(cols[4], float),
    })


class FitState:
    """A fitted linear mixed model (ML or REML): typed fields and lme4's derived quantities.

    Fields
    ------
    design : Design
    layout : Layout
    stats : Stats
    reml : bool
    opt : OptResult
    timings : dict
        Seconds spent in the design, the statistics and the optimisation.
    name : str or None
        Label in model comparisons.
    cache : dict
        Derived results that later steps keep on the fit (keyed by the step's name).
    data : DataFrame or None
        The data the model was fitted to (a reference; lme4's model frame), for ``update``,
        F tests and marginal means; None for fits out of core or built without :func:`lmer`.
    design_args : dict
        The design's keywords (weights, offset, contrasts), so that refits build it the same way.
    """

    def __init__(self, design, layout, stats, reml: bool, opt, timings=None, name=None):
        self.design = design
        self.layout = layout
        self.stats = stats
        self.reml = bool(reml)
        self.opt = opt
        self.timings = dict(timings or {})
        self.name = name
        self.cache = {}  # results of later steps (e.g. Satterthwaite's derivatives), by their modules
        self.data = None  # the user's data frame (a reference, never modified), when fitted by lmer()
        self.design_args = {}  # build_design's keywords (weights, offset, contrasts), for refits
        self.formula = design.formula.formula
        self.xform = xform_of(stats, design.p)  # the engine works on centred, scaled [X y]
        self.optinfo = {
            "iterations": int(opt.iterations),
            "grad": np.asarray(opt.grad),
            "max_abs_grad": float(np.max(np.abs(opt.grad))) if np.size(opt.grad) else 0.0,
            "converged": bool(opt.converged),
            "messages": list(opt.messages),
        }

    # ------------------------------------------------------------------ sizes
    @property
    def nobs(self) -> int:
        """Number of observations used (rows with missing values dropped)."""
        return self.design.n

    @property
    def n_dropped(self) -> int:
        """Rows dropped because of missing values."""
        return self.design.n_dropped

    @property
    def ngroups(self) -> dict:
        """Number of levels of each grouping factor, by name."""
        return {f.name: f.nlevels for f in self.design.factors}

    @property
    def p(self) -> int:
        """Number of fixed effects."""
        return self.design.p

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, theta and sigma (lme4's ``logLik`` df)."""
        return self.p + self.layout.ntheta + 1

    # ------------------------------------------------------------------ estimates
    @functools.cached_property
    def theta(self) -> pd.Series:
        """Relative covariance parameters in lme4's order and names (``getME(m, "theta")``)."""
        return pd.Series(np.asarray(self.opt.theta, dtype=np.float64), index=theta_names(self.design), name="theta")

    @property
    def theta_lower(self) -> np.ndarray:
        """lme4's lower bounds of theta: 0 for diagonal elements, -inf otherwise."""
        return self.layout.lower_bounds()

    @property
    def objective(self) -> float:
        """The minimised criterion: ML deviance or REML criterion."""
        return original_objective(self.opt.objective, self.xform, self.nobs, self.p, self.reml)

    @property
    def r2(self) -> float:
        """The penalised residual sum of squares at the optimum (original units)."""
        return float(self.opt.r2) * float(self.xform.s) ** 2

    @property
    def sigma(self) -> float:
        """Residual standard deviation ``sqrt(r^2 / n)`` (ML) or ``sqrt(r^2 / (n - p))`` (REML)."""
        return math.sqrt(self.r2 / (self.nobs - self.p if self.reml else self.nobs))

    @functools.cached_property
    def beta(self) -> np.ndarray:
        """Fixed-effects estimates as an array (see :attr:`fixef`)."""
        return original_scale(self.xform, self.opt.beta)

    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates ``beta`` (lme4's ``fixef``), named as R names the columns."""
        return pd.Series(self.beta, index=self.design.fixef_names, name="fixef")

    @functools.cached_property
    def vcov_array(self) -> np.ndarray:
        """``sigma^2 (X' V^{-1} X)^{-1}`` as an array (from the preconditioned ``L_X``)."""
        Lx = np.asarray(self.opt.Lx)
        Li = np.linalg.solve(Lx, np.eye(self.p)) if self.p else np.zeros((0, 0))
        sigma_c = self.sigma / float(self.xform.s)
        return original_scale(self.xform, self.opt.beta, sigma_c**2 * (Li.T @ Li))[1]

    @functools.cached_property
    def vcov_centred(self) -> np.ndarray:
        """``(X_c' V^{-1} X_c)^{-1}``: the covariance of the coefficients of the preconditioned
        columns ``X_c = X A`` (``vcov = A vcov_c A'``; ``V`` in the response's own units)."""
        Lx = np.asarray(self.opt.Lx)
        Li = np.linalg.solve(Lx, np.eye(self.p)) if self.p else np.zeros((0, 0))
        return self.sigma**2 * (Li.T @ Li)

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects (lme4's ``vcov``)."""
        names = self.design.fixef_names
        return pd.DataFrame(self.vcov_array, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        if self.p == 0:
            return pd.Series(np.zeros(0), index=self.design.fixef_names, name="se")
        # s ||L_X^{-1} A'e_j|| sigma_c, each row of A scaled first: finite also where the
        # variance itself overflows (a column times 1e-170)
        Lx = np.asarray(self.opt.Lx)
        Am = np.asarray(self.xform.A)
        mx = np.max(np.abs(Am), axis=1)
        mx = np.where(mx > 0, mx, 1.0)
        R = np.linalg.solve(Lx, (Am / mx[:, None]).T)  # columns L_X^{-1} A'e_j / max|A_j.|
        se = self.sigma * mx * np.sqrt(np.sum(R * R, axis=0))
        return pd.Series(se, index=self.design.fixef_names, name="se")

    # ------------------------------------------------------------------ fit statistics
    @property
    def loglik(self) -> float:
        """Log-likelihood (the REML log-likelihood for REML fits, as lme4 reports)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's information criterion ``-2 logLik + 2 npar``."""
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        """Schwarz's criterion ``-2 logLik + log(n) npar``."""
        return -2.0 * self.loglik + math.log(self.nobs) * self.npar

    @property
    def deviance(self) -> float:
        """-2 log-likelihood. For REML fits: the ML deviance at the REML estimates (as lme4)."""
        if not self.reml:
            return self.objective
        s2 = self.sigma**2
        return (self.opt.ldL2 - float(self.stats.logw) + self.r2 / s2
                + self.nobs * math.log(2 * math.pi * s2))

    @property
    def reml_criterion(self):
        """REML criterion at convergence (REML fits; ``None`` for ML fits)."""
        return self.objective if self.reml else None

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom ``n - npar`` (lme4's ``df.residual``)."""
        return self.nobs - self.npar

    # ------------------------------------------------------------------ random effects
    def T_blocks(self) -> list:
        """The relative covariance factors ``T_f`` (one square array per grouping factor)."""
        return self.layout.T_arrays(self.theta.to_numpy())

    @functools.cached_property
    def factor_modes(self) -> list:
        """Conditional modes per factor as arrays of shape ``(nlevels, q_f)`` (computed on first use)."""
        theta, stats = self.search_point
        bs = conditional_modes(theta, stats, self.layout)
        search = getattr(self.opt, "search", None)
        if search is not None:  # modes of the centred terms: b = M b_c (optim/recentre.py)
            bs = [M @ np.asarray(b) for M, b in zip(search.M, bs)]
        s = float(self.xform.s)  # the modes of the scaled response
        return [s * np.asarray(b).T[:fac.nlevels] for b, fac in zip(bs, self.design.factors)]

    def factor_colnames(self, f: int) -> list:
        """Random-effect column names of factor ``f`` (its terms' columns in order)."""
        return [nm for td in self.design.terms if td.factor == f for nm in td.names]

    @functools.cached_property
    def ranef(self) -> dict:
        """Conditional modes of the random effects, one DataFrame per grouping factor (lme4's ``ranef``)."""
        return {fac.name: pd.DataFrame(b, index=fac.levels, columns=self.factor_colnames(f))
                for f, (fac, b) in enumerate(zip(self.design.factors, self.factor_modes))}

    @functools.cached_property
    def coef(self) -> dict:
        """Per-level coefficients: fixed effects plus the level's random effects (lme4's ``coef``)."""
        fe = self.fixef
        out = {}
        for name, re in self.ranef.items():
            cols = [c for c in re.columns if c not in fe.index] + list(fe.index)
            df = pd.DataFrame({c: np.full(len(re), fe.get(c, 0.0)) for c in cols}, index=re.index)
            for c in re.columns:
                df[c] = df[c] + re[c].to_numpy()
            out[name] = df
        return out

    @functools.cached_property
    def zb(self) -> np.ndarray:
        """``Z b`` per row."""
        d = self.design
        zb = np.zeros(d.n)
        offs = [0] * len(d.factors)
        for td in d.terms:
            b = self.factor_modes[td.factor][:, offs[td.factor]:offs[td.factor] + td.p]
            zb += np.einsum("ij,ij->i", td.Z, b[d.factors[td.factor].codes])
            offs[td.factor] += td.p
        return zb

    @property
    def fitted(self) -> pd.Series:
        """Conditional fitted values ``X beta + Z b`` (+ offset)."""
        d = self.design
        off = getattr(d, "offset", None)
        fit = d.X @ self.beta + self.zb + (0.0 if off is None else off)
        return pd.Series(fit, index=d.index, name="fitted")

    @property
    def resid(self) -> pd.Series:
        """Response residuals ``y - fitted``."""
        return pd.Series(self.design.y - self.fitted.to_numpy(), index=self.design.index, name="resid")

    @property
    def y(self) -> pd.Series:
        """The response (rows used)."""
        return pd.Series(self.design.y, index=self.design.index, name=self.design.response_name)

    # ------------------------------------------------------------------ variance components
    def term_covariances(self) -> list:
        """Per term (lme4 order): ``(group label, column names, sigma^2 T_t T_t')``."""
        th = self.theta.to_numpy()
        out, k = [], 0
        for td in self.design.terms:
            T = np.zeros((td.p, td.p))
            for c in range(td.p):
                for r in range(c, td.p):
                    T[r, c] = th[k]
                    k += 1
            out.append((td.term.group_name, td.names, self.sigma**2 * T @ T.T))
        return out

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as R's ``as.data.frame(VarCorr(m))``: grp, var1, var2, vcov, sdcor."""
        return varcorr_frame(self.term_covariances(), residual_sd=self.sigma)

    # ------------------------------------------------------------------ diagnostics
    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a diagonal element of theta within 1e-4 of its bound 0 (of the
        centred terms' theta where the fit searched random-effect columns centred: a large shift of
        a slope's column alone puts a diagonal element of theta near 0)."""
        return self.layout.singular(self.search_point[0])

    @property
    def search_point(self) -> tuple:
        """``(theta, stats)`` of the parametrisation the fit searched: the model's own, or for a
        fit whose random-effect columns were centred (:mod:`jaxhlm._src.optim.recentre`) the
        centred terms' (exact there; quantities that do not depend on how the covariance is
        written, such as Satterthwaite's df, are computed from it)."""
        search = getattr(self.opt, "search", None)
        return (self.opt.theta, self.stats) if search is None else (search.theta, search.stats)

    def centred_twin(self):
        """For a fit whose random-effect columns were searched centred: the fit of the centred
        design as a model of its own (same class; its theta is the search's), else None.
        Profiles of quantities that centring leaves unchanged run on it."""
        search = getattr(self.opt, "search", None)
        if search is None:
            return None
        twin = self.cache.get("centred_twin")
        if twin is None:  # (built once: it holds a copy of the shifted terms' columns)
            from ..optim.recentre import centred_design

            design = centred_design(self.design, list(search.shifts))
            opt = self.opt._replace(theta=search.theta, search=None)
            twin = self.cache["centred_twin"] = type(self)(design, self.layout, search.stats, self.reml, opt,
                                                           self.timings, self.name)
        return twin

    @property
    def converged(self) -> bool:
        """False when the optimiser or lme4's gradient check flagged the fit."""
        return self.optinfo["converged"]

    @functools.cached_property
    def hessian(self) -> np.ndarray:
        """Exact Hessian of the criterion in theta at the optimum."""
        from ..optim.fit import hessian_theta

        return hessian_theta(self.opt.theta, self.stats, self.layout, self.reml)

    @property
    def block_description(self) -> pd.DataFrame:
        """How the Cholesky factor of ``Lambda'Z'Z Lambda + I`` is stored (as MixedModels.jl's
        BlockDescription): one row per block of the lower triangle, with its kernel."""
        from ..stats.suffstats import describe_blocks

        return describe_blocks(self.design, self.layout, self.stats)

    def __repr__(self) -> str:
        kind = "REML" if self.reml else "ML"
        return (f"<{type(self).__name__} {self.formula!r} fit by {kind}: n={self.nobs}, "
                f"groups={self.ngroups}, objective={self.objective:.4f}>")
