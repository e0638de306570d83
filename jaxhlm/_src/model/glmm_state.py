"""The fitted state of a generalized linear mixed model (lme4's ``glmerMod``).

Model: ``eta = X beta + Z b + offset``, ``mu = g^{-1}(eta)``, ``b = Lambda u``, ``u ~ N(0, I)``,
``y_i | b`` from the family (binomial or Poisson, ``sigma = 1``) with prior weights ``w_i``
(binomial: the trials). :class:`GlmmFitState` reuses :class:`~jaxhlm._src.model.state.FitState`
for what the two models share (names, ``theta``, ``ranef``, ``coef``, ``is_singular``, the
conditional variances, which read ``stats``: here the statistics with the Fisher weights ``W``
at the conditional mode, so that ``Var(b | y) = Lambda (Lambda'Z'WZ Lambda + I)^{-1} Lambda'``
as lme4's ``condVar``), and defines the GLMM quantities with lme4's definitions:

* ``objective`` = ``-2 log L`` (Laplace; for ``nAGQ > 1`` lme4's quadrature value without the
  saturated-model constant, :attr:`minus2loglik_saturated`);
* ``deviance`` = ``sum_i d_i(mu_i)`` at the conditional modes (lme4's ``deviance()`` of a
  ``glmerMod``, no penalty and no log-determinant; not ``-2 logLik``);
* ``vcov`` = ``2 [H^{-1}]_{beta beta}`` with ``H`` the exact Hessian of the objective in
  ``(theta, beta)`` (lme4's ``use.hessian = TRUE``); :attr:`vcov_rx` = ``(R_X'R_X)^{-1}``
  conditional on theta (the only one for ``nAGQ = 0``);
* ``npar = p + length(theta)`` (no residual scale).
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, ConvergenceWarning, warn
from ..stats.xform import xform_of
from .state import FitState, varcorr_frame
from ..base import dist

__all__ = ["GlmmFitState"]


class GlmmFitState(FitState):
    """A fitted GLMM: typed fields and lme4's derived quantities (see the module docstring).

    Fields
    ------
    design, layout : Design, Layout
    family : Family
    nagq : int
    opt : GlmmOpt
        The optimum and what was read at the conditional mode there.
    glmm_data : GlmmData
        ``y`` (proportions for the binomial), ``wt`` (prior weights, trials included), ``n``
        (trials), ``offset`` per row.
    op : WeightedOp
        The row arrays of the compiled programs (for refits).
    """

    def __init__(self, design, layout, family, nagq, opt, glmm_data, op, timings=None, name=None):
        self.design = design
        self.layout = layout
        self.family = family
        self.nagq = int(nagq)
        self.opt = opt
        self.glmm_data = glmm_data
        self.op = op
        self.stats = opt.stats
        self.xform = xform_of(opt.stats, design.p)  # the identity: PIRLS works on the raw columns
        self.reml = False
        self.timings = dict(timings or {})
        self.name = name
        self.cache = {}
        self.data = None
        self.design_args = {}
        self.formula = design.formula.formula
        self.optinfo = {
            "iterations": tuple(opt.iterations),
            "grad": np.asarray(opt.grad),
            "max_abs_grad": float(np.max(np.abs(opt.grad))) if np.size(opt.grad) else 0.0,
            "converged": bool(opt.converged),
            "messages": list(opt.messages),
            "pirls_converged": bool(opt.pirls_converged),
        }

    # ------------------------------------------------------------------ sizes and scale
    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects and theta (lme4's ``logLik`` df for glmer)."""
        return self.p + self.layout.ntheta

    @property
    def sigma(self) -> float:
        """1: the binomial and Poisson families have no scale parameter."""
        return 1.0

    # ------------------------------------------------------------------ likelihood
    @property
    def objective(self) -> float:
        """The minimised objective (lme4's ``devcomp$cmp["dev"]``; see the module docstring)."""
        return float(self.opt.objective)

    @property
    def loglik(self) -> float:
        """``-objective / 2`` (lme4's ``logLik``)."""
        return -0.5 * self.objective

    @functools.cached_property
    def minus2loglik_saturated(self) -> float:
        """``-2 log L`` of the saturated model (``mu = y``), the constant lme4's nAGQ > 1 objective omits."""
        d = self.glmm_data
        return self.family.minus2loglik_saturated(np.asarray(d.y), np.asarray(d.n), np.asarray(d.wt))

    @property
    def objective_full_scale(self) -> float:
        """``-2 log L`` including the saturated-model constant, for every ``nAGQ``."""
        return self.objective + (self.minus2loglik_saturated if self.nagq > 1 else 0.0)

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()``: the sum of the deviance residuals' squares at the conditional modes."""
        return float(np.sum(self._dev_resids))

    @property
    def df_resid(self) -> int:
        """``n - npar``."""
        return self.nobs - self.npar

    # ------------------------------------------------------------------ fixed effects
    @functools.cached_property
    def vcov_rx(self) -> np.ndarray:
        """``(R_X'R_X)^{-1}`` at the final theta and Fisher weights (lme4's ``use.hessian = FALSE``)."""
        p = self.p
        Lx = np.asarray(self.opt.Lxx)[:p, :p]
        Li = np.linalg.solve(Lx, np.eye(p)) if p else np.zeros((0, 0))
        return Li.T @ Li

    @functools.cached_property
    def vcov_method(self) -> str:
        """``"hessian"`` or ``"RX"`` (nAGQ = 0, or a Hessian that is not positive definite)."""
        if self.nagq == 0 or not self.p:
            return "RX"
        try:
            np.linalg.cholesky(self._vcov_hessian)
        except np.linalg.LinAlgError:
            warn("the Hessian of the objective gives a variance-covariance matrix of the fixed effects that is not "
                 "positive definite; using the one conditional on theta (R_X)", ConvergenceWarning)
            return "RX"
        return "hessian"

    @functools.cached_property
    def _vcov_hessian(self) -> np.ndarray:
        # (searched centred random-effect columns: the Hessian in the searched theta; the beta
        # block of the inverse is the same in every parametrisation of theta)
        H = np.asarray(self.opt.hessian if self.opt.search is None else self.opt.hessian_search)
        m = self.layout.ntheta
        try:
            Hi = np.linalg.inv(0.5 * (H + H.T))
        except np.linalg.LinAlgError:
            return np.full((self.p, self.p), np.nan)
        V = 2.0 * Hi[m:, m:]
        return 0.5 * (V + V.T)

    @functools.cached_property
    def vcov_array(self) -> np.ndarray:
        """The fixed effects' covariance (see :attr:`vcov_method`)."""
        return self._vcov_hessian if self.vcov_method == "hessian" else self.vcov_rx

    @property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects (from :attr:`vcov_array`)."""
        return pd.Series(np.sqrt(np.diag(self.vcov_array)), index=self.design.fixef_names, name="se")

    @property
    def coef_table(self) -> pd.DataFrame:
        """lme4's ``summary`` table: Estimate, Std. Error, z value, Pr(>|z|) (Wald z tests)."""
        est = self.beta
        se = np.sqrt(np.diag(self.vcov_array))
        z = est / se
        return pd.DataFrame({"Estimate": est, "Std. Error": se, "z value": z,
                             "Pr(>|z|)": 2.0 * dist.norm_sf(np.abs(z))}, index=self.design.fixef_names)

    # ------------------------------------------------------------------ random effects
    @functools.cached_property
    def factor_modes(self) -> list:
        """Conditional modes ``b_f = T_f u_f`` per factor, ``(nlevels, q_f)`` arrays (``M_f T_c u_c``
        where the fit searched centred random-effect columns)."""
        search = self.opt.search
        Ts = self.layout.T_arrays(np.asarray(self.opt.theta if search is None else search.theta))
        Ms = [np.eye(np.shape(T)[0]) for T in Ts] if search is None else search.M
        return [(M @ np.asarray(T) @ np.asarray(u)).T[:fac.nlevels] for M, T, u, fac in
                zip(Ms, Ts, self.opt.u, self.design.factors)]

    @functools.cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as R's ``as.data.frame(VarCorr(m))`` (no residual row for glmer)."""
        return varcorr_frame(self.term_covariances())

    # ------------------------------------------------------------------ fitted values, residuals
    @property
    def eta(self) -> pd.Series:
        """The linear predictor ``X beta + Z b + offset`` at the conditional modes."""
        return pd.Series(np.asarray(self.opt.eta), index=self.design.index, name="eta")

    @functools.cached_property
    def _mu(self) -> np.ndarray:
        return np.asarray(self.family.linkinv(np.asarray(self.opt.eta)))

    @property
    def fitted(self) -> pd.Series:
        """Fitted means ``mu = g^{-1}(eta)`` (lme4's ``fitted``: the response scale)."""
        return pd.Series(self._mu, index=self.design.index, name="fitted")

    @property
    def prior_weights(self) -> pd.Series:
        """lme4's ``weights(m)``: prior weights (trials for ``cbind`` responses)."""
        return pd.Series(np.asarray(self.glmm_data.wt), index=self.design.index, name="weights")

    @functools.cached_property
    def _dev_resids(self) -> np.ndarray:
        d = self.glmm_data
        return np.asarray(self.family.dev_resids(np.asarray(d.y), self._mu, np.asarray(d.wt)))

    def residuals(self, type: str = "deviance") -> pd.Series:  # noqa: A002  (R's argument name)
        """Residuals of ``type`` ``"deviance"`` (lme4's default), ``"pearson"``, ``"response"`` or ``"working"``."""
        y, wt = np.asarray(self.glmm_data.y), np.asarray(self.glmm_data.wt)
        mu = self._mu
        if type == "deviance":
            r = np.sign(y - mu) * np.sqrt(np.maximum(self._dev_resids, 0.0))
        elif type == "pearson":
            r = (y - mu) * np.sqrt(wt) / np.sqrt(np.asarray(self.family.variance(mu)))
        elif type == "response":
            r = y - mu
        elif type == "working":
            r = (y - mu) / np.asarray(self.family.mu_eta(np.asarray(self.opt.eta)))
        else:
            raise ArgumentError(f"type must be 'deviance', 'pearson', 'response' or 'working', got {type!r}")
        return pd.Series(r, index=self.design.index, name=f"resid_{type}")

    @property
    def resid(self) -> pd.Series:
        """Deviance residuals (lme4's ``residuals()`` default for GLMMs)."""
        return self.residuals("deviance")

    @property
    def hessian(self) -> np.ndarray:
        """Exact Hessian of the objective in ``(theta, beta)`` at the optimum."""
        return np.asarray(self.opt.hessian)

    @property
    def family_label(self) -> str:
        return f"{self.family.family}  ( {self.family.link} )"

    def __repr__(self) -> str:
        how = "Laplace" if self.nagq == 1 else (f"nAGQ={self.nagq}")
        return (f"<{type(self).__name__} {self.formula!r} {self.family!r} ({how}): n={self.nobs}, "
                f"groups={self.ngroups}, -2logLik={self.objective:.4f}>")

