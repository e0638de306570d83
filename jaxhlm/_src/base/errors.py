"""jaxhlm's exception and warning classes.

Every error raised for bad input is a subclass of :class:`JaxhlmError` and of the matching
builtin (``ValueError``, ``TypeError`` or ``KeyError``), raised before any JAX code runs.
"""
from __future__ import annotations

import difflib


class JaxhlmError(Exception):
    """Base class of all jaxhlm errors."""


class FormulaError(JaxhlmError, ValueError):
    """The model formula cannot be parsed or does not describe a linear mixed model.

    Attributes
    ----------
    formula : str or None
        The formula, when the error concerns a position in it.
    position : int or None
        0-based index of the offending character; the message then shows the formula with a
        caret under that character.
    """

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.formula = formula
        self.position = position
        if formula is not None and position is not None:
            message = f"{message}\n    {formula}\n    {' ' * position}^"
        super().__init__(message)


class DataError(JaxhlmError, ValueError):
    """The data cannot be used for the model (non-numeric response, infinite values, ...)."""


class ColumnNotFoundError(JaxhlmError, KeyError):
    """A column named in the formula is not in the data."""

    def __init__(self, column: str, available=(), where: str = "formula"):
        self.column = column
        close = difflib.get_close_matches(str(column), [str(a) for a in available], n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        self.message = f"column {column!r} used in the {where} is not in the data{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ArgumentError(JaxhlmError, TypeError):
    """An argument has the wrong type."""


class ModelComparisonError(JaxhlmError, ValueError):
    """Models cannot be compared (different data, not nested, ...)."""


class DatasetNotFoundError(JaxhlmError, KeyError):
    """No bundled dataset (:mod:`jaxhlm.datasets`) has the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InferenceError(JaxhlmError, ValueError):
    """The requested inference is not available for this model (e.g. Kenward-Roger for an ML fit)."""


class JaxhlmWarning(UserWarning):
    """Base class of jaxhlm warnings."""


class ConvergenceWarning(JaxhlmWarning):
    """The optimiser did not reach a point with a negligible gradient."""


class FitError(JaxhlmError, ValueError):
    """The model could not be fitted to the data (the criterion is not finite at the optimum)."""


class SingularFitWarning(JaxhlmWarning):
    """The fit is singular: a variance is zero or a correlation is +-1 (boundary)."""


class NewLevelsWarning(JaxhlmWarning):
    """Prediction for grouping-factor levels not seen in the fit (population-level prediction)."""


class NonMonotonicProfileWarning(JaxhlmWarning):
    """A likelihood profile is not monotonic (its signed root deviance decreases somewhere away
    from the estimate): the profile interval may be wrong; look at the profile itself."""


class RankDeficiencyWarning(JaxhlmWarning):
    """Fixed-effects columns were dropped because they are linear combinations of others."""


class AliasedRandomEffectsWarning(JaxhlmWarning):
    """Columns of random-effect terms on one grouping factor cannot be told apart in the data."""


class DataWarning(JaxhlmWarning):
    """Something in the data is probably not what was meant (numbers stored as text, ...)."""


class MixedTypesWarning(DataWarning):
    """A column mixes numbers and text; its values are compared as text (R's ``as.character``)."""


def warn(message: str, category=JaxhlmWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside jaxhlm (the user's line)."""
    import os
    import sys
    import warnings

    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # .../jaxhlm
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(top + os.sep):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
