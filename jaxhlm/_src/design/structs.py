"""The design's data structures: :class:`TermDesign` and :class:`Design` (and
:class:`~jaxhlm._src.design.grouping.GroupingFactor`, re-exported)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..formula.plan import formula_plan
from ..formula.terms import ParsedFormula, RandomTerm
from .grouping import GroupingFactor
from .modelmatrix import plain_spec

__all__ = ["GroupingFactor", "TermDesign", "Design"]


@dataclasses.dataclass
class TermDesign:
    """One random-effects term ``(expr | group)`` evaluated on the data.

    Fields
    ------
    term : RandomTerm
    Z : ndarray, shape (n, p)
        Per-row values of the term's columns (1 for an intercept).
    names : list of str
        R-style column names (``(Intercept)``, ``Days``).
    factor : int
        Index of the grouping factor in :attr:`Design.factors`.
    """

    term: RandomTerm
    Z: np.ndarray
    names: list
    factor: int

    @property
    def p(self) -> int:
        return self.Z.shape[1]


@dataclasses.dataclass
class Design:
    """Everything the engine needs from the data.

    Fields
    ------
    formula : ParsedFormula
    y : ndarray (n,)
        The response; for binomial models the proportion of successes.
    X : ndarray (n, p)
    fixef_names : list of str
        R's names (``(Intercept)``, ``fb``, ``a1:b1``, ``poly(x, 2)1``, ``I(x^2)``).
    dropped_fixef : list of str
        Aliased fixed-effects columns removed for rank deficiency.
    terms : list of TermDesign
        Random terms in lme4's order (stable sort by decreasing number of levels).
    factors : list of GroupingFactor
        Distinct grouping factors, in order of first use by :attr:`terms`.
    index : pandas.Index
        Row labels (from the user's data) of the rows used.
    n_dropped : int
        Rows dropped for missing values.
    fixed_spec : SideSpec of the fixed effects (for new data: ``get_model_matrix``, ``offset``)
    fixed_keep : ndarray of bool
        Which columns of the full fixed-effects matrix were kept (not aliased).
    term_specs : list of SideSpec of the random terms (in :attr:`terms` order)
    response_name : str
    offset : ndarray (n,) or None
        Sum of the formula's ``offset(...)`` terms per row (float64); the model is fitted to
        ``y - offset`` on the linear-predictor scale.
    weights : ndarray (n,) or None
        Prior weights (float64): residual variance ``sigma^2 / w_i``.
    trials : ndarray (n,) or None
        Binomial models: the number of trials per row (``successes + failures`` for a
        ``cbind()`` response, else 1); None for other families.
    """

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    fixef_names: list
    dropped_fixef: list
    terms: list
    factors: list
    index: pd.Index
    n_dropped: int
    fixed_spec: object
    fixed_keep: np.ndarray
    term_specs: list
    response_name: str
    spec_template: object = None
    offset: np.ndarray | None = None
    weights: np.ndarray | None = None
    trials: np.ndarray | None = None

    def ensure_specs(self) -> None:
        """Build the specs for new data if the fast path left them out (plain numeric columns:
        nothing is learned from the data, so the specs follow from the formula alone)."""
        if self.fixed_spec is not None:
            return
        plan = formula_plan(self.formula)
        self.fixed_spec = plain_spec(plan.fixed, "fixed-effects part")
        order = {id(t): k for k, t in enumerate(self.formula.random)}
        self.term_specs = [plain_spec(plan.random[order[id(td.term)]], f"random-effect term {td.term}")
                           for td in self.terms]

    @property
    def fixef_assign(self) -> np.ndarray:
        """R's ``attr(X, "assign")`` for the columns of :attr:`X`: 0 for the intercept, ``j`` for the
        fixed-effects term :attr:`fixef_terms` ``[j - 1]`` (for tests of terms: anova, drop1)."""
        self.ensure_specs()
        return np.asarray(self.fixed_spec.assign, dtype=np.int64)[np.asarray(self.fixed_keep, bool)]

    @property
    def fixef_terms(self) -> tuple:
        """R's term labels of the fixed part, in R's order (``a``, ``b``, ``a:b``, ``poly(x, 2)``)."""
        self.ensure_specs()
        return tuple(self.fixed_spec.term_labels)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]
