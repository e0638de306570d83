"""The data a formula is evaluated on: any dataframe in, a pandas DataFrame out, never modified.

pandas DataFrames (NumPy, nullable or pyarrow-backed columns) are used as they are; a dict of
columns becomes a DataFrame; polars DataFrames and LazyFrames (collected), pyarrow tables and
other dataframe libraries that narwhals knows are converted to pandas once, at the entry. Anything
else is refused with its type named. Columns with more than one header level (a MultiIndex) are
refused: a formula names columns by one string.
"""
from __future__ import annotations

import pandas as pd

from ..base.errors import ArgumentError, DataError

__all__ = ["as_pandas"]


def _narwhals_to_pandas(data):
    try:
        import narwhals as nw
    except ImportError:  # pragma: no cover - narwhals is a dependency
        return None
    try:
        obj = nw.from_native(data, pass_through=True)
    except Exception:  # noqa: BLE001 - narwhals refuses what it does not know
        return None
    if obj is data:
        return None
    try:
        if isinstance(obj, nw.LazyFrame):
            obj = obj.collect()
        if isinstance(obj, nw.DataFrame):
            return obj.to_pandas()
    except Exception as exc:  # noqa: BLE001
        raise ArgumentError(f"cannot convert the {type(data).__name__} given as data to pandas: {exc}; "
                            "pass data.to_pandas()") from None
    return None


def as_pandas(data) -> pd.DataFrame:
    """The data as a pandas DataFrame (the same object for a DataFrame, a new one otherwise).

    Raises
    ------
    ArgumentError
        For objects that are not dataframes (a list, an array, None, ...).
    DataError
        For MultiIndex columns.
    """
    if isinstance(data, pd.DataFrame):
        out = data
    elif isinstance(data, dict):
        try:
            out = pd.DataFrame(data)
        except Exception as exc:  # noqa: BLE001
            raise ArgumentError(f"cannot turn the dict given as data into a DataFrame: {exc}") from None
    else:
        out = _narwhals_to_pandas(data) if data is not None and not isinstance(data, (list, tuple, str)) else None
        if out is None:
            mod = type(data).__module__.split(".")[0]
            raise ArgumentError(
                f"data must be a pandas DataFrame, a dict of columns or a dataframe narwhals knows (polars, "
                f"pyarrow, ...), got {type(data).__name__} (from {mod}); convert it to pandas first, e.g. "
                "data.to_pandas() or pd.DataFrame(data)"
            )
    if isinstance(out.columns, pd.MultiIndex):
        eg = out.columns[0]
        raise DataError(
            f"the data has MultiIndex columns ({out.columns.nlevels} header levels, e.g. {eg!r}); a formula names "
            "columns by one string: flatten them first, e.g. data.columns = ['_'.join(map(str, c)) for c in "
            "data.columns]"
        )
    return out
