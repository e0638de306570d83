"""jaxhlm: hierarchical linear (mixed) models with lme4 formulas on a jit-compiled JAX engine.

Importing jaxhlm switches JAX to float64 (``jax_enable_x64``); see :mod:`jaxhlm._src.base.config`.

>>> import jaxhlm
>>> fit = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", data=df)   # doctest: +SKIP
>>> print(fit.summary())                                               # doctest: +SKIP
"""
from ._src.base import config as _config  # noqa: F401  (float64 before anything else)
from ._src.base.errors import (
    AliasedRandomEffectsWarning,
    ArgumentError,
    ColumnNotFoundError,
    ConvergenceWarning,
    DataError,
    DataWarning,
    DatasetNotFoundError,
    FitError,
    FormulaError,
    InferenceError,
    JaxhlmError,
    JaxhlmWarning,
    MixedTypesWarning,
    ModelComparisonError,
    NewLevelsWarning,
    NonMonotonicProfileWarning,
    RankDeficiencyWarning,
    SingularFitWarning,
)

# The rest is imported on first use (PEP 562): ``import jaxhlm`` costs JAX's import and little
# more; ``jaxhlm.lmer`` (or ``from jaxhlm import lmer``) loads the fitting code and pandas.
_LAZY = {
    "lmer": "._src.facade.entry",
    "lmer_sharded": "._src.facade.entry",
    "LinearMixedModel": "._src.facade.lmm",
    "glmer": "._src.facade.glmm",
    "GeneralizedLinearMixedModel": "._src.facade.glmm",
    "parse_formula": "._src.formula.terms",
    "build_design": "._src.design.build",
    "anova": "._src.facade.compare",
    "AnovaTable": "._src.infer.anova",
    "icc": "._src.infer.icc",
    "bootstrap_lrt": "._src.sim.bootstrap",
    "BootstrapResult": "._src.sim.bootstrap",
    "PowerResult": "._src.sim.power",
    "power": "._src.facade.simulation",
    "power_curve": "._src.facade.simulation",
}
_SUBMODULES = ("datasets", "families", "plotting")


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module 'jaxhlm' has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "lmer",
    "LinearMixedModel",
    "glmer",
    "GeneralizedLinearMixedModel",
    "families",
    "parse_formula",
    "build_design",
    "JaxhlmError",
    "FormulaError",
    "DataError",
    "ColumnNotFoundError",
    "ArgumentError",
    "ModelComparisonError",
    "DatasetNotFoundError",
    "datasets",
    "plotting",
    "JaxhlmWarning",
    "ConvergenceWarning",
    "SingularFitWarning",
    "RankDeficiencyWarning",
    "AliasedRandomEffectsWarning",
    "DataWarning",
    "MixedTypesWarning",
    "NonMonotonicProfileWarning",
    "FitError",
    "anova",
    "AnovaTable",
    "icc",
    "InferenceError",
    "NewLevelsWarning",
    "power",
    "power_curve",
    "PowerResult",
    "bootstrap_lrt",
    "BootstrapResult",
    "lmer_sharded",
]
