"""emmeans' reference grid: factors at all levels, covariates at their means, equal-weight averages."""
from __future__ import annotations

import numpy as np
import pytest

import jaxhlm
from inference_refs import data, fit
from jaxhlm._src.infer.emm_grid import emm_linfct, estimable, r_level, ref_grid
from jaxhlm._src.infer.fixed_terms import model_frame


def test_grid_of_factors_and_covariate():
    m = fit("cake_numtemp")
    frame = model_frame(m)
    g = ref_grid(m, frame)
    assert g.variables == ["recipe", "temp"]
    assert g.factor == {"recipe": True, "temp": False}
    np.testing.assert_allclose(g.values["temp"], [frame["temp"].mean()])
    assert list(g.table["recipe"].astype(str)) == ["A", "B", "C"]
    # each grid row's model matrix row is the model's coding at that point
    np.testing.assert_allclose(g.X[:, 0], 1.0)


def test_first_variable_fastest_and_at():
    m = fit("oats_unbal")
    g = ref_grid(m, model_frame(m), at={"nitro": [0.0, 0.6]})
    assert len(g.table) == 6
    assert list(g.table["Variety"].astype(str))[:3] == ["Golden Rain", "Marvellous", "Victory"]
    assert [float(x) for x in g.table["nitro"]] == [0.0, 0.0, 0.0, 0.6, 0.6, 0.6]
    table, L, _ = emm_linfct(g, ["Variety"], [])
    np.testing.assert_allclose(L, np.stack([g.X[[i, i + 3]].mean(axis=0) for i in range(3)]))


def test_by_is_slowest():
    m = fit("oats_unbal")
    g = ref_grid(m, model_frame(m))
    table, L, _ = emm_linfct(g, ["nitro"], ["Variety"])
    assert list(table.columns) == ["nitro", "Variety"]
    assert list(table["Variety"].astype(str)[:4]) == ["Golden Rain"] * 4


def test_numeric_column_used_as_factor():
    d = data("cake_numtemp").copy()
    m = jaxhlm.lmer("angle ~ C(temp) + recipe + (1 | recipe:replicate)", d)
    e = m.emmeans("temp", lmer_df="asymptotic")
    assert len(e) == 6 and [r_level(x) for x in e["temp"]] == ["175", "185", "195", "205", "215", "225"]
    p = e.pairs()
    assert p["contrast"].iloc[0] == "temp175 - temp185"  # numeric-looking levels get the name


def test_string_levels_with_operators_get_parentheses():
    d = data("splitplot3").copy()
    d["B"] = d["B"].astype(str).str.replace("s", "s-")
    m = jaxhlm.lmer("y ~ A + B + (1 | block/A)", d)
    p = m.emmeans("B", lmer_df="asymptotic").pairs()
    assert p["contrast"].iloc[0] == "(s-1) - (s-2)"


def test_r_level():
    assert [r_level(x) for x in (0.0, 0.2, 1.0, 3, "a", True, 1e-4)] == ["0", "0.2", "1", "3", "a", "TRUE", "1e-04"]
    assert [r_level(x) for x in (1e15, 1e5, 0.1 + 0.2, 1234567.0, -0.75)] == ["1e+15", "1e+05", "0.3", "1234567", "-0.75"]


def test_estimability():
    m = fit("oats_missing_cell")
    g = ref_grid(m, model_frame(m))
    ok = estimable(g, g.X_full)
    assert ok.sum() == len(ok) - 1
    assert not ok[np.nonzero((g.table["Variety"].astype(str) == "Victory").to_numpy()
                             & (g.table["nitro"].astype(float) == 0.6).to_numpy())[0][0]]


def test_at_unknown_variable():
    m = fit("oats_unbal")
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Blok"):
        ref_grid(m, model_frame(m), at={"Blok": ["I"]})
