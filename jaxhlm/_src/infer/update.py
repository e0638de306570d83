"""Refit a model with a changed formula, data or criterion (lme4's ``update``).

``update(m, ". ~ . - x")`` refits ``m`` with the formula R's ``update.formula`` gives
(:func:`~jaxhlm._src.formula.update.update_formula`: dot syntax, ``-`` removing fixed or random
terms, ``+ (1 | h)`` adding them), on the data ``m`` was fitted to unless ``data`` is given,
with ``m``'s REML/ML choice unless ``reml`` is given.
"""
from __future__ import annotations

from ..base.errors import ArgumentError, InferenceError
from ..formula.update import update_formula

__all__ = ["update", "refit_formula"]


def refit_formula(model, formula: str, data=None, reml=None, name=None):
    """Fit ``formula`` to ``model``'s data (or ``data``) with ``model``'s criterion (or ``reml``)."""
    from ..model.pipeline import fit_design, lformula, mk_devfun

    if data is None:
        data = model.data
        if data is None:
            raise InferenceError(
                "the model does not hold the data it was fitted to (fitted out of core?); pass data="
            )
    reml = model.reml if reml is None else reml
    if not isinstance(reml, bool):
        raise ArgumentError(f"reml must be True, False or None, got {reml!r}")
    design = lformula(formula, data, **model.design_args)
    new = fit_design(design, *mk_devfun(design), reml, name=name, cls=type(model))
    new.data, new.design_args = data, dict(model.design_args)
    return new


def update(model, formula: str | None = None, data=None, reml: bool | None = None, name=None):
    """Refit ``model`` with an updated formula, new data and/or another criterion.

    Parameters
    ----------
    model : LinearMixedModel
    formula : str, optional
        R's update syntax: ``". ~ . - x"``, ``"~ . + (1 | h)"``, ``"~ . - (1 | g)"``,
        ``"log(.) ~ ."``; or a complete new formula. Default: the model's formula.
    data : pandas.DataFrame, optional
        Default: the data the model was fitted to.
    reml : bool, optional
        Default: as the model (REML or ML).
    name : str, optional
        Label of the new model (default the old one's).

    Returns
    -------
    LinearMixedModel
        The new fit; its ``formula`` is the updated formula as R writes it.
    """
    new = model.formula if formula is None else update_formula(model.formula, formula)
    return refit_formula(model, new, data=data, reml=reml, name=model.name if name is None else name)
