"""Loading the lme4 glmer references of tests/data/reference_glmm (copied from
../shared/reference_glmm; README.md there defines every field) and their data as R reads them."""
from __future__ import annotations

import functools
import json
import os

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
REF = os.path.join(DATA, "reference_glmm")

with open(os.path.join(REF, "cases.json")) as _fh:
    CASES = {c["id"]: c for c in json.load(_fh)["cases"]}

GLMER_IDS = [k for k, c in CASES.items() if c["type"] == "glmer"]
ANOVA_IDS = [k for k, c in CASES.items() if c["type"] == "anova"]


@functools.lru_cache(maxsize=None)
def ref(case_id: str) -> dict:
    with open(os.path.join(REF, f"{case_id}.json")) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def _raw(name: str) -> pd.DataFrame:
    return pd.read_csv(os.path.join(DATA, name))  # pandas 3 parses doubles exactly (round trip)


def frame(case_id: str) -> pd.DataFrame:
    """The case's data with R's factor() conversions (levels sorted as R sorts them, numbers
    numerically) and the explicit level orders of ``levels``."""
    c = CASES[case_id]
    df = _raw(c["data"]).copy()
    levels = c.get("levels") or {}
    for col in set(c.get("factors") or []) | set(levels):
        if col in levels:
            cats = list(levels[col])
        else:
            vals = df[col].dropna().unique()
            cats = sorted(vals)
        df[col] = pd.Categorical(df[col].astype(str), categories=[str(v) for v in cats])
    return df


def fit_kwargs(case_id: str) -> dict:
    c = CASES[case_id]
    fam = c["family"]
    out = {"family": fam if c["link"] in ("logit", "log") else (fam, c["link"]), "nAGQ": c["nAGQ"]}
    if c.get("weights"):
        out["weights"] = c["weights"]
    return out


def best(case_id: str) -> dict:
    """The reference to hold jaxhlm to: ``tight_pirls`` (converged inner iteration), with the
    objective of the best optimum of every refit."""
    r = ref(case_id)
    t = r["tight_pirls"]
    objs = [r["objective"], t["objective"]] + [a["objective"] for a in (r.get("alt_optimizers") or {}).values()
                                               if isinstance(a, dict) and a.get("objective") is not None]
    return {"theta": np.array(list(t["theta"].values())), "beta": np.array(list(t["beta"].values())),
            "se": np.array(list(t["se"].values())), "objective": min(objs), "objective_tight": t["objective"]}


@functools.lru_cache(maxsize=None)
def fit(case_id: str):
    """jaxhlm's glmer fit of a case (once per test session); warnings recorded in ``fit_warnings``."""
    import warnings

    import jaxhlm

    c = CASES[case_id]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = jaxhlm.glmer(c["formula"], frame(case_id), **fit_kwargs(case_id), name=case_id)
    m.fit_warnings = [str(x.message) for x in w]
    return m


EXTRA = os.path.join(DATA, "reference_glmm_extra")
EXTRA_IDS = sorted(f[:-5] for f in os.listdir(EXTRA) if f.endswith(".json"))
_EXTRA_FRAMES = {"cbpp": "cbpp_cbind_laplace", "contra": "contra_ri"}


@functools.lru_cache(maxsize=None)
def ref_extra(case_id: str) -> dict:
    with open(os.path.join(EXTRA, f"{case_id}.json")) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def fit_extra(case_id: str):
    """jaxhlm's fit of an extra case (tools/reference_glmm_extra.R), once per session."""
    import warnings

    import jaxhlm

    r = ref_extra(case_id)
    fam = jaxhlm.families.Binomial(r["link"]) if r["family"] == "binomial" else jaxhlm.families.Poisson()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        return jaxhlm.glmer(r["formula"], frame(_EXTRA_FRAMES[r["data"]]), family=fam, nAGQ=r["nAGQ"])
