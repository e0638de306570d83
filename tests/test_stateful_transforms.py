"""Columns used only inside formulaic's stateful transforms are found in the data."""
import numpy as np
import pytest

import jaxhlm
from conftest import load_data


def test_center_and_scale_fit_like_hand_transformed_columns():
    d = load_data("nels_like.csv")
    m = jaxhlm.lmer("mathscore ~ center(ses) + scale(family_inc) + (1 | sch_id)", d, reml=False)
    h = d.assign(ses_c=d["ses"] - d["ses"].mean(),
                 inc_s=(d["family_inc"] - d["family_inc"].mean()) / d["family_inc"].std())
    m2 = jaxhlm.lmer("mathscore ~ ses_c + inc_s + (1 | sch_id)", h, reml=False)
    assert m.objective == pytest.approx(m2.objective, abs=1e-6)
    assert np.allclose(m.fixef.to_numpy(), m2.fixef.to_numpy(), rtol=1e-6)
    assert list(m.fixef.index) == ["(Intercept)", "center(ses)", "scale(family_inc)"]
