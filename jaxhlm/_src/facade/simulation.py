"""``jaxhlm.power`` and ``jaxhlm.power_curve`` for lmer and glmer fits alike.

An lmer fit goes to :mod:`jaxhlm._src.sim.power` (t, z or LRT tests, Satterthwaite df); a glmer
fit to its own simulation (:mod:`jaxhlm._src.sim.glmm_sim`: Wald z tests, no scale parameter).
"""
from __future__ import annotations

import functools

from ..base.errors import ArgumentError
from ..sim import power as _lmm

__all__ = ["power", "power_curve"]


def _glmm_kwargs(caller, test, effect, kw):
    """lmer-only arguments refused by name; ``effect=`` becomes ``fixef={test: effect}``."""
    bad = sorted(k for k, v in kw.items() if k not in ("fixef", "theta", "seed", "level") and v is not None
                 and not (k == "method" and str(v).lower() in ("satterthwaite", "z", "wald")))
    if bad:
        raise ArgumentError(f"{caller} of a glmer fit uses Wald z tests and has no scale: {bad} do not apply")
    out = {k: kw[k] for k in ("fixef", "theta", "seed") if kw.get(k) is not None}
    if kw.get("level") is not None:
        out["level"] = kw["level"]
    if effect is not None:
        if not isinstance(test, str):
            raise ArgumentError("effect= sets the one tested coefficient: name it with test='...'")
        out["fixef"] = {**dict(out.get("fixef") or {}), test: float(effect)}
    return out


@functools.wraps(_lmm.power)
def power(fit, test=None, nsim: int = 1000, alpha: float = 0.05, effect=None, **kw):
    if getattr(fit, "family", None) is None:
        return _lmm.power(fit, test, nsim, alpha, effect, **kw)
    from ..sim.glmm_sim import power_glmm

    return power_glmm(fit, test, nsim, alpha, **_glmm_kwargs("power()", test, effect, kw))


@functools.wraps(_lmm.power_curve)
def power_curve(fit, along: str, sizes, test=None, nsim: int = 1000, alpha: float = 0.05, effect=None, **kw):
    if getattr(fit, "family", None) is None:
        return _lmm.power_curve(fit, along, sizes, test, nsim, alpha, effect, **kw)
    from ..sim.glmm_sim import power_curve_glmm

    return power_curve_glmm(fit, along, sizes, test, nsim, alpha, **_glmm_kwargs("power_curve()", test, effect, kw))
