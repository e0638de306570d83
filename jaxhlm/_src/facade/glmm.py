"""The user-facing GLMM: ``glmer()`` and :class:`GeneralizedLinearMixedModel`.

``glmer`` runs the pipeline of :mod:`jaxhlm._src.model.glmm_pipeline` (``glFormula ->
mkGlmerDevfun -> optimizeGlmer -> mkMerMod``). :class:`GeneralizedLinearMixedModel` is the
fitted state (:class:`~jaxhlm._src.model.glmm_state.GlmmFitState`) plus the methods of the
later steps (summary, predictions, model comparison, simulation).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..base import threads
from ..base.errors import ArgumentError, ModelComparisonError
from ..design.outofcore import is_out_of_core
from ..model import glmm_pipeline as gp
from ..model.glmm_state import GlmmFitState
from ..base import dist

__all__ = ["GeneralizedLinearMixedModel", "glmer"]

_TYPES = ("link", "response")


class GeneralizedLinearMixedModel(GlmmFitState):
    """A generalized linear mixed model fitted by Laplace or adaptive Gauss-Hermite quadrature
    (create it with :func:`jaxhlm.glmer`).

    ``eta = X beta + Z b + offset``, ``E(y | b) = g^{-1}(eta)``, ``b ~ N(0, Lambda Lambda')``.

    Properties (lme4's names): ``fixef``, ``se``, ``vcov``, ``vcov_rx``, ``theta``, ``varcorr``,
    ``ranef``, ``coef``, ``fitted`` (response scale), ``eta``, ``resid``, ``loglik``, ``aic``,
    ``bic``, ``deviance`` (lme4's: the conditional deviance), ``objective``, ``df_resid``, ``nobs``,
    ``ngroups``, ``coef_table`` (z tests), ``ranef_condsd``, ``ranef_condvar``, ``is_singular``,
    ``converged``, ``family``, ``nagq``.
    """

    @property
    def ranef_condsd(self) -> dict:
        """Conditional standard deviations of the random effects (lme4's ``condVar``)."""
        from ..infer.condvar import ranef_condsd

        return ranef_condsd(self)

    @property
    def ranef_condvar(self) -> dict:
        """Conditional covariance matrices of each level's random effects."""
        from ..infer.condvar import ranef_condvar

        return ranef_condvar(self)

    def summary(self, correlation: bool | None = None):
        """lme4's glmer summary; ``print()`` it.

        Parameters
        ----------
        correlation : bool, optional
            Show the correlation of the fixed effects (default: up to 12 of them).

        Returns
        -------
        GlmmSummary
        """
        from ..infer.glmm_summary import GlmmSummary

        return GlmmSummary(self, correlation=correlation)

    def predict(self, newdata=None, type: str = "link", re_form=None,  # noqa: A002  (R's argument name)
                allow_new_levels: bool = True) -> pd.Series:
        """Predictions (lme4's ``predict.merMod``).

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict for (default: the rows of the fit).
        type : {"link", "response"}
            The linear predictor (lme4's default) or the mean ``g^{-1}(eta)``.
        re_form : None, "~0" or "NA"
            Conditional on the random effects (None) or at the population level.
        allow_new_levels : bool
            Unseen grouping levels get the population value.

        Returns
        -------
        pandas.Series
        """
        if type not in _TYPES:
            raise ArgumentError(f"type must be 'link' or 'response', got {type!r}")
        from ..infer.predict import predict

        if newdata is None and re_form is None:
            eta = self.eta
        else:
            eta = predict(self, newdata=newdata, re_form=re_form, allow_new_levels=allow_new_levels)
            eta = eta if isinstance(eta, pd.Series) else pd.Series(np.asarray(eta))
        if type == "link":
            return eta.rename("link")
        return pd.Series(np.asarray(self.family.linkinv(eta.to_numpy())), index=eta.index, name="response")

    def anova(self, *others, names=None):
        """Likelihood-ratio tests against other glmer fits (lme4's ``anova(m1, m2)``).

        Parameters
        ----------
        *others : GeneralizedLinearMixedModel
        names : list of str, optional
            Row labels.

        Returns
        -------
        AnovaTable
        """
        return anova_glmer(self, *others, names=names)

    def confint(self, parm=None, level: float = 0.95, method: str = "wald") -> pd.DataFrame:
        """Wald intervals of the fixed effects (lme4's ``confint(m, method = "Wald")``).

        Parameters
        ----------
        parm : str or list of str, optional
            Fixed effects (default: all).
        level : float
        method : {"wald"}

        Returns
        -------
        pandas.DataFrame
            Columns ``"2.5 %"``, ``"97.5 %"`` (for ``level = 0.95``).
        """
        if str(method).lower() != "wald":
            raise ArgumentError("glmer fits have Wald intervals only here (method='wald')")

        q = dist.norm_ppf(0.5 + level / 2)
        ct = self.coef_table
        lo, hi = ct["Estimate"] - q * ct["Std. Error"], ct["Estimate"] + q * ct["Std. Error"]
        pct = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
        out = pd.DataFrame({pct[0]: lo, pct[1]: hi})
        return out if parm is None else out.loc[list(np.atleast_1d(parm))]

    def simulate(self, nsim: int = 1, seed=None, *, fixef=None, theta=None, use_u: bool = False) -> np.ndarray:
        """Responses simulated from the fit (see :func:`jaxhlm._src.sim.glmm_sim.simulate_glmm`).

        Parameters
        ----------
        nsim : int
        seed : int, Generator or SeedSequence, optional
        fixef, theta : optional
            Parameters to simulate from instead of the estimates.
        use_u : bool
            Keep the conditional modes of the random effects.

        Returns
        -------
        numpy.ndarray, shape (nobs, nsim)
            Proportions for binomial responses with trials, counts for Poisson ones.
        """
        from ..sim.glmm_sim import simulate_glmm

        return simulate_glmm(self, nsim, seed, fixef=fixef, theta=theta, use_u=use_u)

    def refit_many(self, Y, *, chunk_size=None) -> pd.DataFrame:
        """Refits to the columns of ``Y``, all of a chunk in one compiled program.

        Parameters
        ----------
        Y : array (nobs, nrep)
            Responses (proportions for cbind responses).
        chunk_size : int, optional
            Replicates per program call (default up to 256).

        Returns
        -------
        pandas.DataFrame
            See :func:`jaxhlm._src.sim.glmm_sim.refit_many_glmm`.
        """
        from ..sim.glmm_sim import refit_many_glmm

        return refit_many_glmm(self, Y, chunk_size=chunk_size)

    def bootstrap(self, nsim: int = 1000, seed=None, *, use_u: bool = False):
        """Parametric bootstrap (lme4's ``bootMer``).

        Parameters
        ----------
        nsim : int
        seed : int, optional
        use_u : bool
            Keep the conditional modes of the random effects.

        Returns
        -------
        BootstrapResult
            With ``confint()`` (percentile intervals) and ``summary()``.
        """
        from ..sim.glmm_sim import bootstrap_glmm

        return bootstrap_glmm(self, nsim, seed, use_u=use_u)

    def power(self, test=None, nsim: int = 1000, alpha: float = 0.05, *, fixef=None, theta=None, seed=None,
              level: float = 0.95):
        """Power of the Wald z test of ``test`` by simulation (simr's ``powerSim``).

        Parameters
        ----------
        test : str, optional
            The fixed effect tested (default: the only non-intercept one).
        nsim : int
        alpha : float
        fixef, theta : optional
            Effect sizes / variance parameters to simulate from, e.g. ``{"x": 0.5}``.
        seed : int, optional
        level : float
            Confidence level of the Clopper-Pearson interval.

        Returns
        -------
        PowerResult
        """
        from ..sim.glmm_sim import power_glmm

        return power_glmm(self, test, nsim, alpha, fixef=fixef, theta=theta, seed=seed, level=level)

    def power_curve(self, along: str, sizes, test=None, nsim: int = 1000, alpha: float = 0.05, *, fixef=None,
                    theta=None, seed=None, level: float = 0.95) -> pd.DataFrame:
        """Power of the Wald z test of ``test`` against the number of levels of ``along``
        (simr's ``powerCurve`` with ``extend``).

        Parameters
        ----------
        along : str
            A grouping factor of the model.
        sizes : sequence of int
            Numbers of levels to simulate (a random subset or resampled copies of the levels).
        test, nsim, alpha, fixef, theta, seed, level
            As for :meth:`power`.

        Returns
        -------
        pandas.DataFrame
            One row per size: ``size``, ``nobs``, ``power``, ``lower``, ``upper``, ``successes``,
            ``trials``, ``n_failed``.
        """
        from ..sim.glmm_sim import power_curve_glmm

        return power_curve_glmm(self, along, sizes, test, nsim, alpha, fixef=fixef, theta=theta, seed=seed,
                                level=level)

    def refit(self, y, *, name=None) -> "GeneralizedLinearMixedModel":
        """The same model fitted to a new response, from this fit's theta.

        Parameters
        ----------
        y : array (nobs,)
            The response (proportions for cbind responses).
        name : str, optional

        Returns
        -------
        GeneralizedLinearMixedModel
        """
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.nobs,):
            raise ArgumentError(f"y must have one value per row used ({self.nobs}), got shape {y.shape}")
        return gp.refit_glmer_response(self, y, name=name, cls=type(self))


def anova_glmer(*models, names=None):
    """LRTs between glmer fits of the same family and rows (see :func:`jaxhlm._src.infer.anova.lrt`)."""
    from ..infer.anova import lrt

    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if not all(isinstance(m, GlmmFitState) for m in models):
        raise ModelComparisonError("anova() compares glmer fits with glmer fits (not with lmer fits)")
    fams = {repr(m.family) for m in models}
    if len(fams) > 1:
        raise ModelComparisonError(f"the models have different families {sorted(fams)}")
    w0 = np.asarray(models[0].glmm_data.wt)
    for m in models[1:]:
        if m.nobs == models[0].nobs and not np.array_equal(np.asarray(m.glmm_data.wt), w0):
            raise ModelComparisonError("the models were fitted with different prior weights (trials)")
    if len({m.nagq > 1 for m in models}) > 1:
        raise ModelComparisonError("Laplace (nAGQ <= 1) and quadrature (nAGQ > 1) objectives are on different "
                                   "scales (lme4's quadrature leaves out the saturated-model constant)")
    return lrt(*models, names=names, refit=False)


@threads.one_blas_thread
def glmer(formula: str, data, family="binomial", nAGQ: int = 1, *, weights=None, offset=None,  # noqa: N803
          contrasts=None, start=None, name: str | None = None) -> GeneralizedLinearMixedModel:
    """Fit a generalized linear mixed model with an lme4 formula (lme4's ``glmer``).

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"cbind(incidence, size - incidence) ~ period + (1 | herd)"``.
    data : pandas.DataFrame (or polars and others)
        Never modified.
    family : str, tuple or Family, default "binomial"
        ``"binomial"`` (logit), ``"poisson"`` (log), ``("binomial", "probit")`` or
        ``jaxhlm.families.Binomial(link="cloglog")``.
    nAGQ : int, default 1
        1: the Laplace approximation; k > 1: adaptive Gauss-Hermite quadrature with k nodes
        (one scalar random-effect term only); 0: fixed effects estimated inside PIRLS (lme4's
        fast first stage only).
    weights : str or array-like, optional
        Prior weights (for a proportion response: the numbers of trials).
    offset : str or array-like, optional
        A known term of the linear predictor (e.g. ``log(exposure)`` for Poisson rates).
    contrasts : dict, optional
        Coding of fixed-effect factors (as ``lmer``).
    start : array-like, optional
        Starting theta (lme4's order); default lme4's (1 on diagonals, 0 below).
    name : str, optional
        Label used in model comparisons.

    Returns
    -------
    GeneralizedLinearMixedModel

    Notes
    -----
    lme4's two stages in one compiled program: BFGS over theta with ``(beta, u)`` at their
    joint mode by PIRLS, then BFGS over ``(theta, beta)`` with ``u`` at its conditional mode;
    PIRLS runs to convergence at every evaluation and the objective is differentiated exactly
    through the mode (:mod:`jaxhlm._src.optim.pirls`). The log-determinant uses the IRLS
    (Fisher) weights as lme4 does, so probit and cloglog fits reproduce lme4's objective, not
    glmmTMB's. The covariance of the fixed effects is lme4's Hessian-based one, from the exact
    Hessian.
    """
    if is_out_of_core(data):
        raise ArgumentError("glmer needs the rows in memory: unlike a linear mixed model a GLMM has no sufficient "
                            "statistics (every PIRLS step reweights the rows); pass a pandas DataFrame "
                            "(e.g. dask_df.compute())")
    t0 = time.perf_counter()
    fam = gp.as_family(family)
    kwargs = {k: v for k, v in (("weights", weights), ("offset", offset), ("contrasts", contrasts)) if v is not None}
    design = gp.glformula(formula, data, fam, **kwargs)
    model = gp.fit_glmer_design(design, fam, nagq=nAGQ, start=start, name=name, cls=GeneralizedLinearMixedModel,
                                timings={"design": time.perf_counter() - t0})
    model.data, model.design_args = data, kwargs
    return model
