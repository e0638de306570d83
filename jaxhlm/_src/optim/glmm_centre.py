"""glmer with fixed-effect columns of a large mean: the search runs on the centred columns.

A GLMM's linear predictor is ``eta = X beta + Z b``. With an intercept in ``X``, centring a
column (``x - c``) is a reparametrisation, not another model: ``X_c = X A`` with ``A`` the
identity but for ``A[i0, j] = -c_j`` (``i0`` the intercept's column), ``beta = A beta_c``, the
same ``eta`` and the same Laplace (or quadrature) objective at corresponding points. When
``|mean(x)|`` is large against its spread (a year such as 2005, ``x + 1e4``), the intercept's
and ``x``'s columns are nearly collinear, the Hessian in ``(theta, beta)`` has a condition
number of ``c^2`` and more, and the search in the user's columns stops early: measured on a
2000-row binary design, ``x + 1e4`` in ``y ~ x + (1 | g)`` ended with max|grad| 2.7e3, the slope
0.3615 instead of 0.3681 and four warnings. :func:`~jaxhlm._src.optim.glmm_fit.optimize` searches in ``beta_c`` (the
rule of :func:`~jaxhlm._src.stats.xform.large_mean`, as lmer's preconditioning) and maps the
optimum back exactly: with ``J = diag(I, A)`` (``x = J x_c``), the gradient ``J^-T g_c``, the
Hessian ``J^-T H_c J^-1``; ``R_X`` and the Fisher-weighted statistics through ``A^-1``; ``u``,
``eta``, the weights and the objective are the same. Batched refits (power, bootstrap) run
centred too (:func:`centred_start`), their standard errors from ``A V_c A'``.

Random-slope columns with a large mean (``(1 + x | g)``) are centred as lmer's
(:mod:`~jaxhlm._src.optim.recentre`: ``Z_c = Z M``, ``b = M b_c``): :func:`from_search` maps
theta back exactly (per term QR), keeps the search's spherical modes ``u_c`` with the
:class:`~jaxhlm._src.optim.recentre.Search` (``b = M T_c u_c``; condVar ``M V_c M'``; the
singularity rule on the search's theta), the Hessian for the fixed effects' covariance in the
searched theta (the ``beta`` block of its inverse is the same in every parametrisation of
theta) and the user-facing Hessian through the Jacobian of the theta map (central differences).
"""
from __future__ import annotations

import numpy as np

from ..stats.suffstats import transform_xy
from ..stats.xform import intercept_column, large_mean
from .recentre import Search, centred_design, factor_maps, theta_from_centred

__all__ = ["fixed_centring", "centred_op", "to_user", "centred_start", "from_search", "search_op",
           "thetas_from_search"]


def fixed_centring(X) -> np.ndarray | None:
    """``A`` with ``X A`` the columns of ``X`` with a large mean centred, or None (none such, or
    no intercept to absorb the shift)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] < 2:
        return None
    i0 = intercept_column(X)
    if i0 is None:
        return None
    A = np.eye(X.shape[1])
    for j in range(X.shape[1]):
        if j != i0:
            c = large_mean(np.ascontiguousarray(X[:, j], dtype=np.float64))
            if c is not None:
                A[i0, j] = -c
    return None if np.array_equal(A, np.eye(X.shape[1])) else A


def centred_op(op, A):
    """The row arrays with ``X A`` in place of ``X``."""
    import jax.numpy as jnp

    return op._replace(X=jnp.asarray(np.asarray(op.X) @ A))


def _J(A, m: int) -> np.ndarray:
    p = A.shape[0]
    J = np.eye(m + p)
    J[m:, m:] = A
    return J


def to_user(opt, A, m: int):
    """A :class:`~jaxhlm._src.optim.glmm_fit.GlmmOpt` found with ``X A`` in the user's columns:
    ``beta = A beta_c``, ``g = J^-T g_c``, ``H = J^-T H_c J^-1``, ``L_X -> A^-T L_X`` (so that
    ``(L_X L_X')^-1 = A (L_Xc L_Xc')^-1 A'``; no longer triangular) and the statistics of
    ``X = X_c A^-1``."""
    Ji = np.linalg.inv(_J(A, m))
    p = A.shape[0]
    Ai = np.linalg.inv(A)
    M = np.eye(p + 1)
    M[:p, :p] = Ai
    Lxx = np.asarray(opt.Lxx).copy()
    Lxx[:p, :] = Ai.T @ Lxx[:p, :]
    return opt._replace(beta=A @ np.asarray(opt.beta), grad=Ji.T @ np.asarray(opt.grad),
                        hessian=Ji.T @ np.asarray(opt.hessian) @ Ji, Lxx=Lxx,
                        stats=transform_xy(opt.stats, M, xp=np))


def search_op(model):
    """The row arrays with the random-effect columns the fit searched centred (the model's own
    when none)."""
    search = getattr(model.opt, "search", None)
    if search is None:
        return model.op
    from ..stats.weighted import build_weighted_op

    return build_weighted_op(centred_design(model.design, list(search.shifts)), model.layout)


def centred_start(model):
    """``(op, x0, H, A)`` for refits of ``model`` as its fit searched: centred random-effect
    columns (:func:`search_op`, theta the search's) and ``X A``; the start ``(theta, A^-1 beta)``,
    the Hessian there ``J' H J``; ``A`` the identity when no fixed-effect column is centred.
    Built once per model (``model.cache``): every chunk of a batched refit reads it."""
    out = model.cache.get("centred_start")
    if out is None:
        out = model.cache["centred_start"] = _centred_start(model)
    return out


def _centred_start(model):
    m = model.layout.ntheta
    search = getattr(model.opt, "search", None)
    theta = model.opt.theta if search is None else search.theta
    H = np.asarray(model.opt.hessian if search is None else model.opt.hessian_search)
    x0 = np.concatenate([np.asarray(theta), np.asarray(model.opt.beta)])
    op = search_op(model)
    A = fixed_centring(op.X)
    if A is None:
        return op, x0, H, np.eye(model.p)
    J = _J(A, m)
    return centred_op(op, A), np.linalg.solve(J, x0), J.T @ H @ J, A


def thetas_from_search(model, thetas) -> np.ndarray:
    """Rows of searched theta (refits) in the user's columns."""
    search = getattr(model.opt, "search", None)
    if search is None:
        return thetas
    sh = list(search.shifts)
    return np.array([theta_from_centred(t, model.layout, model.design, sh) for t in np.asarray(thetas)])


def from_search(opt_c, layout, design, shifts: list, step: float = 1e-6):
    """The optimum of the design with ``shifts`` centred (:func:`~jaxhlm._src.optim.recentre.
    centred_design`) in the user's columns; see the module docstring."""
    m = layout.ntheta
    theta_c = np.asarray(opt_c.theta, dtype=np.float64)
    theta = theta_from_centred(theta_c, layout, design, shifts)
    Jt = np.empty((m, m))  # d theta / d theta_c
    for k in range(m):
        h = step * max(1.0, abs(theta_c[k]))
        e = np.zeros(m)
        e[k] = h
        Jt[:, k] = (theta_from_centred(theta_c + e, layout, design, shifts)
                    - theta_from_centred(theta_c - e, layout, design, shifts)) / (2 * h)
    J = np.eye(m + len(opt_c.beta))
    J[:m, :m] = Jt
    H_s, g_s = np.asarray(opt_c.hessian), np.asarray(opt_c.grad)
    try:
        Ji = np.linalg.inv(J)
        H, g = Ji.T @ H_s @ Ji, Ji.T @ g_s
    except np.linalg.LinAlgError:  # a singular map (a zero variance): the Hessian in theta is undefined
        H, g = np.full_like(H_s, np.nan), np.full_like(g_s, np.nan)
    search = Search(theta_c, opt_c.stats, factor_maps(layout, design, shifts), tuple(shifts))
    return opt_c._replace(theta=theta, grad=g, hessian=H, search=search, hessian_search=H_s)
