"""jaxhlm: hierarchical linear (mixed) models with lme4 formulas on a jit-compiled JAX engine.

Importing jaxhlm switches JAX to float64 (``jax_enable_x64``); see :mod:`jaxhlm._src.base.config`.

>>> import jaxhlm
>>> fit = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", data=df)   # doctest: +SKIP
>>> print(fit.summary())                                               # doctest: +SKIP
"""
from ._src.base import config as _config  # noqa: F401  (float64 before anything else)
from ._src.design.build import build_design
from ._src.base.errors import (
    AliasedRandomEffectsWarning,
    ArgumentError,
    ColumnNotFoundError,
    ConvergenceWarning,
    DataError,
    DataWarning,
    DatasetNotFoundError,
    FormulaError,
    JaxhlmError,
    JaxhlmWarning,
    MixedTypesWarning,
    ModelComparisonError,
    NonMonotonicProfileWarning,
    RankDeficiencyWarning,
    SingularFitWarning,
)
from ._src.formula.terms import parse_formula
from ._src.facade.entry import lmer, lmer_sharded
from ._src.facade.lmm import LinearMixedModel
from ._src.facade.glmm import GeneralizedLinearMixedModel, glmer
from ._src.infer.anova import AnovaTable
from ._src.facade.compare import anova
from ._src.base.errors import FitError, InferenceError, NewLevelsWarning
from ._src.infer.icc import icc
from ._src.sim.bootstrap import BootstrapResult, bootstrap_lrt
from ._src.sim.power import PowerResult
from ._src.facade.simulation import power, power_curve
from . import datasets, families, plotting  # noqa: E402  (plotting imports matplotlib only when drawing)

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
