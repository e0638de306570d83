"""Grouping factors (design/grouping.py): integer columns coded by the span table equal pandas'
sorted factorisation, whatever the integer type, sign and range."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhlm._src.design.grouping import _compact_int_codes, grouping_factor, single_factor

INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def int_columns(draw):
    dt = draw(st.sampled_from(INT_TYPES))
    info = np.iinfo(dt)
    lo = draw(st.integers(int(info.min), int(info.max)))
    width = draw(st.integers(0, min(int(info.max) - lo, 3000)))
    vals = draw(st.lists(st.integers(lo, lo + width), min_size=1, max_size=300))
    return np.array(vals, dtype=dt)


@settings(max_examples=150, deadline=None)
@given(int_columns())
def test_span_table_equals_sorted_factorize(x):
    codes, levels = single_factor(pd.Series(x))
    want_codes, want_levels = pd.factorize(x, sort=True)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(levels.to_numpy(), want_levels)
    assert levels.dtype == pd.Index(want_levels).dtype  # integers stay integers of the same kind
    if _compact_int_codes(x) is not None:  # the table route itself, not only the fallback
        np.testing.assert_array_equal(_compact_int_codes(x)[0], want_codes)


def test_extremes_of_each_type_and_wide_spans():
    for dt in INT_TYPES:
        info = np.iinfo(dt)
        for x in ([info.min, info.min + 2, info.min], [info.max, info.max - 1, info.max - 1]):
            x = np.array(x, dtype=dt)
            got = _compact_int_codes(x)
            want = pd.factorize(x, sort=True)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            assert got[1].dtype == x.dtype
    assert _compact_int_codes(np.array([0, 10**12, 5])) is None  # a wide span: hashing instead
    codes, levels = single_factor(pd.Series([10**12, 0, 5, 0]))
    np.testing.assert_array_equal(codes, [2, 0, 1, 0])
    assert list(levels) == [0, 5, 10**12]


def test_interaction_of_integer_columns_orders_as_r():
    frame = pd.DataFrame({"a": np.array([2, 1, 2, 1], np.int32), "b": np.array([7, 7, 3, 3], np.uint8)})
    g = grouping_factor("a:b", frame, ("a", "b"))
    assert list(g.levels) == ["1:3", "1:7", "2:3", "2:7"]
    np.testing.assert_array_equal(g.codes, [3, 1, 2, 0])
