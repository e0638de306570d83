"""Many responses, one design: simulate from a fitted model and refit it to new responses.

Simulation (lme4's ``simulate.merMod``)
---------------------------------------
A new response is drawn from the fitted model with new random effects and new residuals:

    u_f ~ N(0, I),  b_f = sigma T_f u_f  (per level of factor f),  e ~ N(0, sigma^2 I),
    y* = X beta + sum_f Z_f b_f + e.

``use_u=True`` keeps the fitted conditional modes ``b`` instead (lme4's ``use.u = TRUE``).

Refitting with the design's statistics reused
---------------------------------------------
Only the columns of the sufficient statistics that involve ``y`` change with the response
(:mod:`jaxhlm._src.suffstats`): ``A_ZtXy[:, -1, :] = Z_A'y`` per level, ``XytXy[-1, :] =
[X'y, y'y]`` and ``B_ZtXy[:, -1] = Z_B'y``. All of them except ``y'y`` are linear in ``y``: one
sparse matrix ``G`` (rows: one per statistic, columns: one per observation) gives them for a
whole block of responses as ``G Y`` (a single sparse-dense product, not one pass per replicate).

The replicate fits run in one compiled program (:mod:`jaxhlm._src.batchfit`), each starting at
the fitted theta.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from ..base import config  # noqa: F401  (float64)
from ..stats.suffstats import factor_Z
from .replicates import refit_design_many, spec_of
from ..base.errors import ArgumentError, DataError

__all__ = ["simulate", "refit", "refit_many", "simulate_design", "resolve_params"]


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
def resolve_params(model, fixef=None, theta=None, sigma=None) -> dict:
    """The model's (beta, theta, sigma), with any of them replaced.

    Parameters
    ----------
    model : LinearMixedModel
    fixef : dict, pandas.Series or array-like, optional
        New fixed effects: a mapping from coefficient names to values replaces only those
        (simr's ``fixef(fit)["x"] <- 0.5``), an array replaces all ``p`` of them.
    theta : dict, Series or array-like, optional
        New relative covariance parameters (lme4 names / order).
    sigma : float, optional
        New residual standard deviation.
    """
    names = list(model.design.fixef_names)
    beta = model.beta.copy()
    th = model.theta.to_numpy().copy()
    sg = float(model.sigma)
    if fixef is not None:
        beta = _replace(beta, fixef, names, "fixef")
    if theta is not None:
        th = _replace(th, theta, list(model.theta.index), "theta")
    if sigma is not None:
        sg = float(sigma)
        if not (np.isfinite(sg) and sg > 0):
            raise ArgumentError(f"sigma must be a positive number, got {sigma!r}")
    return {"beta": beta, "theta": th, "sigma": sg}


def _replace(cur: np.ndarray, new, names: list, what: str) -> np.ndarray:
    cur = cur.copy()
    if isinstance(new, (dict, pd.Series)):
        for k, v in dict(new).items():
            if k not in names:
                raise ArgumentError(f"{what}: {k!r} is not a parameter of the model; known names: {names}")
            cur[names.index(k)] = float(v)
        return cur
    arr = np.asarray(new, dtype=np.float64).ravel()
    if arr.shape != cur.shape:
        raise ArgumentError(f"{what} must have {cur.size} values ({names}), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ArgumentError(f"{what} must be finite")
    return arr


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------
def replicate_rngs(seed, nsim: int):
    """One independent random stream per replicate (``SeedSequence.spawn``).

    Returns a callable ``chunks(size)`` yielding lists of generators; every call yields the same
    streams (so two models can be refitted to the same simulated responses).

    Replicate ``j`` always gets the same stream for a given seed, whatever ``nsim`` or the
    chunking: ``simulate(m, 10, seed)`` equals the first 10 columns of ``simulate(m, 1000, seed)``.
    """
    if isinstance(seed, np.random.Generator):
        ss = seed.bit_generator.seed_seq
    elif isinstance(seed, np.random.SeedSequence):
        ss = seed
    else:
        try:
            ss = np.random.SeedSequence(seed)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"seed must be None, a non-negative integer or a numpy Generator: {exc}") from None

    children = ss.spawn(nsim)

    def chunks(size):
        for s in range(0, nsim, size):
            yield [np.random.default_rng(c) for c in children[s:s + size]]

    return chunks


def simulate_design(design, layout, params: dict, rngs, b_fixed=None) -> np.ndarray:
    """Responses drawn from the model on ``design``, one per generator in ``rngs``; (n, len(rngs)).

    ``y = X beta + offset + Z b + e`` with ``b_f = sigma T_f u_f``, ``e_i ~ N(0, sigma^2 / w_i)``
    (prior weights ``w``). ``b_fixed`` (list of (nlevels_f, q_f) arrays) replaces the random draws of ``b``.
    """
    beta, theta, sigma = params["beta"], params["theta"], params["sigma"]
    n = design.n
    mu = design.X @ beta
    off = getattr(design, "offset", None)
    if off is not None:
        mu = mu + off
    w = getattr(design, "weights", None)
    esd = sigma if w is None else sigma / np.sqrt(np.asarray(w, dtype=np.float64))
    Ts = layout.T_arrays(theta)
    Zs = [factor_Z(design, f) for f in range(len(design.factors))]
    ones = [np.all(Z == 1.0, axis=0) for Z in Zs]
    if b_fixed is not None:
        for f, fac in enumerate(design.factors):
            mu = mu + np.einsum("rk,rk->r", Zs[f], b_fixed[f][fac.codes])
    Y = np.empty((n, len(rngs)), order="F")
    for j, rng in enumerate(rngs):
        y = rng.standard_normal(n)
        y *= esd
        y += mu
        if b_fixed is None:
            for f, fac in enumerate(design.factors):
                qf = Zs[f].shape[1]
                b = rng.standard_normal((fac.nlevels, qf)) @ (sigma * Ts[f].T)  # rows: sigma T u_l
                for k in range(qf):
                    bk = b[fac.codes, k]
                    y += bk if ones[f][k] else Zs[f][:, k] * bk
        Y[:, j] = y
    return Y


def simulate(model, nsim: int = 1, seed=None, *, fixef=None, theta=None, sigma=None, use_u: bool = False) -> np.ndarray:
    """Responses simulated from the fitted model (lme4's ``simulate``).

    Parameters
    ----------
    model : LinearMixedModel
    nsim : int
        Number of responses.
    seed : int, numpy.random.Generator or SeedSequence, optional
        Replicate ``j`` is drawn from the ``j``-th child of ``SeedSequence(seed)``, so the first
        columns do not depend on ``nsim``.
    fixef, theta, sigma : optional
        Parameter values to simulate from instead of the estimates (lme4's ``newparams``;
        ``fixef`` may name only some coefficients, e.g. ``{"family_inc": 0.5}``).
    use_u : bool
        Keep the fitted random effects (conditional modes) and draw only new residuals.

    Returns
    -------
    numpy.ndarray of shape (nobs, nsim)
        Column ``s`` is ``X beta + Z b_s + e_s`` with ``b_s ~ N(0, sigma^2 Lambda Lambda')`` and
        ``e_s ~ N(0, sigma^2 I)``, in the row order of ``model.y``.
    """
    nsim = _check_nsim(nsim)
    params = resolve_params(model, fixef, theta, sigma)
    b_fixed = None
    if use_u:
        if theta is not None or sigma is not None:
            raise ArgumentError("use_u=True keeps the fitted random effects; theta/sigma cannot be changed with it")
        b_fixed = model.factor_modes
    rngs = next(replicate_rngs(seed, nsim)(nsim))
    return simulate_design(model.design, model.layout, params, rngs, b_fixed=b_fixed)


def _check_nsim(nsim) -> int:
    if isinstance(nsim, (bool, np.bool_)) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise ArgumentError(f"nsim must be a positive integer, got {nsim!r}")
    return int(nsim)


def _as_response_matrix(model, Y) -> np.ndarray:
    n = model.nobs
    if isinstance(Y, pd.DataFrame):
        if len(Y) == n and Y.index.equals(model.design.index):
            Y = Y.to_numpy(dtype=np.float64)
        elif len(Y) == n:
            Y = Y.to_numpy(dtype=np.float64)
        else:
            raise DataError(f"Y has {len(Y)} rows; the model was fitted to {n} observations")
    elif isinstance(Y, pd.Series):
        Y = Y.to_numpy(dtype=np.float64)[:, None]
    else:
        try:
            Y = np.asarray(Y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"Y must be a numeric array of shape (nobs, B): {exc}") from None
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise DataError(f"Y must have shape (nobs, B) = ({n}, B), got {Y.shape}")
    if Y.shape[1] == 0:
        raise DataError("Y has no columns")
    bad = ~np.isfinite(Y)
    if bad.any():
        j = int(np.nonzero(bad.any(axis=0))[0][0])
        raise DataError(f"column {j} of Y has {int(bad[:, j].sum())} missing or infinite values")
    return Y


def refit_many(model, Y, *, satterthwaite: bool = True, batch_size=None, chunk_size=None, progress=None) -> pd.DataFrame:
    """Refit the model to many responses with the same design, all in one compiled call.

    Parameters
    ----------
    model : LinearMixedModel
    Y : array-like of shape (nobs, B)
        One response per column, rows in the order of ``model.y`` (e.g. from :func:`simulate`).
    satterthwaite : bool
        Also compute Satterthwaite df and p-values per replicate (exact second derivatives at
        each replicate's optimum, as for a single fit).
    batch_size : int, optional
        Replicates run side by side under ``vmap`` inside the compiled loop. 1 (the default on a
        CPU) fits one at a time with ``lax.map``; on an accelerator the default is 64.
    chunk_size : int, optional
        Replicates per compiled call (bounds memory; default: up to 256, fewer for large n).
    progress : bool or str, optional
        A progress bar labelled "refit" (a string: that label), opened before anything is
        compiled (it shows "compiling" until the first refits are done). Default: shown for 4
        or more chunks on a terminal or in Jupyter.

    Returns
    -------
    pandas.DataFrame, one row per replicate (index ``replicate``)
        ``objective`` (the minimised criterion), ``deviance`` (ML deviance; at the REML estimates
        for REML fits), ``sigma``, ``theta.<name>`` (lme4 names, rectified), ``beta.<name>``,
        ``se.<name>``, ``df.<name>`` (Satterthwaite), ``t.<name>``, ``p.<name>``, ``converged``,
        ``singular``, ``iterations``, ``max_abs_grad``. Failed replicates are kept and flagged
        (``converged`` False), never dropped.

    Notes
    -----
    Only the y-columns of the sufficient statistics are recomputed, for all replicates at once
    by a sparse matrix product; each replicate starts at the fitted theta. The estimates equal
    those of one-at-a-time fits (:func:`refit`) to optimiser tolerance.
    """
    Y = _as_response_matrix(model, Y)
    B = Y.shape[1]

    def chunks(size):
        for s in range(0, B, size):
            yield Y[:, s:s + size]

    return refit_design_many(spec_of(model), chunks, B, satterthwaite=satterthwaite, batch_size=batch_size,
                             chunk_size=chunk_size, progress=progress, label="refit")


def refit(model, y, *, name=None):
    """Refit the model to a new response with the same design (lme4's ``refit``).

    Parameters
    ----------
    model : LinearMixedModel
    y : array-like of length nobs (rows in the order of ``model.y``)
    name : str, optional
        Label of the new fit (default: the model's).

    Returns
    -------
    FitState
        The new fit (the facade wraps it as a LinearMixedModel), started at the model's theta.
    """
    from ..model.pipeline import refit_response

    Y = _as_response_matrix(model, y)
    if Y.shape[1] != 1:
        raise DataError(f"refit takes one response; got {Y.shape[1]} columns (use refit_many)")
    return refit_response(model, Y[:, 0], name=name)
