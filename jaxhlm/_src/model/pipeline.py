"""The fit pipeline in lme4's modular steps, each usable on its own.

    lformula(formula, data)              -> Design            (lme4's lFormula)
    mk_devfun(design)                    -> (Layout, Stats)   (mkLmerDevfun: the criterion's data)
    optimize_lmer(stats, layout, reml)   -> OptResult         (optimizeLmer + checkConv)
    mk_model(design, layout, stats, ...) -> FitState          (mkMerMod: results, warnings)

:func:`fit_design` runs the last three; :func:`refit_ml` refits a REML fit by maximum likelihood
(lme4's ``refitML``) and :func:`refit_response` fits the same design to a new response.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..base.errors import ArgumentError, ConvergenceWarning, SingularFitWarning, warn
from ..design.build import build_design
from ..optim.fit import optimize
from ..optim.recentre import fit_recentred
from ..stats.layout import build_layout, theta_names
from ..stats.suffstats import compute_stats
from .state import FitState

__all__ = ["lformula", "mk_devfun", "optimize_lmer", "mk_model", "fit_design", "refit_ml", "refit_response",
           "check_start"]


def lformula(formula: str, data, **kwargs):
    """The design (model matrices, grouping factors) of ``formula`` on ``data``: lme4's ``lFormula``."""
    return build_design(formula, data, **kwargs)


def mk_devfun(design, pad: bool = True):
    """The layout and the sufficient statistics of ``design``: all the criterion needs."""
    layout = build_layout(design, pad=pad)
    return layout, compute_stats(design, layout)


def check_start(start, layout) -> np.ndarray | None:
    """``start`` as a validated theta vector (lme4 order), or None."""
    if start is None:
        return None
    try:
        th0 = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"start must be {layout.ntheta} numbers (theta, lme4 order), got {start!r}") from None
    if th0.shape != (layout.ntheta,):
        raise ArgumentError(f"start must have {layout.ntheta} elements (theta), got shape {th0.shape}")
    if not np.all(np.isfinite(th0)):
        raise ArgumentError(f"start must be finite, got {th0}")
    if np.max(np.abs(th0)) > 1e8:
        raise ArgumentError(f"start {th0} is absurd: theta holds random-effect standard deviations relative "
                            "to the residual one (lme4 starts at 1)")
    return th0


def optimize_lmer(stats, layout, reml: bool, start=None, names=None):
    """Minimise the profiled criterion (see :func:`jaxhlm._src.optim.fit.optimize`)."""
    return optimize(stats, layout, bool(reml), start=check_start(start, layout), names=names)


def mk_model(design, layout, stats, reml, opt, timings=None, name=None, cls=FitState):
    """The fitted model (``cls``, a :class:`FitState`), with lme4's warnings for unconverged and
    singular fits (also kept in ``optinfo["messages"]``)."""
    model = cls(design, layout, stats, reml, opt, timings, name)
    msgs = model.optinfo["messages"]
    if not opt.converged:
        msg = f"Model failed to converge: {msgs[0] if msgs else 'see optinfo'}"
        th = np.abs(np.asarray(opt.theta))
        if th.size and th.max() > 1e3:
            msg += (f"; theta = {th.max():.3g} means a random-effect standard deviation {th.max():.3g} times "
                    "the residual one: is the response (almost) exactly determined by a grouping factor?")
        msgs[:] = [msg]
        warn(msg, ConvergenceWarning)
    if model.is_singular:
        msg = "boundary (singular) fit: a variance is (nearly) zero or a correlation is +-1; see is_singular"
        msgs.append(msg)
        warn(msg, SingularFitWarning)
    return model


def fit_design(design, layout, stats, reml, start=None, name=None, cls=FitState, timings=None):
    """Optimise and build the model for a design whose statistics are known."""
    t0 = time.perf_counter()
    names = theta_names(design)
    # random-effect columns with a large mean: searched centred, mapped back (optim/recentre.py)
    opt = fit_recentred(design, layout, stats, bool(reml), names=names, start=check_start(start, layout))
    if opt is None:
        opt = optimize_lmer(stats, layout, reml, start=start, names=names)
    tm = dict(timings or {})
    tm["optimize"] = time.perf_counter() - t0
    return mk_model(design, layout, stats, reml, opt, tm, name=name, cls=cls)


def refit_ml(model, cls=None):
    """The maximum-likelihood fit of a REML-fitted model (lme4's ``refitML``), from its theta."""
    if not model.reml:
        return model
    return fit_design(model.design, model.layout, model.stats, False, start=model.opt.theta, name=model.name,
                      cls=cls or type(model))


def refit_response(model, y, name=None, cls=None):
    """The same design fitted to the response ``y`` (started at the model's theta)."""
    t0 = time.perf_counter()
    y = np.ascontiguousarray(y, dtype=np.float64)
    design = dataclasses.replace(model.design, y=y)
    stats = compute_stats(design, model.layout)
    tm = {"stats": time.perf_counter() - t0}
    return fit_design(design, model.layout, stats, model.reml, start=model.layout.lifted(model.opt.theta),
                      name=name if name is not None else model.name, cls=cls or type(model), timings=tm)
