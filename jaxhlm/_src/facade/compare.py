"""Model comparison as R users call it: ``anova(m1, m2, ...)``."""
from __future__ import annotations

from ..base.errors import ArgumentError, ModelComparisonError
from ..infer.anova import lrt
from ..model.glmm_state import GlmmFitState
from .glmm import anova_glmer

__all__ = ["anova"]


def anova(*models, names=None, refit: bool = True, boundary: bool = False, method: str = "lrt",
          nsim: int = 1000, seed=None, **boot_kwargs):
    """Likelihood-ratio tests of nested linear or generalized linear mixed models (lme4's ``anova(m1, m2, ...)``).

    Parameters
    ----------
    *models : LinearMixedModel
        Two or more models fitted to the same rows (or one list of them).
    names : list of str, optional
        Row labels. Default: each model's ``name`` (``lmer(..., name=)``), else its formula.
    refit : bool, default True
        Refit REML fits by maximum likelihood first (as lme4).
    boundary : bool, default False
        Add the p-value from the 50:50 mixture of chi2(Df - 1) and chi2(Df) (one added variance
        component); see :func:`jaxhlm._src.infer.anova.lrt`.
    method : {"lrt", "bootstrap"}, default "lrt"
        ``"bootstrap"``: parametric bootstrap LRT of two nested models (pbkrtest's PBmodcomp),
        ``nsim`` responses simulated from the smaller model, both models refitted to each; see
        :func:`jaxhlm._src.sim.bootstrap.bootstrap_lrt` (extra keywords go there).
    nsim, seed
        Bootstrap size and seed (``method="bootstrap"``).

    Returns
    -------
    AnovaTable or BootstrapResult
    """
    if method not in ("lrt", "bootstrap"):
        raise ArgumentError(f"method must be 'lrt' or 'bootstrap', got {method!r}")
    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if any(isinstance(m, GlmmFitState) for m in models):
        if method != "lrt":
            raise ArgumentError("glmer fits are compared by likelihood-ratio tests (method='lrt')")
        return anova_glmer(*models, names=names)
    if method == "bootstrap":
        from ..sim.bootstrap import bootstrap_lrt

        if len(models) != 2:
            raise ModelComparisonError("the bootstrap LRT compares exactly two nested models")
        m0, m1 = sorted(models, key=lambda m: m.npar)
        return bootstrap_lrt(m0, m1, nsim=nsim, seed=seed, **boot_kwargs)
    return lrt(*models, names=names, refit=refit, boundary=boundary)
