"""Bundled datasets: contents equal the reference CSVs, grouping columns load as R factors."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm import datasets

DATA = Path(__file__).parent / "data"
REF = DATA / "reference"


@pytest.mark.parametrize("name", ["sleepstudy", "nels_like", "Dyestuff", "Penicillin", "cbpp", "Pastes"])
def test_load_matches_test_data(name):
    df = datasets.load(name)
    raw = pd.read_csv(DATA / f"{name}.csv")
    assert list(df.columns) == list(raw.columns)
    assert len(df) == len(raw)
    for col in raw.columns:
        assert df[col].tolist() == raw[col].tolist()


def test_grouping_columns_are_factors_sorted_like_r():
    nels = datasets.load("nels_like")
    assert isinstance(nels["sch_id"].dtype, pd.CategoricalDtype)
    cats = list(nels["sch_id"].cat.categories)
    assert cats == sorted(cats) and all(isinstance(c, (int, np.integer)) for c in cats)  # numeric order
    assert len(cats) == 854
    # R's factor() levels, as in the reference ranef
    ref = json.loads((REF / "nels_m1.json").read_text())
    assert [str(c) for c in cats] == ref["ranef"]["sch_id"]["levels"]
    assert not isinstance(nels["mathscore"].dtype, pd.CategoricalDtype)
    pastes = datasets.load("Pastes")
    assert all(isinstance(pastes[c].dtype, pd.CategoricalDtype) for c in ("batch", "cask", "sample"))


def test_load_returns_fresh_copies_and_is_case_insensitive():
    a = datasets.load("sleepstudy")
    a.loc[0, "Reaction"] = -1.0
    b = datasets.load("SLEEPSTUDY")
    assert b.loc[0, "Reaction"] != -1.0


def test_list_and_describe():
    table = datasets.list()
    assert set(datasets.names()) <= set(table.index)
    assert table.loc["nels_like", "rows"] == 8378
    assert table.loc["sleepstudy", "rows"] == 180
    for name in datasets.names():
        text = datasets.describe(name)
        assert text.startswith(name + ":")
        assert "Source:" in text
        for col in datasets.load(name).columns:
            assert col in text
        assert table.loc[name, "description"] and table.loc[name, "source"]


def test_unknown_dataset_error():
    with pytest.raises(jaxhlm.DatasetNotFoundError, match="sleepstudy"):
        datasets.load("sleepstudyy")
    with pytest.raises(KeyError):
        datasets.describe("nope")


def test_factor_columns_fit_like_r():
    """A categorical grouping column gives lme4's fit (objective of the R reference)."""
    ref = json.loads((REF / "dyestuff_ml.json").read_text())
    fit = jaxhlm.lmer("Yield ~ 1 + (1 | Batch)", datasets.load("Dyestuff"), reml=False)
    assert fit.objective == pytest.approx(ref["objective"], abs=1e-6)
    assert list(fit.ranef["Batch"].index) == ref["ranef"]["Batch"]["levels"]
