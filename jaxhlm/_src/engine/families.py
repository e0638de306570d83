"""GLM families of generalized linear mixed models: the binomial and the Poisson, as R's family objects.

A :class:`Family` is hashable (the static argument of compiled programs) and its functions take
and return arrays (JAX arrays inside compiled programs; NumPy arrays give JAX arrays back).
Every function follows R's ``binomial(link)`` / ``poisson()`` objects, including where R clips:

=========  =======================================  ==========================================
link       ``linkinv(eta)``                         ``mu.eta(eta)``
=========  =======================================  ==========================================
logit      ``e/(1+e)``, ``e = exp(eta)``; eta beyond  ``e/(1+e)^2``; ``DBL_EPSILON`` beyond +-30
           +-30 gives ``eps/(1+eps)``,               (R's C code)
           ``1/(1+eps)``
probit     ``pnorm(eta)``, eta clipped to            ``max(dnorm(eta), eps)``
           ``+-qnorm(eps)``
cloglog    ``-expm1(-exp(eta))`` clipped to           ``max(exp(eta) exp(-exp(eta)), eps)``,
           ``[eps, 1 - eps]``                        eta capped at 700
log        ``max(exp(eta), eps)``                    ``max(exp(eta), eps)``
=========  =======================================  ==========================================

``variance``: ``mu (1 - mu)`` (binomial), ``mu`` (Poisson). Deviance residuals (``dev.resids``)
with prior weights ``wt``: binomial ``2 wt [y log(y/mu) + (1-y) log((1-y)/(1-mu))]``, Poisson
``2 wt [y log(y/mu) - (y - mu)]`` (``0 log 0 = 0``). :meth:`Family.minus2loglik` is R's
``family$aic(y, n, mu, wt)``: ``-2 sum (wt/m) log dbinom(round(m y), round(m), mu)`` with ``m``
the trials when some exceed 1, else ``wt`` (binomial); ``-2 sum wt log dpois(y, mu)`` (Poisson).
It differs from the deviance by a constant, ``-2 log L`` of the saturated model (``mu = y``):
:meth:`Family.minus2loglik_saturated`.

For PIRLS, :meth:`Family.working` gives per row the score ``r = wt (y - mu) mu.eta / V(mu)``
(``-1/2 dD/deta``), the Fisher (IRLS) weight ``W = wt mu.eta^2 / V(mu)`` and the observed
weight ``W_obs = 1/2 d^2 D / deta^2 = W - wt (y - mu) d/deta (mu.eta / V)``; for canonical
links (logit, log) the two weights are equal. For the binomial with a log-concave link (logit,
probit, cloglog) and the Poisson with log link, ``D`` is convex in eta, so ``W_obs >= 0``.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from ..base import config  # noqa: F401  (float64)
from ..base.errors import ArgumentError, DataError

__all__ = ["Family", "Binomial", "Poisson", "get_family", "EPS"]

EPS = float(np.finfo(np.float64).eps)
_PROBIT_THRESH = 8.125890664701906  # -qnorm(.Machine$double.eps)
_LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}
_CANONICAL = {"binomial": "logit", "poisson": "log"}


@dataclasses.dataclass(frozen=True)
class Family:
    """A GLM family and link (hashable; see the module docstring for the formulas).

    Parameters
    ----------
    family : {"binomial", "poisson"}
    link : str
        ``"logit"``, ``"probit"``, ``"cloglog"`` (binomial) or ``"log"`` (Poisson).
    """

    family: str
    link: str

    def __post_init__(self):
        if self.family not in _LINKS:
            raise ArgumentError(f"family must be 'binomial' or 'poisson', got {self.family!r}")
        if self.link not in _LINKS[self.family]:
            raise ArgumentError(f"the {self.family} family has links {_LINKS[self.family]}, got {self.link!r}")

    @property
    def canonical(self) -> bool:
        """True for the canonical link (Fisher and observed weights coincide)."""
        return self.link == _CANONICAL[self.family]

    def __repr__(self) -> str:
        return f"{self.family.capitalize()}(link={self.link!r})"

    # ------------------------------------------------------------------ link
    def linkfun(self, mu):
        """``eta = g(mu)``."""
        mu = jnp.asarray(mu)
        if self.link == "logit":
            return jnp.log(mu / (1.0 - mu))
        if self.link == "probit":
            return jsp.ndtri(mu)
        if self.link == "cloglog":
            return jnp.log(-jnp.log1p(-mu))
        return jnp.log(mu)

    def linkinv(self, eta, xp=jnp):
        """``mu = g^{-1}(eta)``, clipped as R clips (``xp=numpy``: on the host, NumPy in and out)."""
        eta = xp.asarray(eta)
        if self.link == "logit":
            e = xp.exp(xp.clip(eta, -30.0, 30.0))
            e = xp.where(eta < -30.0, EPS, xp.where(eta > 30.0, 1.0 / EPS, e))
            return e / (1.0 + e)
        if self.link == "probit":
            if xp is np:
                from scipy.special import ndtr

                return ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))
            return jsp.ndtr(jnp.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))
        if self.link == "cloglog":
            return xp.clip(-xp.expm1(-xp.exp(xp.minimum(eta, 700.0))), EPS, 1.0 - EPS)
        return xp.maximum(xp.exp(xp.minimum(eta, 700.0)), EPS)

    def mu_eta(self, eta):
        """``d mu / d eta``, floored as R floors it."""
        eta = jnp.asarray(eta)
        if self.link == "logit":
            e = jnp.exp(jnp.clip(eta, -30.0, 30.0))
            return jnp.where(jnp.abs(eta) > 30.0, EPS, e / (1.0 + e) ** 2)
        if self.link == "probit":
            return jnp.maximum(jnp.exp(-0.5 * eta**2) / np.sqrt(2.0 * np.pi), EPS)
        if self.link == "cloglog":
            e = jnp.exp(jnp.minimum(eta, 700.0))
            return jnp.maximum(e * jnp.exp(-e), EPS)
        return jnp.maximum(jnp.exp(jnp.minimum(eta, 700.0)), EPS)

    def variance(self, mu):
        """``V(mu)``."""
        mu = jnp.asarray(mu)
        return mu * (1.0 - mu) if self.family == "binomial" else mu

    # ------------------------------------------------------------------ likelihood
    def dev_resids(self, y, mu, wt):
        """Per-row deviance contributions (R's ``dev.resids``; sum = the deviance)."""
        y, mu, wt = jnp.asarray(y), jnp.asarray(mu), jnp.asarray(wt)
        if self.family == "binomial":
            a = jsp.xlogy(y, y) - jsp.xlogy(y, mu)
            b = jsp.xlogy(1.0 - y, 1.0 - y) - jsp.xlogy(1.0 - y, 1.0 - mu)
            return 2.0 * wt * (a + b)
        return 2.0 * wt * (jsp.xlogy(y, y) - jsp.xlogy(y, mu) - (y - mu))

    def _m(self, n, wt):
        n, wt = jnp.asarray(n), jnp.asarray(wt)
        return jnp.where(jnp.any(n > 1), n, wt)

    def minus2loglik(self, y, n, mu, wt):
        """R's ``family$aic(y, n, mu, wt)``: ``-2 log L`` (a scalar); ``n``: trials (binomial)."""
        y, mu, wt = jnp.asarray(y), jnp.asarray(mu), jnp.asarray(wt)
        if self.family == "binomial":
            m = self._m(n, wt)
            mr = jnp.round(m)
            k = jnp.round(m * y)
            logc = jsp.gammaln(mr + 1.0) - jsp.gammaln(k + 1.0) - jsp.gammaln(mr - k + 1.0)
            ll = logc + jsp.xlogy(k, mu) + jsp.xlogy(mr - k, 1.0 - mu)
            fac = jnp.where(m > 0, wt / jnp.where(m > 0, m, 1.0), 0.0)
            return -2.0 * jnp.sum(fac * ll)
        ll = jsp.xlogy(y, mu) - mu - jsp.gammaln(y + 1.0)
        return -2.0 * jnp.sum(ll * wt)

    def minus2loglik_saturated(self, y, n, wt) -> float:
        """``-2 log L`` at ``mu = y`` (the saturated model, deviance 0): ``minus2loglik - deviance``
        for every ``mu``, a constant of the data."""
        y = np.asarray(y, dtype=np.float64)
        return float(self.minus2loglik(y, n, y, np.asarray(wt, dtype=np.float64)))

    def mustart(self, y, n, wt):
        """R's ``initialize``: ``(m y + 1/2) / (m + 1)`` (binomial), ``y + 0.1`` (Poisson)."""
        y = jnp.asarray(y)
        if self.family == "binomial":
            m = self._m(n, wt)
            return (m * y + 0.5) / (m + 1.0)
        return y + 0.1

    # ------------------------------------------------------------------ PIRLS
    def working(self, eta, y, wt):
        """``(mu, r, W, W_obs)`` per row at ``eta`` (see the module docstring)."""
        mu = self.linkinv(eta)
        me = self.mu_eta(eta)
        V = self.variance(mu)
        res = y - mu
        r = wt * res * me / V
        W = wt * me * me / V
        if self.canonical:
            return mu, r, W, W
        ratio = lambda e: self.mu_eta(e) / self.variance(self.linkinv(e))  # noqa: E731
        _, dratio = jax.jvp(ratio, (eta,), (jnp.ones_like(eta),))
        return mu, r, W, W - wt * res * dratio

    # ------------------------------------------------------------------ simulation
    def simulate(self, rng: np.random.Generator, mu: np.ndarray, wt: np.ndarray, size: int) -> np.ndarray:
        """``size`` responses (columns) drawn at ``mu``; binomial responses as proportions of
        ``wt`` trials (R's ``binomial()$simulate``: integer prior weights only)."""
        mu = np.asarray(mu, dtype=np.float64)
        if self.family == "binomial":
            wt = np.asarray(wt, dtype=np.float64)
            if np.any(wt % 1 != 0):
                raise DataError("cannot simulate from non-integer prior weights (binomial trials)")
            k = rng.binomial(wt.astype(np.int64)[:, None], mu[:, None], size=(len(mu), size))
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(wt[:, None] > 0, k / np.where(wt > 0, wt, 1.0)[:, None], 0.0)
        return rng.poisson(mu[:, None], size=(len(mu), size)).astype(np.float64)


def Binomial(link: str = "logit") -> Family:  # noqa: N802  (R's spelling)
    """The binomial family (``link``: ``"logit"``, ``"probit"`` or ``"cloglog"``), as R's ``binomial(link)``."""
    return Family("binomial", str(link))


def Poisson(link: str = "log") -> Family:  # noqa: N802
    """The Poisson family with log link, as R's ``poisson()``."""
    return Family("poisson", str(link))


def get_family(family, link: str | None = None) -> Family:
    """A :class:`Family` from a name (``"binomial"``, ``"poisson"``, R's ``"binomial(link = 'probit')"``)
    or a :class:`Family`; ``link`` overrides the default link of a name."""
    if isinstance(family, Family):
        if link is not None and link != family.link:
            raise ArgumentError(f"link={link!r} contradicts the family {family!r}")
        return family
    if not isinstance(family, str):
        raise ArgumentError(f"family must be 'binomial', 'poisson' or jaxhlm.families.Binomial(link=...), "
                            f"got {type(family).__name__}")
    text = family.strip().lower().replace(" ", "").replace('"', "'")
    if "(" in text and text.endswith(")"):
        name, inner = text[:-1].split("(", 1)
        inner = inner.split("=", 1)[-1].strip("'")
        if inner:
            link = inner if link is None else link
        text = name
    if text not in _LINKS:
        raise ArgumentError(f"family must be 'binomial' or 'poisson' (glmer), got {family!r}; for a linear "
                            "mixed model use lmer()")
    return Family(text, link or _CANONICAL[text])
