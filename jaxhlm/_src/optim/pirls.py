"""Penalised iteratively reweighted least squares (PIRLS) and the GLMM objectives, traceable.

Model (Bates et al. 2015, JSS 67(1), sect. 4 of the lme4 GLMM vignette): ``eta = X beta + Z
Lambda u + offset``, ``mu = g^{-1}(eta)``, ``u ~ N(0, I)``, ``y_i | u`` from the family with
prior weights ``wt``. At given ``(theta, beta)`` the conditional mode of ``u`` minimises the
penalised deviance

    PD(u) = sum_i d_i(eta_i) + ||u||^2           (d_i: the family's deviance residuals)

which is convex in ``u`` for the supported families and links (log-concave likelihoods).
:func:`pirls` finds it by Newton steps with step halving: each step is the penalised weighted
least-squares problem of :func:`jaxhlm._src.engine.pls.solve` on the statistics of
:func:`jaxhlm._src.stats.weighted.weighted_stats_wz`, with the observed weights
``W_obs = 1/2 d^2 d_i / deta^2`` and ``W_obs z = W_obs (Z Lambda u) + r`` (``r = -1/2 dd/deta``),
so that the solution is ``u - H^{-1} grad PD`` (the exact Newton step; for canonical links it
is the Fisher-scoring/IRLS step of lme4). With ``joint`` the fixed effects are updated too
(lme4's ``nAGQ = 0`` stage; the layout with ``p`` fixed effects), otherwise only ``u`` (the
layout with ``p = 0``). It stops when a full step lowers PD by less than
:data:`PIRLS_TOL` ``(1 + PD)``: converged far beyond lme4's default ``tolPwrss = 1e-7`` (see the
reference README's ``tight_pirls``).

Objectives (``-2 log L``, lme4's definitions):

* Laplace (``nAGQ = 1``): ``log|L|^2 + ||u||^2 + aic(mu)``, with ``L L' = Lambda'Z'W Z Lambda + I``
  at the mode and ``W`` the Fisher (IRLS) weights ``wt mu_eta^2 / V`` as lme4 (for probit and
  cloglog these differ from the observed information glmmTMB uses), ``aic`` the family's
  ``-2 log L`` (saturated-model constant included);
* adaptive Gauss-Hermite quadrature (``nAGQ > 1``, one scalar random effect):
  ``sum_j [log L_jj^2 + PD_j(u_j) - 2 log sum_k w_k exp(-(PD_j(u_j + x_k / L_jj) - PD_j(u_j) - x_k^2) / 2)]``
  with ``(x_k, w_k)`` the Gauss-Hermite rule of the standard normal; on the saturated scale (no
  constant), as lme4.

Exact derivatives: the mode ``u*(theta, beta)`` depends on the parameters. The objective is
evaluated at ``u1 = N(u*)``, one Newton step from the converged mode (held constant): ``u1 = u*``
to rounding and, because the Newton map has zero derivative in ``u`` at its fixed point,
``du1/d(theta, beta) = du*/d(theta, beta)`` (the implicit-function derivative). ``log|L|^2`` is then
differentiated with its weights at the mode.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine import pls
from ..stats.weighted import linear_predictor_re, weighted_stats_wz

__all__ = ["GlmmData", "pirls", "newton_step", "objective", "penalized_deviance", "linear_predictor",
           "gauss_hermite", "PIRLS_TOL", "u_layout", "laplace_value"]

PIRLS_TOL = 1e-13  # a full step lowering PD by less than this times (1 + PD) ends PIRLS
PIRLS_MAXIT = 100
MAX_HALVINGS = 30


class GlmmData(NamedTuple):
    """Per-row response data of a GLMM (a pytree): ``y`` (the response; proportions for the
    binomial), ``wt`` (prior weights; binomial trials included), ``n`` (binomial trials, for the
    ``aic``), ``offset``."""

    y: object
    wt: object
    n: object
    offset: object


def u_layout(layout):
    """The layout of the problem in ``u`` alone (no fixed effects)."""
    return dataclasses.replace(layout, p=0)


def gauss_hermite(k: int) -> tuple:
    """Nodes and weights of the ``k``-point Gauss-Hermite rule for the standard normal (weights sum to 1)."""
    x, w = np.polynomial.hermite_e.hermegauss(int(k))
    return x, w / np.sqrt(2.0 * np.pi)


def _b(theta, u, layout):
    return tuple(T @ uf for T, uf in zip(layout.T_arrays(theta, jnp), u))


def linear_predictor(theta, beta, u, op, data, layout):
    """``eta = X beta + Z Lambda u + offset``."""
    return data.offset + op.X @ beta + linear_predictor_re(op, _b(theta, u, layout))


def _usq(u):
    return sum(jnp.sum(uf * uf) for uf in u)


def penalized_deviance(eta, u, data, family):
    """``sum d_i(eta) + ||u||^2``."""
    mu = family.linkinv(eta)
    return jnp.sum(family.dev_resids(data.y, mu, data.wt)) + _usq(u)


def newton_step(theta, beta, u, op, data, layout, family, joint: bool, eta=None, fisher=False):
    """One Newton step on PD: the new ``(beta, u)`` (``beta`` unchanged unless ``joint``).

    ``eta`` (optional) replaces the linear predictor the weights are taken at (the first step
    from the family's starting values); ``fisher`` (a bool, may be traced) uses the Fisher
    weights instead of the observed ones (the two agree for canonical links).
    """
    if eta is None:
        eta = linear_predictor(theta, beta, u, op, data, layout)
    mu, r, W, Wo = family.working(eta, data.y, data.wt)
    Wn = W if fisher is True else (Wo if fisher is False else jnp.where(fisher, W, Wo))
    known = data.offset if joint else data.offset + op.X @ beta  # the part of eta not solved for
    lin = eta - known
    pos = Wn > 0
    wz = jnp.where(pos, Wn * lin + r, 0.0)
    # z'Wz only sets the last pivot of L_XX (unused here): kept safely positive
    zwz = jnp.sum(jnp.where(pos, wz * wz / jnp.where(pos, Wn, 1.0), 0.0)) + 1.0
    lay = layout if joint else u_layout(layout)
    sol = pls.solve(theta, weighted_stats_wz(op, Wn, wz, zwz, lay, fixed=joint), lay)
    return (sol.beta if joint else beta), tuple(sol.u)


def pirls(theta, beta, u, op, data, layout, family, joint: bool, eta0=None, first=False, maxit=PIRLS_MAXIT):
    """The conditional mode by Newton steps with step halving (not differentiated: a while loop).

    Parameters
    ----------
    theta, beta, u
        Parameters and the start (``u``: per factor ``(q_f, L_f)``).
    joint : bool
        Update ``beta`` too (lme4's ``nAGQ = 0`` stage).
    eta0, first : array, bool (may be traced)
        When ``first``, the first step takes the Fisher weights at the linear predictor ``eta0``
        (the family's ``mustart``, as ``glmer`` starts) instead of the current one, and is taken
        in full.

    Returns
    -------
    (beta, u, pd, iterations, converged)
    """
    theta, beta, u = jax.lax.stop_gradient((theta, beta, u))

    def pd_of(b, uu):
        return penalized_deviance(linear_predictor(theta, b, uu, op, data, layout), uu, data, family)

    def cond(s):
        return (~s["done"]) & (s["it"] < maxit)

    def body(s):
        init = (s["it"] == 0) & first
        eta = linear_predictor(theta, s["beta"], s["u"], op, data, layout)
        if eta0 is not None:
            eta = jnp.where(init, eta0, eta)
        nb, nu = newton_step(theta, s["beta"], s["u"], op, data, layout, family, joint, eta=eta,
                             fisher=init if eta0 is not None else False)
        db = nb - s["beta"]
        du = tuple(a - b for a, b in zip(nu, s["u"]))
        tol = PIRLS_TOL * (1.0 + jnp.abs(s["pd"]))  # changes below this are rounding

        def h_cond(h):
            return (h["k"] < MAX_HALVINGS) & ~(init | (h["pd"] <= s["pd"] + jnp.where(h["k"] == 0, tol, 0.0)))

        def h_body(h):
            t = 0.5 ** (h["k"] + 1)
            b = s["beta"] + t * db
            uu = tuple(a + t * d for a, d in zip(s["u"], du))
            return {"k": h["k"] + 1, "beta": b, "u": uu, "pd": pd_of(b, uu)}

        h0 = {"k": jnp.asarray(0), "beta": nb, "u": nu, "pd": pd_of(nb, nu)}
        h = jax.lax.while_loop(h_cond, h_body, h0)
        ok = jnp.isfinite(h["pd"]) & ((h["pd"] <= s["pd"] + jnp.where(h["k"] == 0, tol, 0.0)) | init)
        small = (s["pd"] - h["pd"]) <= tol
        conv = ok & small & (h["k"] == 0) & ~init
        stuck = ~ok | (ok & small & (h["k"] > 0))  # no decrease left along the Newton direction
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        return {"beta": keep(h["beta"], s["beta"]), "u": keep(h["u"], s["u"]), "pd": jnp.where(ok, h["pd"], s["pd"]),
                "it": s["it"] + 1, "done": conv | stuck, "conv": conv}

    s0 = {"beta": beta, "u": u, "pd": pd_of(beta, u), "it": jnp.asarray(0), "done": jnp.asarray(False),
          "conv": jnp.asarray(False)}
    s = jax.lax.while_loop(cond, body, s0)
    return s["beta"], s["u"], s["pd"], s["it"], s["conv"]


def _logdet_fisher(theta, eta, op, data, layout, family):
    """``log|Lambda'Z'W Z Lambda + I|`` with the Fisher weights at ``eta``, and those weights."""
    _, _, W, _ = family.working(eta, data.y, data.wt)
    lay = u_layout(layout)
    zero = jnp.zeros_like(W)
    st = weighted_stats_wz(op, W, zero, jnp.asarray(1.0, W.dtype), lay, fixed=False)
    return pls.factorize(theta, st, lay).ldL2, W


def laplace_value(theta, beta, u, op, data, layout, family):
    """The Laplace objective ``log|L|^2 + ||u||^2 + aic(mu)`` at given ``(theta, beta, u)``."""
    eta = linear_predictor(theta, beta, u, op, data, layout)
    ld, _ = _logdet_fisher(theta, eta, op, data, layout, family)
    mu = family.linkinv(eta)
    return ld + _usq(u) + family.minus2loglik(data.y, data.n, mu, data.wt)


def _agq(theta, beta, u, op, data, layout, family, nodes, weights):
    """Adaptive Gauss-Hermite quadrature for one scalar random effect (saturated scale)."""
    th = theta[0]
    L = layout.nlev[0]
    uf = u[0][0]
    z = op.Z[0][:, 0]
    codes = op.codes[0]
    fixed = data.offset + op.X @ beta
    eta = fixed + z * th * uf[codes]
    _, _, W, _ = family.working(eta, data.y, data.wt)
    L2 = 1.0 + th * th * jax.ops.segment_sum(W * z * z, codes, num_segments=L)
    s = 1.0 / jnp.sqrt(L2)

    def pd_groups(uu):
        dev = family.dev_resids(data.y, family.linkinv(fixed + z * th * uu[codes]), data.wt)
        return jax.ops.segment_sum(dev, codes, num_segments=L) + uu * uu

    pd0 = pd_groups(uf)
    xs = jnp.asarray(nodes, dtype=uf.dtype)
    pds = jax.vmap(lambda xk: pd_groups(uf + s * xk))(xs)  # (K, L): one traced copy for all nodes
    terms = jnp.log(jnp.asarray(weights, dtype=uf.dtype))[:, None] - 0.5 * (pds - pd0[None, :] - (xs * xs)[:, None])
    lse = jax.scipy.special.logsumexp(terms, axis=0)
    return jnp.sum(jnp.log(L2) + pd0 - 2.0 * lse)


def objective(theta, beta, u_star, op, data, layout, family, nagq: int = 1, joint: bool = False):
    """The objective at ``(theta, beta)`` with exact derivatives, given the converged mode.

    ``u_star`` (and, with ``joint``, ``beta``) come from :func:`pirls` at these parameters; they
    are held constant and one Newton step is taken from them (see the module docstring: exact
    gradients; Hessians are central differences of them). With ``joint`` (lme4's first stage)
    ``beta`` is the joint mode's and the objective is a function of ``theta`` alone.

    Returns
    -------
    (value, beta_used, u_used)
    """
    b, u = jax.lax.stop_gradient(beta) if joint else beta, jax.lax.stop_gradient(u_star)
    b, u = newton_step(theta, b, u, op, data, layout, family, joint)
    if nagq > 1:
        x, w = gauss_hermite(nagq)
        val = _agq(theta, b, u, op, data, layout, family, x, w)
    else:
        val = laplace_value(theta, b, u, op, data, layout, family)
    return val, b, u
