"""The response, prior weights and offsets of a model, read as lme4 reads them.

Response (left of ``~``), by family:

* linear models (``family=None`` or ``"gaussian"``): real numbers; text, booleans, dates, a
  factor or a two-column ``cbind()`` are refused with the reason;
* ``"binomial"`` (as ``glmer``): ``cbind(successes, failures)`` gives ``y = successes / trials``
  with ``trials = successes + failures`` (``y = 0`` where ``trials = 0``, as R's
  ``binomial()$initialize``); a factor gives ``y = 1`` for every level but the first (the first
  level is failure, R's rule); booleans give 0/1; numbers must lie in [0, 1] (proportions, with
  the number of trials given as ``weights``, or 0/1); ``trials`` is 1 for these;
* other families: real numbers.

Prior ``weights`` (a column name or an array with one value per row of the data): numeric,
finite, not negative; a missing weight drops its row (lme4's ``na.action``). A zero weight is
refused for linear models (lme4 keeps such rows and its log-likelihood is ``-Inf``) and allowed for
binomial ones (R's ``glm``: the row carries no information).

``offset(x)`` terms are added up (several are allowed) into one per-row offset.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, ColumnNotFoundError, DataError, warn
from .rvalues import DataWarning, Factor, Matrix, Numeric

__all__ = ["check_response_column", "response_values", "prior_weights", "family_name"]


def family_name(family) -> str:
    if family is None:
        return "gaussian"
    name = family if isinstance(family, str) else getattr(family, "name", getattr(family, "family", None))
    if not isinstance(name, str):
        raise ArgumentError(f"family must be a name such as 'gaussian' or 'binomial', got {family!r}")
    return name.strip().lower()


def check_response_column(ycol: str, frame: pd.DataFrame) -> None:
    """A response that is a column must hold real numbers (not text, booleans, dates, complex)."""
    if ycol not in frame.columns:
        return  # an expression such as np.log(y): checked after evaluation
    col = frame[ycol]
    dt = col.dtype
    ok = (
        pd.api.types.is_numeric_dtype(dt)
        and not pd.api.types.is_bool_dtype(dt)
        and not pd.api.types.is_complex_dtype(dt)
    )
    if ok:
        return
    hint = ""
    if pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt):
        conv = pd.to_numeric(col, errors="coerce")
        bad = col[conv.isna() & col.notna()]
        if len(bad):
            hint = f" ({len(bad)} values are not numbers, e.g. {bad.iloc[0]!r})"
        hint += f"; convert it with pd.to_numeric(data[{ycol!r}])"
    elif pd.api.types.is_bool_dtype(dt):
        hint = "; for a 0/1 response use data[{!r}].astype(float) (a linear model of a binary response)".format(ycol)
    raise DataError(f"the response column {ycol!r} must be numeric, it has dtype {dt}{hint}")


def response_values(value, label: str, family: str) -> tuple:
    """``(y, trials)`` as float64 arrays (``trials`` None except for binomial) from the evaluated
    response (rows already selected)."""
    if family != "binomial":
        if isinstance(value, Matrix) and value.values.shape[1] == 2:
            raise DataError(f"the response {label!r} has two columns; cbind(successes, failures) is a binomial "
                            "response (for glmer with family='binomial'), not one for a linear model")
        if isinstance(value, Factor):
            raise DataError(f"the response {label!r} is categorical (levels {list(value.levels)[:4]}); a linear "
                            "model needs a numeric response")
        if isinstance(value, Numeric) and value.logical:
            raise DataError(f"the response {label!r} is TRUE/FALSE (bool); for a 0/1 response use a numeric column")
        y = value.values
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise DataError(f"the response {label!r} must be one numeric column; it has {y.shape[1]}")
            y = y[:, 0]
        return np.ascontiguousarray(y, dtype=np.float64), None
    if isinstance(value, Matrix):
        if value.values.shape[1] != 2:
            raise DataError(f"a binomial response matrix needs two columns cbind(successes, failures); {label!r} has "
                            f"{value.values.shape[1]}")
        s, f = value.values[:, 0], value.values[:, 1]
        if np.any(s < 0) or np.any(f < 0):
            raise DataError(f"the binomial response {label!r} has negative counts")
        if np.any(s != np.round(s)) or np.any(f != np.round(f)):
            warn(f"non-integer counts in the binomial response {label!r}", DataWarning)
        n = s + f
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(n == 0, 0.0, s / np.where(n == 0, 1.0, n))
        return y, n
    if isinstance(value, Factor):
        if value.nlevels > 2:
            warn(f"the binomial response {label!r} has {value.nlevels} levels; as in R, the first "
                          f"({value.levels[0]!r}) is failure and all others are success", DataWarning)
        return (value.codes != 0).astype(np.float64), np.ones(len(value.codes))
    y = value.values if value.values.ndim == 1 else value.values[:, 0]
    if np.any(y < 0) or np.any(y > 1):
        raise DataError(f"the binomial response {label!r} has values outside [0, 1]; give proportions (with the "
                        "numbers of trials as weights), 0/1, a two-level factor or cbind(successes, failures)")
    return np.asarray(y, dtype=np.float64), np.ones(len(y))


def prior_weights(weights, data: pd.DataFrame, family: str):
    """The prior weights as float64 (one per row of ``data``, NaN where missing), or None.

    Raises
    ------
    ColumnNotFoundError, DataError, ArgumentError
        Unknown column, wrong length, an index that does not match the data's, non-numeric,
        infinite or negative values, zero weights in a linear model.
    """
    if weights is None:
        return None
    what = "weights"
    if isinstance(weights, str):
        if weights not in data.columns:
            raise ColumnNotFoundError(weights, data.columns, "weights")
        what = f"weights column {weights!r}"
        col = data[weights]
    elif isinstance(weights, pd.Series):
        if len(weights) != len(data):
            raise DataError(f"weights has {len(weights)} values for {len(data)} rows of data")
        if not weights.index.equals(data.index):
            raise DataError("the weights Series is indexed differently from the data; pass weights.to_numpy() "
                            "(in the data's row order) or a column name")
        col = weights
    else:
        if np.ndim(weights) == 0:
            raise ArgumentError(f"weights must be a column name or an array with one value per row, got {type(weights).__name__}")
        arr = weights if hasattr(weights, "dtype") and np.ndim(weights) == 1 else np.asarray(weights)
        if np.ndim(arr) != 1:
            raise DataError(f"weights must be one value per row (1-d), got an array of shape {np.shape(arr)}")
        if len(arr) != len(data):
            raise DataError(f"weights has {len(arr)} values for {len(data)} rows of data")
        col = pd.Series(arr, index=data.index)
    if len(col) != len(data):
        raise DataError(f"weights has {len(col)} values for {len(data)} rows of data")
    dt = col.dtype
    numeric_objects = pd.api.types.is_object_dtype(dt) and pd.api.types.infer_dtype(col, skipna=True) in (
        "floating", "integer", "mixed-integer-float", "empty")
    if not numeric_objects and (pd.api.types.is_bool_dtype(dt) or not pd.api.types.is_numeric_dtype(dt)
                                or pd.api.types.is_complex_dtype(dt)):
        text = pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt)
        hint = "; convert them with pd.to_numeric" if text else ""
        raise DataError(f"{what} must be numeric, it has dtype {dt}{hint}")
    w = col.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~np.isnan(w)
    if np.isinf(w[ok]).any():
        raise DataError(f"{what} has infinite values ({int(np.isinf(w).sum())} rows)")
    if (w[ok] < 0).any():
        raise DataError(f"{what} has negative values ({int((w[ok] < 0).sum())} rows); prior weights must be >= 0")
    return w
