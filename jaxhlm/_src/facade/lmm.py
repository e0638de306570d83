"""The user-facing model: ``lmer()`` and :class:`LinearMixedModel`.

``lmer`` runs the pipeline of :mod:`jaxhlm._src.model.pipeline` (``lFormula -> mkLmerDevfun ->
optimizeLmer -> mkMerMod``) on data in memory, out of core (Dask, files) or sharded over
devices. :class:`LinearMixedModel` is the fitted state (:class:`~jaxhlm._src.model.state.FitState`:
estimates and lme4's derived quantities) plus the methods of the later steps, each delegating
to the module that implements it (inference, simulation, plots) and documented there.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError
from ..model import pipeline
from ..model.state import FitState

__all__ = ["LinearMixedModel", "lmer", "lmer_sharded"]


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
        """An lme4/lmerTest-style summary; ``print()`` it, or display it in Jupyter."""
        from ..infer.summary import Summary

        return Summary(self, **kwargs)

    def _repr_html_(self) -> str:
        """Jupyter's display of the model (R's ``print(m)``); see ``Summary.short_html``."""
        from ..infer.summary import Summary

        return Summary(self).short_html()

    def confint(self, parm=None, level: float = 0.95, method: str = "profile", **kwargs) -> pd.DataFrame:
        """Confidence intervals: ``method="profile"`` (lme4's default), ``"wald"`` or ``"boot"``.

        Index ``.sig01``..., ``.sigma``, fixed effects; columns ``"2.5 %"``, ``"97.5 %"``.
        See :func:`jaxhlm._src.infer.confint.confint`.
        """
        if str(method).lower() == "boot":
            from ..sim.bootstrap import bootstrap_confint

            return bootstrap_confint(self, parm=parm, level=level, **kwargs)
        from ..infer.confint import confint

        return confint(self, parm=parm, level=level, method=method, **kwargs)

    def predict(self, newdata=None, re_form=None, allow_new_levels: bool = True, interval=None,
                level: float = 0.95, method: str = "analytic", n_sims: int = 1000, seed=None):
        """Predictions, conditional (``re_form=None``) or population level (``re_form="~0"``);
        ``interval="confidence" | "prediction"`` adds intervals (``method="analytic" | "simulate"``).

        Unseen grouping levels get the population prediction. See :func:`jaxhlm._src.infer.predict.predict`.
        """
        from ..infer.predict import predict

        return predict(self, newdata=newdata, re_form=re_form, allow_new_levels=allow_new_levels,
                       interval=interval, level=level, method=method, n_sims=n_sims, seed=seed)

    def icc(self) -> pd.Series:
        """Adjusted and conditional intraclass correlation (R's ``performance::icc``)."""
        from ..infer.icc import model_icc

        return model_icc(self)

    def ranef_chisq(self) -> pd.DataFrame:
        """Raudenbush & Bryk's (HLM) chi-square test that each random coefficient varies."""
        from ..infer.ranef_chisq import ranef_chisq

        return ranef_chisq(self)

    def contest(self, L, rhs=0.0, joint: bool = True, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """t / F tests of contrasts ``L beta = rhs`` (lmerTest's ``contest``)."""
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
        """Fixed effects with Kenward-Roger df (REML fits)."""
        from ..infer.kenward_roger import coef_table_kr

        return coef_table_kr(self, max_q=max_q)

    def anova(self, *others, type=3, ddf: str = "satterthwaite", **kwargs):
        """lmerTest's F table of the fixed-effect terms (``type`` 1/2/3, ``ddf`` "satterthwaite" or
        "kenward-roger"); with other models, the likelihood-ratio comparison of :func:`jaxhlm.anova`.
        See :func:`jaxhlm._src.infer.ftests.anova_table`."""
        if others:
            from .compare import anova

            return anova(self, *others, **kwargs)
        from ..infer.ftests import anova_table

        return anova_table(self, type=type, ddf=ddf, **kwargs)

    def drop1(self, scope=None, ddf: str = "satterthwaite"):
        """F tests of the terms that can be dropped (lmerTest's ``drop1``); see :func:`jaxhlm._src.infer.ftests.drop1`."""
        from ..infer.ftests import drop1

        return drop1(self, scope=scope, ddf=ddf)

    def ranova(self, reduce_terms: bool = True):
        """Likelihood-ratio tests of the random-effect terms (lmerTest's ``ranova``); see :mod:`jaxhlm._src.infer.ranova`."""
        from ..infer.ranova import ranova

        return ranova(self, reduce_terms=reduce_terms)

    def update(self, formula: str | None = None, data=None, reml: bool | None = None, name=None) -> "LinearMixedModel":
        """Refit with R's ``update`` syntax (``". ~ . - x"``); see :func:`jaxhlm._src.infer.update.update`."""
        from ..infer.update import update

        return update(self, formula=formula, data=data, reml=reml, name=name)

    def emmeans(self, specs, by=None, at=None, lmer_df=None, level: float = 0.95, **kwargs):
        """Estimated marginal means (emmeans); ``.pairs()`` compares them. See :func:`jaxhlm._src.infer.emmeans.emmeans`."""
        from ..infer.emmeans import emmeans

        return emmeans(self, specs, by=by, at=at, lmer_df=lmer_df, level=level, **kwargs)

    # ------------------------------------------------------------------ simulation
    def simulate(self, nsim: int = 1, seed=None, *, fixef=None, theta=None, sigma=None, use_u: bool = False) -> np.ndarray:
        """Responses simulated from the fitted model (lme4's ``simulate``): an ``(nobs, nsim)`` array.

        See :func:`jaxhlm._src.sim.simulate.simulate`.
        """
        from ..sim.simulate import simulate

        return simulate(self, nsim, seed, fixef=fixef, theta=theta, sigma=sigma, use_u=use_u)

    def refit(self, y, *, name=None) -> "LinearMixedModel":
        """Refit to a new response with the same design (lme4's ``refit``)."""
        from ..sim.simulate import refit

        return LinearMixedModel.of(refit(self, y, name=name))

    def refit_many(self, Y, *, satterthwaite: bool = True, batch_size=None, chunk_size=None, progress=None) -> pd.DataFrame:
        """Refit to many responses in one compiled program; one row per replicate.

        See :func:`jaxhlm._src.sim.simulate.refit_many`.
        """
        from ..sim.simulate import refit_many

        return refit_many(self, Y, satterthwaite=satterthwaite, batch_size=batch_size, chunk_size=chunk_size,
                          progress=progress)

    def bootstrap(self, nsim: int = 1000, seed=None, *, use_u: bool = False, satterthwaite: bool = False,
                  batch_size=None, chunk_size=None, progress=None):
        """Parametric bootstrap (lme4's ``bootMer``); see :func:`jaxhlm._src.sim.bootstrap.bootstrap`."""
        from ..sim.bootstrap import bootstrap

        return bootstrap(self, nsim, seed, use_u=use_u, satterthwaite=satterthwaite, batch_size=batch_size,
                         chunk_size=chunk_size, progress=progress)

    # ------------------------------------------------------------------ plots
    def plot(self, kind: str = "resid", **kwargs):
        """Draw a plot of the fit with matplotlib and return its Axes; see :mod:`jaxhlm.plotting`.

        ``kind``: ``"resid"`` (residuals vs fitted), ``"qq"`` (normal Q-Q), ``"lines"`` (one
        regression line per group over ``x=``, the average thick) or ``"caterpillar"``
        (conditional modes with 95% intervals). Keyword arguments go to that plot's function.
        """
        from ... import plotting

        return plotting.plot(self, kind=kind, **kwargs)


def _check_reml(reml):
    if not isinstance(reml, (bool, np.bool_)):
        raise ArgumentError(f"reml must be True or False, got {reml!r} ({type(reml).__name__})")
    return bool(reml)


def _design_kwargs(weights, offset, contrasts) -> dict:
    kw = {}
    if weights is not None:
        kw["weights"] = weights
    if offset is not None:
        kw["offset"] = offset
    if contrasts is not None:
        kw["contrasts"] = contrasts
    return kw


def lmer(formula: str, data, reml: bool = True, *, name: str | None = None, start=None, weights=None, offset=None,
         contrasts=None) -> LinearMixedModel:
    """Fit a linear mixed model with an lme4 formula.

    Parameters
    ----------
    formula : str
        lme4 syntax as R users write it, e.g. ``"mathscore ~ family_inc + (family_inc | sch_id)"``;
        random terms ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)``.
    data : pandas.DataFrame (or polars and others), dask.dataframe.DataFrame, or path(s) of Parquet / CSV files
        Never modified. Rows with missing values in used columns are dropped. A Dask DataFrame
        or files are read in chunks and never gathered (see :mod:`jaxhlm._src.design.outofcore`).
    reml : bool, default True
        REML (lme4's default) or maximum likelihood (``reml=False``, needed for ``anova``).
    name : str, optional
        Label used in model comparisons.
    start : array-like, optional
        Starting theta (lme4 order); default a moment estimate (lme4 starts at 1 on the diagonals, 0 below).
    weights : str or array-like, optional
        Prior weights (a column name or one value per row): the residual variance of row i is
        ``sigma^2 / w_i``, as lme4's ``weights=``.
    offset : str or array-like, optional
        A known term added to the linear predictor (as ``offset(x)`` in the formula).
    contrasts : dict, optional
        Coding of factors, e.g. ``{"f": "sum"}`` (R's ``contrasts = list(f = "contr.sum")``).

    Returns
    -------
    LinearMixedModel

    Notes
    -----
    Minimises the profiled deviance (Bates et al. 2015, JSS 67(1), eqs. 34 and 41) over theta
    with BFGS on exact gradients, in float64, compiled once per model layout (and cached on
    disk, see :mod:`jaxhlm._src.base.programcache`). Without ``start`` the search begins at a
    moment estimate of theta (:mod:`jaxhlm._src.optim.start`); ``start`` gives lme4's
    behaviour (e.g. ``start=[1, 0, 1]``).
    """
    reml = _check_reml(reml)
    from ..design.outofcore import is_out_of_core

    if is_out_of_core(data):
        return _lmer_out_of_core(formula, data, reml, name=name, start=start)
    t0 = time.perf_counter()
    kwargs = _design_kwargs(weights, offset, contrasts)
    design = pipeline.lformula(formula, data, **kwargs)
    t1 = time.perf_counter()
    layout, stats = pipeline.mk_devfun(design)
    t2 = time.perf_counter()
    model = pipeline.fit_design(design, layout, stats, reml, start=start, name=name, cls=LinearMixedModel,
                                timings={"design": t1 - t0, "stats": t2 - t1})
    model.data, model.design_args = data, kwargs  # a reference to the user's frame, never modified
    return model


def _lmer_out_of_core(formula, data, reml, *, name=None, start=None, mesh=None, chunk_rows=None):
    from ..design.outofcore import DEFAULT_CHUNK_ROWS, out_of_core_design
    from ..stats.layout import build_layout
    from ..stats.suffstats import compute_stats

    design, pseudo, t_design = out_of_core_design(formula, data, chunk_rows or DEFAULT_CHUNK_ROWS)
    t1 = time.perf_counter()
    layout = build_layout(pseudo)  # the pseudo-rows have the full data's level combinations
    if mesh is not None:
        from ..stats.sharding import padded_layout

        layout = padded_layout(layout, mesh.devices.size)
    stats = compute_stats(pseudo, layout)._replace(n=np.float64(design.n))
    if mesh is not None:
        from ..stats.sharding import shard_stats

        stats = shard_stats(stats, mesh)
    tm = {"design": t_design, "stats": time.perf_counter() - t1, "pseudo_rows": int(pseudo.n)}
    return pipeline.fit_design(design, layout, stats, reml, start=start, name=name, cls=LinearMixedModel, timings=tm)


def lmer_sharded(formula, data, reml: bool = True, *, devices=None, name=None, start=None) -> LinearMixedModel:
    """:func:`jaxhlm.lmer` with the group axis of the computation sharded over ``devices``.

    Parameters
    ----------
    formula, data, reml, name, start
        As for :func:`jaxhlm.lmer` (``data`` may also be a Dask DataFrame or files).
    devices : int or sequence of jax devices, optional
        Default: all devices JAX sees. On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
        (set before JAX is imported) makes N host devices.

    Returns
    -------
    LinearMixedModel
        Its statistics stay sharded, so later computations on it (Satterthwaite df, profiles,
        refits) run sharded too.
    """
    from ..design.outofcore import is_out_of_core
    from ..stats.sharding import group_mesh, padded_layout, shard_stats

    reml = _check_reml(reml)
    mesh = group_mesh(devices)
    if is_out_of_core(data):
        model = _lmer_out_of_core(formula, data, reml, name=name, start=start, mesh=mesh)
    else:
        t0 = time.perf_counter()
        design = pipeline.lformula(formula, data)
        from ..stats.layout import build_layout
        from ..stats.suffstats import compute_stats

        layout = padded_layout(build_layout(design), mesh.devices.size)
        t1 = time.perf_counter()

        stats = shard_stats(compute_stats(design, layout), mesh)
        tm = {"design": t1 - t0, "stats": time.perf_counter() - t1}
        model = pipeline.fit_design(design, layout, stats, reml, start=start, name=name, cls=LinearMixedModel,
                                    timings=tm)
    model.timings["devices"] = int(mesh.devices.size)
    return model
