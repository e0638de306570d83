"""stats.layout: the one owner of the theta layout and of the plan of the factor L."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_data

from jaxhlm._src.design.build import build_design
from jaxhlm._src.stats.layout import Plan, build_layout, bucket, theta_names


def test_bucket_pads_at_most_a_quarter():
    for n in range(1, 5000):
        b = bucket(n)
        assert b >= n and (n <= 8 or b <= 1.25 * n + 1)


def test_theta_layout_in_lme4_order():
    d = build_design("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"))
    lay = build_layout(d)
    assert (lay.theta_row, lay.theta_col) == ((0, 1, 1), (0, 0, 1))
    assert theta_names(d) == ["Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"]
    np.testing.assert_array_equal(lay.lower_bounds(), [0.0, -np.inf, 0.0])
    np.testing.assert_array_equal(lay.lme4_start(), [1.0, 0.0, 1.0])
    T = lay.T_arrays(np.array([1.0, 2.0, 3.0]))[0]
    np.testing.assert_array_equal(T, [[1.0, 0.0], [2.0, 3.0]])


def test_rectify_flips_columns_and_lifted_leaves_zero():
    d = build_design("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"))
    lay = build_layout(d)
    np.testing.assert_array_equal(lay.rectify([-1.0, 2.0, -3.0]), [1.0, -2.0, 3.0])
    np.testing.assert_array_equal(lay.rectify([[-1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), [[1.0, -2.0, 3.0], [1.0, 2.0, 3.0]])
    # the signs themselves (gradients and Hessians follow them): a zero in a flipped column is
    # still flipped, a zero diagonal flips nothing
    np.testing.assert_array_equal(lay.column_signs([-1.0, 0.0, 3.0]), [-1.0, -1.0, 1.0])
    np.testing.assert_array_equal(lay.column_signs([[0.0, 1.0, -2.0]]), [[1.0, 1.0, -1.0]])
    th = lay.lifted([0.0, 0.5, 2.0])
    assert th[0] == pytest.approx(0.2) and th[2] == 2.0
    assert lay.singular([0.0, 0.5, 2.0]) and not lay.singular([1.0, 0.5, 2.0])


def test_full_T_layout_has_every_entry():
    d = build_design("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"))
    full = build_layout(d).full_T()
    assert full.ntheta == 4 and set(zip(full.theta_row, full.theta_col)) == {(0, 0), (0, 1), (1, 0), (1, 1)}


def _crossed(n_a, n_b, reps, frac, seed=0):
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.arange(n_a), np.arange(n_b), indexing="ij")
    keep = rng.random(a.shape) < frac
    a, b = np.repeat(a[keep], reps), np.repeat(b[keep], reps)
    x = rng.normal(size=a.size)
    return pd.DataFrame({"y": x + rng.normal(size=a.size), "x": x, "a": a, "b": b})


@pytest.mark.parametrize("frac, coupling", [(1.0, "dense"), (0.02, "sparse")])
def test_plan_dense_where_every_level_meets_every_level(frac, coupling):
    df = _crossed(300, 120, 2, frac)
    lay = build_layout(build_design("y ~ x + (x | a) + (x | b)", df))
    assert lay.plan.kind == "crossed" and lay.plan.coupling == coupling
    assert lay.plan.fill == ("dense" if coupling == "dense" else "pairs")
    lay1 = build_layout(build_design("y ~ x + (1 | a) + (1 | b)", df))
    assert lay1.plan.fill == ("dense" if coupling == "dense" else "scalar")


def test_plan_of_nested_and_one_factor_designs():
    assert build_layout(build_design("strength ~ 1 + (1 | batch/cask)", load_data("Pastes.csv"))).plan == Plan("chain")
    assert build_layout(build_design("Yield ~ 1 + (1 | Batch)", load_data("Dyestuff.csv"))).plan == Plan("one")
    lay = build_layout(build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", load_data("Penicillin.csv")))
    assert lay.plan.kind == "crossed" and lay.QD == 6 and lay.dense_offsets == {1: 0}


def test_column_signs_of_a_full_T_layout_and_is_diag_is_the_callers():
    d = build_design("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"))
    full = build_layout(d).full_T()  # entries (0,0), (0,1), (1,0), (1,1): columns 0, 1, 0, 1
    np.testing.assert_array_equal(full.column_signs([-1.0, 2.0, 3.0, 4.0]), [-1.0, 1.0, -1.0, 1.0])
    np.testing.assert_array_equal(full.column_signs([1.0, 2.0, 3.0, -4.0]), [1.0, -1.0, 1.0, -1.0])
    mask = full.is_diag()
    mask[:] = False  # the caller's copy: the layout's own index is untouched
    np.testing.assert_array_equal(full.is_diag(), [True, False, False, True])
