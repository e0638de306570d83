"""Shared test helpers: reference cases (R lme4/lmerTest/merTools output) and cached fits."""
from __future__ import annotations

import functools
import json
import os
import warnings

import pandas as pd
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
REF_DIRS = [os.path.join(DATA, "reference"), os.path.join(DATA, "reference_extra")]


def load_cases(kind: str = "lmer") -> list:
    """All reference cases of a type, from every reference folder present."""
    out = []
    for d in REF_DIRS:
        path = os.path.join(d, "cases.json")
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            cases = json.load(fh)["cases"]
        for c in cases:
            if c.get("type") == kind and os.path.exists(os.path.join(d, f"{c['id']}.json")):
                c = dict(c)
                c["_dir"] = d
                out.append(c)
    return out


@functools.lru_cache(maxsize=None)
def load_reference(case_id: str) -> dict:
    for d in REF_DIRS:
        path = os.path.join(d, f"{case_id}.json")
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
    raise FileNotFoundError(case_id)


@functools.lru_cache(maxsize=None)
def load_data(name: str) -> pd.DataFrame:
    for sub in ("", "extra"):
        path = os.path.join(DATA, sub, name)
        if os.path.exists(path):
            return pd.read_csv(path)
    raise FileNotFoundError(name)


def dense_Z(design, f: int):
    """The dense ``Z`` of factor ``f`` of a design (rows x levels * q), for checks of the blocked
    statistics against plain matrix products."""
    import numpy as np

    fac = design.factors[f]
    Zf = np.concatenate([td.Z for td in design.terms if td.factor == f], axis=1)
    q = Zf.shape[1]
    Z = np.zeros((design.n, fac.nlevels * q))
    for j in range(q):
        Z[np.arange(design.n), fac.codes * q + j] = Zf[:, j]
    return Z


def reference_data(ref: dict) -> pd.DataFrame:
    """The data of a reference case as R saw it: numeric columns R used as factors become
    categoricals (R's factor(): levels sorted numerically); string columns are left as they are
    (jaxhlm sorts their levels as R does)."""
    data = load_data(ref["data"]).copy()
    for col in ref.get("factors") or []:
        if col in data.columns and pd.api.types.is_numeric_dtype(data[col]):
            data[col] = pd.Categorical(data[col])
    return data


@functools.lru_cache(maxsize=None)
def fit_case(case_id: str):
    """Fit a reference case once per test session (fits are immutable)."""
    import jaxhlm

    ref = load_reference(case_id)
    data = reference_data(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxhlm.lmer(ref["formula"], data, reml=bool(ref["REML"]), name=case_id)


@pytest.fixture
def nels():
    return load_data("nels_like.csv")


@pytest.fixture
def sleepstudy():
    return load_data("sleepstudy.csv")
