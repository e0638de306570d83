"""The user-facing model :class:`LinearMixedModel` (made by :func:`jaxhlm.lmer`, see :mod:`.entry`).

:class:`LinearMixedModel` is the fitted state (:class:`~jaxhlm._src.model.state.FitState`:
estimates and lme4's derived quantities) plus the methods of the later steps, each delegating
to the module that implements it (inference, simulation, plots) and documented there.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from ..model.state import FitState

__all__ = ["LinearMixedModel"]


class LinearMixedModel(FitState):
    """A linear mixed model fitted by maximum likelihood or REML (create it with :func:`jaxhlm.lmer`).

    ``y = X beta + Z b + e``, ``b ~ N(0, sigma^2 Lambda Lambda')``, ``e ~ N(0, sigma^2 W^{-1})``,
    with ``Lambda`` block diagonal, built from the relative covariance factors ``T_f(theta)``.

    Properties (lme4's names): ``fixef``, ``se``, ``vcov``, ``sigma``, ``theta``, ``varcorr``,
    ``ranef``, ``coef``, ``fitted``, ``resid``, ``y``, ``loglik``, ``aic``, ``bic``, ``deviance``,
    ``reml_criterion``, ``objective``, ``df_resid``, ``nobs``, ``ngroups``, ``coef_table``,
    ``ranef_condsd``, ``ranef_condvar``, ``is_singular``, ``converged``, ``block_description``.
    """

    @classmethod
    def of(cls, state: FitState) -> "LinearMixedModel":
        """The facade of a fitted state (shares its arrays)."""
        if isinstance(state, cls):
            return state
        return cls(state.design, state.layout, state.stats, state.reml, state.opt, state.timings, state.name)

    # ------------------------------------------------------------------ inference
    @functools.cached_property
    def _satterthwaite(self):
        from ..infer.satterthwaite import satterthwaite_parts

        return satterthwaite_parts(self)

    @property
    def coef_table(self) -> pd.DataFrame:
        """Fixed effects with Satterthwaite degrees of freedom (lmerTest's ``summary`` table):
        Estimate, Std. Error, df, t value, Pr(>|t|)."""
        from ..infer.satterthwaite import coef_table

        return coef_table(self)

    def summary(self, **kwargs):
        """An lme4/lmerTest-style summary; ``print()`` it, or display it in Jupyter.

        Parameters
        ----------
        **kwargs
            Options of :class:`jaxhlm._src.infer.summary.Summary` (``ddf="satterthwaite" |
            "kenward-roger"``, ``correlation=``, ``data_name=``, ``digits=``).

        Returns
        -------
        Summary
            Prints as lmerTest's ``summary(m)``; ``_repr_html_`` for Jupyter.
        """
        from ..infer.summary import Summary

        return Summary(self, **kwargs)

    def _repr_html_(self) -> str:
        """Jupyter's display of the model (R's ``print(m)``); see ``Summary.short_html``."""
        from ..infer.summary import Summary

        return Summary(self).short_html()

    def confint(self, parm=None, level: float = 0.95, method: str = "profile", **kwargs) -> pd.DataFrame:
        """Confidence intervals (lme4's ``confint``).

        Parameters
        ----------
        parm : list of str, optional
            Parameters (``.sig01``..., ``.sigma``, fixed-effect names); default all.
        level : float, default 0.95
        method : {"profile", "wald", "boot"}
            Likelihood profile (lme4's default), Wald (fixed effects only), or parametric
            bootstrap percentiles (:func:`jaxhlm._src.sim.bootstrap.bootstrap_confint`).
        **kwargs
            Passed on: e.g. ``nsim=``, ``seed=`` for ``"boot"``; see :func:`jaxhlm._src.infer.confint.confint`.

        Returns
        -------
        DataFrame
            Index the parameters; columns ``"2.5 %"``, ``"97.5 %"`` (for ``level`` 0.95).
        """
        if str(method).lower() == "boot":
            from ..sim.bootstrap import bootstrap_confint

            return bootstrap_confint(self, parm=parm, level=level, **kwargs)
        from ..infer.confint import confint

        return confint(self, parm=parm, level=level, method=method, **kwargs)

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = True, interval=None,
                level: float = 0.95, method: str = "analytic", n_sims: int = 1000, seed=None):
        """Predictions (lme4's ``predict``), with optional intervals.

        Parameters
        ----------
        newdata : DataFrame, optional
            Default: the rows of the fit (then the fitted values).
        re_form : None, str
            ``None``: conditional on all random effects; ``"~0"`` (or ``NA``): population level;
            a formula such as ``"~(1 | g)"``: only those terms.
        allow_new_levels : bool, default True
            Unseen grouping levels get the population prediction for their terms.
        interval : {None, "confidence", "prediction"}
            Adds ``lwr``/``upr`` columns.
        level : float, default 0.95
        method : {"analytic", "simulate"}
            Intervals from the prediction-error variance, or simulated (merTools' ``predictInterval``).
        n_sims : int, default 1000
            Simulations for ``method="simulate"``.
        seed : int, optional

        Returns
        -------
        ndarray or DataFrame
            The predictions; a DataFrame ``fit, lwr, upr`` with an interval.
        """
        if interval is not None:
            from ..infer.intervals import predict_interval

            return predict_interval(self, newdata=newdata, re_form=re_form, allow_new_levels=allow_new_levels,
                                    interval=interval, level=level, method=method, n_sims=n_sims, seed=seed)
        from ..infer.predict import predict

        return predict(self, newdata=newdata, re_form=re_form, allow_new_levels=allow_new_levels)

    def icc(self) -> pd.Series:
        """Adjusted and conditional intraclass correlation (R's ``performance::icc``).

        Returns
        -------
        Series
            ``adjusted`` and ``conditional``.
        """
        from ..infer.icc import model_icc

        return model_icc(self)

    def ranef_chisq(self) -> pd.DataFrame:
        """Raudenbush & Bryk's (HLM) chi-square test that each random coefficient varies.

        Returns
        -------
        DataFrame
            One row per random coefficient: chi-square, df, p-value, number of groups used.
        """
        from ..infer.ranef_chisq import ranef_chisq

        return ranef_chisq(self)

    def contest(self, L, rhs=0.0, joint: bool = True, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """t / F tests of contrasts ``L beta = rhs`` (lmerTest's ``contest``).

        Parameters
        ----------
        L : array_like or dict
            One contrast (a vector over the fixed effects, or a dict/Series name -> weight) gives
            a t test; a matrix (or DataFrame with fixed-effect columns) of several rows gives one
            F test (``joint=True``) or a t test per row.
        rhs : float or array_like, default 0
        joint : bool, default True
            Several rows: one F test of all (lmerTest's ``contestMD``), else a t test each.
        ddf : {"satterthwaite", "kenward-roger"}
        level : float, default 0.95
            Confidence level of the t tests' intervals.

        Returns
        -------
        DataFrame
            F test: ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)``; t tests: ``Estimate,
            Std. Error, df, t value, lower, upper, Pr(>|t|)``.
        """
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
        """Fixed effects with Kenward-Roger df and adjusted standard errors (REML fits; pbkrtest).

        Parameters
        ----------
        max_q : int, optional
            Largest number of random effects for the dense computation (default the module's).

        Returns
        -------
        DataFrame
            ``Estimate, Std. Error, df, t value, Pr(>|t|)``.
        """
        from ..infer.kenward_roger import coef_table_kr

        return coef_table_kr(self, max_q=max_q)

    def anova(self, *others, type=3, ddf: str = "satterthwaite", **kwargs):
        """lmerTest's F table of the fixed-effect terms, or, given other models, their
        likelihood-ratio comparison (:func:`jaxhlm.anova`, R's ``anova(m1, m2)``).

        Parameters
        ----------
        *others : LinearMixedModel
            Models to compare with this one (refitted with ML unless ``refit=False``).
        type : {1, 2, 3} or "I", "II", "III", "marginal"
            Type of the hypotheses (lmerTest's; 3 is its default).
        ddf : {"satterthwaite", "kenward-roger"}
        **kwargs
            ``data=`` for the F table; ``refit=``, ``names=`` for the comparison.

        Returns
        -------
        FTable
            ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)`` per term, or the comparison table
            ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``.
        """
        if others:
            from .compare import anova

            return anova(self, *others, **kwargs)
        from ..infer.ftests import anova_table

        return anova_table(self, type=type, ddf=ddf, **kwargs)

    def drop1(self, scope=None, ddf: str = "satterthwaite"):
        """F tests of the terms that can be dropped, marginality respected (lmerTest's ``drop1``).

        Parameters
        ----------
        scope : str or list of str, optional
            Terms to test (each droppable); default all droppable terms.
        ddf : {"satterthwaite", "kenward-roger"}

        Returns
        -------
        FTable
            ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)`` per term.
        """
        from ..infer.ftests import drop1

        return drop1(self, scope=scope, ddf=ddf)

    def ranova(self, reduce_terms: bool = True):
        """Likelihood-ratio tests of the random-effect terms (lmerTest's ``ranova``).

        Parameters
        ----------
        reduce_terms : bool, default True
            Reduce terms with random slopes (``(x | g)`` -> ``(1 | g)``) rather than remove them.

        Returns
        -------
        FTable
            Rows ``<none>`` and one per reduction: ``npar, logLik, AIC, LRT, Df, Pr(>Chisq)``.
        """
        from ..infer.ranova import ranova

        return ranova(self, reduce_terms=reduce_terms)

    def update(self, formula: str | None = None, data=None, reml: bool | None = None, name=None) -> "LinearMixedModel":
        """Refit with an updated formula (R's ``update`` syntax), new data and/or another criterion.

        Parameters
        ----------
        formula : str, optional
            ``". ~ . - x"``, ``". ~ . + (1 | h)"``, or a whole new formula; default unchanged.
        data : DataFrame, optional
            Default: the data of the fit.
        reml : bool, optional
            Default: the fit's criterion.
        name : str, optional
            The new model's name (in comparison tables).

        Returns
        -------
        LinearMixedModel
        """
        from ..infer.update import update

        return update(self, formula=formula, data=data, reml=reml, name=name)

    def emmeans(self, specs, by=None, at=None, lmer_df=None, level: float = 0.95, **kwargs):
        """Estimated marginal means (emmeans' ``emmeans(m, specs, by=, at=)``).

        Parameters
        ----------
        specs : str or list of str
            Predictors whose marginal means are wanted.
        by : str or list of str, optional
            Predictors within whose levels the means are computed.
        at : dict, optional
            Values of numeric predictors (default their means), or levels to keep.
        lmer_df : {"kenward-roger", "satterthwaite", "asymptotic"}, optional
            Degrees of freedom (emmeans' default: Kenward-Roger for REML fits of moderate size).
        level : float, default 0.95
        **kwargs
            ``data=``, ``pbkrtest_limit=``, ``lmertest_limit=`` (see :func:`jaxhlm._src.infer.emmeans.emmeans`).

        Returns
        -------
        EMMeans
            A DataFrame ``emmean, SE, df, lower.CL, upper.CL``; ``.pairs()`` compares the means.
        """
        from ..infer.emmeans import emmeans

        return emmeans(self, specs, by=by, at=at, lmer_df=lmer_df, level=level, **kwargs)

    # ------------------------------------------------------------------ simulation
    def simulate(self, nsim: int = 1, seed=None, *, fixef=None, theta=None, sigma=None, use_u: bool = False) -> np.ndarray:
        """Responses simulated from the fitted model (lme4's ``simulate``).

        Parameters
        ----------
        nsim : int, default 1
        seed : int or numpy Generator, optional
        fixef, theta, sigma : optional
            Parameter values to simulate from instead of the estimates (power analysis).
        use_u : bool, default False
            Condition on the conditional modes (lme4's ``use.u=TRUE``) instead of new random effects.

        Returns
        -------
        ndarray (nobs, nsim)
        """
        from ..sim.simulate import simulate

        return simulate(self, nsim, seed, fixef=fixef, theta=theta, sigma=sigma, use_u=use_u)

    def refit(self, y, *, name=None) -> "LinearMixedModel":
        """Refit to a new response with the same design (lme4's ``refit``).

        Parameters
        ----------
        y : array_like (nobs,)
        name : str, optional

        Returns
        -------
        LinearMixedModel
        """
        from ..sim.simulate import refit

        return LinearMixedModel.of(refit(self, y, name=name))

    def refit_many(self, Y, *, satterthwaite: bool = True, batch_size=None, chunk_size=None, progress=None) -> pd.DataFrame:
        """Refit to many responses in one compiled program (all replicates batched).

        Parameters
        ----------
        Y : array_like (nobs, nrep)
        satterthwaite : bool, default True
            Also Satterthwaite df and p-values per replicate.
        batch_size : int, optional
            Replicates per compiled batch (default chosen from the design's size).
        chunk_size : int, optional
            Replicates per chunk (memory bound; progress is reported per chunk).
        progress : bool or str, optional
            A progress bar (default when the output is a terminal); a string labels it.

        Returns
        -------
        DataFrame
            One row per replicate: objective, deviance, sigma, theta.*, beta.*, se.*, df.*, t.*,
            p.*, converged, singular, iterations, max_abs_grad.
        """
        from ..sim.simulate import refit_many

        return refit_many(self, Y, satterthwaite=satterthwaite, batch_size=batch_size, chunk_size=chunk_size,
                          progress=progress)

    def bootstrap(self, nsim: int = 1000, seed=None, *, use_u: bool = False, satterthwaite: bool = False,
                  batch_size=None, chunk_size=None, progress=None):
        """Parametric bootstrap (lme4's ``bootMer``): simulate, refit all replicates at once.

        Parameters
        ----------
        nsim : int, default 1000
        seed : int, optional
        use_u : bool, default False
            Condition on the conditional modes instead of new random effects.
        satterthwaite : bool, default False
            Also Satterthwaite df per replicate.
        batch_size, chunk_size, progress
            As for :meth:`refit_many`.

        Returns
        -------
        BootstrapResult
            The replicates' table (``.replicates``), ``.confint()`` (percentile intervals,
            lme4's ``confint(method = "boot")``) and ``.summary()``.
        """
        from ..sim.bootstrap import bootstrap

        return bootstrap(self, nsim, seed, use_u=use_u, satterthwaite=satterthwaite, batch_size=batch_size,
                         chunk_size=chunk_size, progress=progress)

    # ------------------------------------------------------------------ plots
    def plot(self, kind: str = "resid", **kwargs):
        """Draw a plot of the fit with matplotlib and return its Axes.

        Parameters
        ----------
        kind : {"resid", "qq", "lines", "caterpillar"}
            Residuals vs fitted, normal Q-Q of the residuals, one regression line per group over
            ``x=`` (the population line thick), or conditional modes with 95% intervals.
        **kwargs
            Passed to that plot's function in :mod:`jaxhlm.plotting`.

        Returns
        -------
        matplotlib Axes
        """
        from ..plots import plot

        return plot(self, kind=kind, **kwargs)
