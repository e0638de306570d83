"""Simulation from glmer fits: ``simulate``, ``refit_many``, ``bootstrap`` and ``power``.

Responses are drawn as lme4's ``simulate.merMod`` does for GLMMs: ``u ~ N(0, I)`` (or the
conditional modes with ``use_u``), ``b_f = T_f u_f``, ``eta = X beta + Z b + offset``,
``mu = g^{-1}(eta)``, then ``y ~ Binomial(trials, mu) / trials`` or ``Poisson(mu)``. The refits
run the fit's own compiled search, one call per replicate on a CPU, mapped over a chunk of
responses on accelerators (:mod:`jaxhlm._src.optim.glmm_batch`: BFGS with PIRLS inside; the
standard errors from the Hessian by central differences of exact gradients).

Power (simr's ``powerSim`` for glmer fits; ``powerCurve`` over numbers of levels by
:func:`power_curve_glmm`): the share of replicates whose Wald z test of the
tested coefficient rejects at ``alpha``, with a Clopper-Pearson interval over the converged
refits (one coefficient at a time: a joint test would need the refits' covariances).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, DataError
from ..optim.glmm_batch import refit_batch
from .bootstrap import BootstrapResult
from .power import PowerResult, clopper_pearson
from .simulate import replicate_rngs, resolve_params
from ..base import dist
from ..base.threads import in_parallel, side_by_side

__all__ = ["simulate_glmm", "refit_many_glmm", "bootstrap_glmm", "power_glmm", "power_curve_glmm"]

CHUNK = 256  # replicates per call of refit_batch (accelerators: a fixed shape, one compiled program)


def _check_nsim(nsim) -> int:
    if isinstance(nsim, (bool, np.bool_)) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise ArgumentError(f"nsim must be a positive integer, got {nsim!r}")
    return int(nsim)


def simulate_glmm(model, nsim: int = 1, seed=None, *, fixef=None, theta=None, use_u: bool = False) -> np.ndarray:
    """Responses simulated from a glmer fit (lme4's ``simulate``): ``(nobs, nsim)``, proportions
    for binomial responses with trials (the response ``refit`` takes).

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
    nsim : int
    seed : int, Generator or SeedSequence, optional
        Replicate ``j`` uses the ``j``-th child stream of the seed (independent of ``nsim``).
    fixef, theta : optional
        Parameters to simulate from instead of the estimates (``fixef`` may name only some).
    use_u : bool
        Keep the conditional modes of the random effects (lme4's ``use.u = TRUE``).
    """
    nsim = _check_nsim(nsim)
    params = resolve_params(model, fixef, theta, None)
    d, des = model.glmm_data, model.design
    eta0 = np.asarray(d.offset) + des.X @ params["beta"]
    Ts = model.layout.T_arrays(params["theta"])
    Zs = []
    for f in range(len(des.factors)):
        Zs.append(np.concatenate([td.Z for td in des.terms if td.factor == f], axis=1))
    if use_u:
        if theta is not None:
            raise ArgumentError("use_u=True keeps the fitted random effects; theta cannot be changed with it")
        zb = sum(np.einsum("rk,rk->r", Z, b[fac.codes]) for Z, b, fac in zip(Zs, model.factor_modes, des.factors))
    wt = np.asarray(d.wt)
    rngs = list(next(replicate_rngs(seed, nsim)(nsim)))
    Y = np.empty((des.n, nsim))
    step = max(1, min(nsim, 2**22 // max(des.n, 1)))  # replicates per linkinv call (<= 32 MB each)
    for s0 in range(0, nsim, step):
        block = rngs[s0:s0 + step]
        E = np.empty((des.n, len(block)))  # linear predictors: the random effects first in every stream
        for j, rng in enumerate(block):
            eta = eta0.copy()
            if use_u:
                eta += zb
            else:
                for Z, T, fac in zip(Zs, Ts, des.factors):
                    b = rng.standard_normal((fac.nlevels, Z.shape[1])) @ np.asarray(T).T
                    eta += np.einsum("rk,rk->r", Z, b[fac.codes])
            E[:, j] = eta
        M = model.family.linkinv(E, xp=np)  # on the host: no program to compile
        for j, rng in enumerate(block):  # then the responses, each stream continuing where it stopped
            Y[:, s0 + j] = model.family.simulate(rng, M[:, j], wt, 1)[:, 0]
    return Y


def _as_matrix(model, Y) -> np.ndarray:
    Y = Y.to_numpy(dtype=np.float64) if isinstance(Y, pd.DataFrame) else np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.shape[0] != model.nobs:
        raise DataError(f"Y has {Y.shape[0]} rows; the model was fitted to {model.nobs} observations")
    if not np.all(np.isfinite(Y)):
        raise DataError("Y has missing or infinite values")
    return Y


def refit_many_glmm(model, Y, chunk_size: int | None = None) -> pd.DataFrame:
    """Refit the model to every column of ``Y`` (``(nobs, nrep)``) with the fit's own compiled
    search (:mod:`~jaxhlm._src.optim.glmm_batch`), chunks of replicates side by side.

    Returns
    -------
    pandas.DataFrame
        One row per replicate: ``objective``, ``theta.<name>``, ``sigma`` (1), ``beta.<name>``,
        ``se.<name>`` (from the exact Hessian), ``max_grad``, ``iterations``, ``converged``.
    """
    Y = _as_matrix(model, Y)
    nrep = Y.shape[1]
    per_worker = -(-nrep // side_by_side())  # at least one chunk per core that runs them
    size = int(chunk_size or min(CHUNK, max(8, 1 << (per_worker - 1).bit_length())))  # few shapes: few programs
    blocks = [Y[:, s:s + size] for s in range(0, nrep, size)]
    # chunks side by side on the cores (a program compiles once: a second call waits for it)
    parts = in_parallel(lambda b: refit_batch(model, b, width=size), blocks)
    res = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    cols = {"objective": res["objective"]}
    for i, nm in enumerate(model.theta.index):
        cols[f"theta.{nm}"] = res["theta"][:, i]
    cols["sigma"] = np.ones(nrep)
    for i, nm in enumerate(model.fixef.index):
        cols[f"beta.{nm}"] = res["beta"][:, i]
    for i, nm in enumerate(model.fixef.index):
        cols[f"se.{nm}"] = res["se"][:, i]
    cols["max_grad"] = res["max_grad"]
    cols["iterations"] = res["iterations"].astype(int)
    cols["converged"] = res["converged"].astype(bool) & np.all(np.isfinite(res["se"]), axis=1)
    return pd.DataFrame(cols)


def bootstrap_glmm(model, nsim: int = 1000, seed=None, *, use_u: bool = False) -> BootstrapResult:
    """Parametric bootstrap (lme4's ``bootMer``): simulate, refit, keep the parameters."""
    Y = simulate_glmm(model, nsim, seed, use_u=use_u)
    return BootstrapResult(model, refit_many_glmm(model, Y), seed=seed)


def power_glmm(model, test=None, nsim: int = 1000, alpha: float = 0.05, *, fixef=None, theta=None, seed=None,
               level: float = 0.95) -> PowerResult:
    """Power of Wald z tests by simulation (simr's ``powerSim`` for a glmer fit).

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
    test : str or list of str, optional
        Fixed effects tested (jointly when several); default: the only non-intercept one.
    nsim, alpha, level, seed
    fixef, theta : optional
        Effect sizes / variance parameters to simulate from (e.g. ``{"x": 0.5}``).
    """
    names = list(model.fixef.index)
    if test is None:
        cand = [nm for nm in names if nm != "(Intercept)"]
        if len(cand) != 1:
            raise ArgumentError(f"name the coefficient(s) to test with test=, one of {cand}")
        test = cand
    tests = [test] if isinstance(test, str) else list(test)
    for t in tests:
        if t not in names:
            raise ArgumentError(f"{t!r} is not a fixed effect of the model; they are {names}")
    if not 0 < alpha < 1:
        raise ArgumentError(f"alpha must lie between 0 and 1, got {alpha!r}")
    nsim = _check_nsim(nsim)
    params = resolve_params(model, fixef, theta, None)
    Y = simulate_glmm(model, nsim, seed, fixef=fixef, theta=theta)
    reps = refit_many_glmm(model, Y)
    B = reps[[f"beta.{t}" for t in tests]].to_numpy()
    S = reps[[f"se.{t}" for t in tests]].to_numpy()
    if len(tests) == 1:
        p = 2.0 * dist.norm_sf(np.abs(B[:, 0] / S[:, 0]))
    else:  # the Wald chi-square needs the covariances: from the diagonal only it would be wrong
        raise ArgumentError("power() of glmer fits tests one coefficient at a time (Wald z test)")
    conv = reps["converged"].to_numpy() & np.isfinite(p)
    p = np.where(conv, p, np.nan)
    k, n = int(np.sum(p[conv] < alpha)), int(conv.sum())
    lo, hi = clopper_pearson(k, n, level) if n else (np.nan, np.nan)
    eff = dict(zip(names, params["beta"]))
    return PowerResult(power=k / n if n else np.nan, lower=lo, upper=hi, successes=k, trials=n, nsim=nsim,
                       n_failed=nsim - n, test=tests, method="z", alpha=alpha, level=level,
                       effect={t: eff[t] for t in tests} | {k_: v for k_, v in eff.items() if k_ not in tests},
                       pvalues=p, replicates=reps)


def _on_design(model, design):
    """The fit's family, parameters and number of quadrature nodes on another design of the same
    formula (a resized one): a model object for :func:`simulate_glmm` and the refits only (its
    conditional modes are zero; nothing at the mode is meaningful for the new rows)."""
    from ..model.glmm_pipeline import mk_glmer_devfun

    layout, op, data = mk_glmer_devfun(design, model.family)
    u = tuple(np.zeros((layout.q[f], layout.nlev[f])) for f in range(layout.nfactors))
    return type(model)(design, layout, model.family, model.nagq, model.opt._replace(u=u), data, op, name=model.name)


def power_curve_glmm(model, along: str, sizes, test=None, nsim: int = 1000, alpha: float = 0.05, *, fixef=None,
                     theta=None, seed=None, level: float = 0.95) -> pd.DataFrame:
    """Power of the Wald z test as a function of the number of levels of a grouping factor
    (simr's ``extend`` + ``powerCurve`` for a glmer fit).

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
    along : str
        A grouping factor of the model.
    sizes : sequence of int
        Numbers of levels; fewer than the data has: a random subset, more: the data's levels
        and resampled copies (:func:`jaxhlm._src.sim.power.resize_design`; the rows keep their
        covariates, binomial trials and offsets).
    test, nsim, alpha, fixef, theta, seed, level
        As for :func:`power_glmm`.

    Returns
    -------
    pandas.DataFrame
        One row per size: ``size``, ``nobs``, ``power``, ``lower``, ``upper``, ``successes``,
        ``trials``, ``n_failed``; ``attrs["results"]`` holds each :class:`PowerResult`.
        Every size is a new shape: its refit program compiles once.
    """
    from .power import curve_designs, curve_frame

    sizes, designs, streams = curve_designs(model.design, along, sizes, seed)
    results = [power_glmm(_on_design(model, d), test, nsim, alpha, fixef=fixef, theta=theta, seed=child, level=level)
               for d, child in zip(designs, streams)]
    return curve_frame(sizes, designs, results, along, results[0].test)

