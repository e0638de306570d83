"""The GLMM fit pipeline in lme4's modular steps (``glmer``'s own), each usable on its own.

    glformula(formula, data, family)         -> Design                  (lme4's glFormula)
    mk_glmer_devfun(design, family)          -> (Layout, WeightedOp, GlmmData)   (mkGlmerDevfun)
    optimize_glmer(op, data, layout, ...)    -> GlmmOpt                 (optimizeGlmer, both stages, checkConv)
    mk_glmer_mod(design, layout, ...)        -> GlmmFitState            (mkMerMod: results, warnings)

Unlike a linear mixed model, a GLMM has no sufficient statistics: every PIRLS step reweights the
rows, so the compiled programs take the rows themselves (:class:`~jaxhlm._src.stats.weighted.WeightedOp`)
and compute the statistics of :mod:`jaxhlm._src.stats.suffstats` inside (the same layout and
factorisation as ``lmer``). There is no out-of-core GLMM fit for that reason.

Response data (R's ``binomial()$initialize``): ``cbind(s, f)`` gives ``y = s / (s + f)`` and
prior weights ``w (s + f)``; a proportion with ``weights=`` gives prior weights ``w`` and trials
1; 0/1, booleans and factors (first level failure) give trials 1.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..base.errors import ArgumentError, ConvergenceWarning, DataError, SingularFitWarning, warn
from ..design.build import build_design
from ..engine.families import EPS, Family, get_family
from ..optim.glmm_centre import from_search
from ..optim.glmm_fit import optimize
from ..optim.recentre import centred_design, shifted_columns, theta_from_centred
from ..optim.pirls import GlmmData
from ..stats.layout import build_layout
from ..stats.weighted import build_weighted_op
from .glmm_state import GlmmFitState
from .pipeline import check_start

__all__ = ["glformula", "mk_glmer_devfun", "optimize_glmer", "mk_glmer_mod", "fit_glmer_design", "glmm_data",
           "as_family", "check_nagq", "refit_glmer_response"]


def as_family(family, link=None) -> Family:
    """A :class:`Family` from ``"binomial"``, ``"poisson"``, ``("binomial", "probit")`` or a Family."""
    if isinstance(family, tuple) and len(family) == 2:
        family, link = family
    return get_family(family, link)


def check_nagq(nagq, layout) -> int:
    """lme4's rules: an integer >= 0; above 1 only for a single scalar random-effect term."""
    try:
        k = int(nagq)
    except (TypeError, ValueError):
        raise ArgumentError(f"nAGQ must be an integer, got {nagq!r}") from None
    if k != nagq or k < 0:
        raise ArgumentError(f"nAGQ must be an integer >= 0, got {nagq!r}")
    if k > 1 and (layout.nfactors != 1 or layout.q[0] != 1):
        raise ArgumentError("nAGQ > 1 is only available for models with a single, scalar random-effects term "
                            f"(this model has random-effect dimensions {list(layout.q)})")
    if k > 100:
        raise ArgumentError(f"nAGQ = {k} is more quadrature nodes than useful (lme4 allows up to 100)")
    return k


def glformula(formula: str, data, family, weights=None, offset=None, contrasts=None):
    """The design of ``formula`` on ``data`` for a GLM family: lme4's ``glFormula``."""
    fam = as_family(family)
    return build_design(formula, data, contrasts=contrasts, weights=weights, offset=offset, family=fam.family)


def glmm_data(design, family: Family) -> GlmmData:
    """The per-row response data (see the module docstring) as float64 arrays."""
    n = design.n
    y = np.ascontiguousarray(design.y, dtype=np.float64)
    w = getattr(design, "weights", None)
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    trials = getattr(design, "trials", None)
    trials = np.ones(n) if trials is None else np.asarray(trials, dtype=np.float64)
    off = getattr(design, "offset", None)
    off = np.zeros(n) if off is None else np.asarray(off, dtype=np.float64)
    if family.family == "poisson":
        if np.any(y < 0):
            raise DataError(f"the Poisson response {design.response_name!r} has negative values")
        if np.any(y != np.round(y)):
            warn(f"non-integer counts in the Poisson response {design.response_name!r}", ConvergenceWarning)
    return GlmmData(y=y, wt=np.ascontiguousarray(w * trials), n=np.ascontiguousarray(trials),
                    offset=np.ascontiguousarray(off))


def mk_glmer_devfun(design, family: Family, pad: bool = True):
    """The layout, the row arrays of the compiled programs and the response data: lme4's ``mkGlmerDevfun``."""
    layout = build_layout(design, pad=pad, weighted=True)
    return layout, build_weighted_op(design, layout), glmm_data(design, family)


def optimize_glmer(op, data, layout, family: Family, nagq: int = 1, start=None) -> "GlmmOpt":  # noqa: F821
    """Both of lme4's stages and its checks (:func:`jaxhlm._src.optim.glmm_fit.optimize`)."""
    return optimize(op, data, layout, family, check_nagq(nagq, layout), start=check_start(start, layout))


def mk_glmer_mod(design, layout, family, nagq, opt, data, op, timings=None, name=None, cls=GlmmFitState):
    """The fitted model with lme4's warnings for unconverged and singular fits."""
    model = cls(design, layout, family, nagq, opt, data, op, timings, name)
    msgs = model.optinfo["messages"]
    if family.family == "binomial":
        mu = np.asarray(model.fitted)
        extreme = int(np.sum((mu < 10 * EPS) | (mu > 1 - 10 * EPS)))
        if extreme:  # R's glm.fit warning; usually complete separation
            msgs.append(f"fitted probabilities numerically 0 or 1 occurred ({extreme} rows): is the response "
                        "completely separated by a predictor or a grouping level?")
    for m in list(msgs):  # lme4 warns also for converged fits ("nearly unidentifiable")
        warn(m, ConvergenceWarning)
    if model.is_singular:
        msg = "boundary (singular) fit: a variance is (nearly) zero or a correlation is +-1; see is_singular"
        msgs.append(msg)
        warn(msg, SingularFitWarning)
    return model


def fit_glmer_design(design, family, nagq=1, start=None, name=None, cls=GlmmFitState, timings=None, devfun=None):
    """Optimise and build the model for a design (``devfun``: a :func:`mk_glmer_devfun` result to reuse)."""
    t0 = time.perf_counter()
    layout, op, data = devfun if devfun is not None else mk_glmer_devfun(design, family)
    t1 = time.perf_counter()
    shifts = shifted_columns(design)
    if shifts:  # random-effect columns of a large mean: searched centred (optim/glmm_centre.py)
        centred = centred_design(design, shifts)
        start_c = None if start is None else theta_from_centred(check_start(start, layout), layout, design, shifts,
                                                                 inverse=True)
        opt_c = optimize_glmer(build_weighted_op(centred, layout), data, layout, family, nagq=nagq, start=start_c)
        opt = from_search(opt_c, layout, design, shifts)
    else:
        opt = optimize_glmer(op, data, layout, family, nagq=nagq, start=start)
    tm = dict(timings or {})
    tm["devfun"] = t1 - t0
    tm["optimize"] = time.perf_counter() - t1
    return mk_glmer_mod(design, layout, family, nagq, opt, data, op, tm, name=name, cls=cls)


def refit_glmer_response(model, y, name=None, cls=None):
    """The same design fitted to a new response ``y`` (proportions for the binomial), from the model's theta."""
    y = np.ascontiguousarray(y, dtype=np.float64)
    design = dataclasses.replace(model.design, y=y)
    data = model.glmm_data._replace(y=y)
    search = model.opt.search
    if search is None:
        start = model.layout.lifted(model.opt.theta)
    else:  # lifted where the fit searched (a lifted tiny element of the mapped theta would be absurd)
        start = theta_from_centred(model.layout.lifted(search.theta), model.layout, model.design, list(search.shifts))
    return fit_glmer_design(design, model.family, model.nagq, start=start,
                            name=name if name is not None else model.name, cls=cls or type(model),
                            devfun=(model.layout, model.op, data))
