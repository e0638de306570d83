"""Loading the lmerTest / pbkrtest / emmeans references of tests/data/reference_inference (shared
cases, copied from ../shared) and tests/data/inference_extra (tools/reference_inference_extra.R),
and fitting each case once per test session."""
from __future__ import annotations

import functools
import inspect
import json
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SHARED = os.path.join(DATA, "reference_inference")
EXTRA = os.path.join(DATA, "inference_extra")


def _case_files():
    out = {}
    for folder in (SHARED, EXTRA):
        with open(os.path.join(folder, "cases.json")) as fh:
            for c in json.load(fh)["cases"]:
                if os.path.exists(os.path.join(folder, f"{c['id']}.json")):
                    out[c["id"]] = (folder, c)
    return out


CASES = _case_files()


@functools.lru_cache(maxsize=None)
def ref(case_id: str) -> dict:
    folder, _ = CASES[case_id]
    with open(os.path.join(folder, f"{case_id}.json")) as fh:
        return json.load(fh)


def ids_with(key: str) -> list:
    """Cases whose reference has a block ``key`` (a dict with a table, or a non-empty dict)."""
    out = []
    for cid in CASES:
        v = ref(cid).get(key)
        if isinstance(v, dict) and ("table" in v or (v and "skipped" not in v)):
            out.append(cid)
    return out


def _data_path(case_id: str) -> str:
    folder, case = CASES[case_id]
    name = case["data"]
    if folder == SHARED:
        return os.path.join(DATA, name)
    return os.path.normpath(os.path.join(folder, name))


def _sum_contrasts(formula: str, contrasts: dict) -> str:
    """Write R's ``contrasts = list(f = "contr.sum")`` into the formula as ``C(f, contr.sum)``
    (fixed part only; random-effect terms are left alone)."""
    lhs, rhs = formula.split("~", 1)
    bars = re.findall(r"\([^()]*\|[^()]*\)", rhs)
    protected = rhs
    for k, b in enumerate(bars):
        protected = protected.replace(b, f"@@{k}@@", 1)
    for var, kind in contrasts.items():
        if kind != "contr.sum":
            raise NotImplementedError(kind)
        protected = re.sub(rf"(?<![\w.@]){re.escape(var)}(?![\w.@])", f"C({var}, contr.sum)", protected)
    for k, b in enumerate(bars):
        protected = protected.replace(f"@@{k}@@", b)
    return f"{lhs}~{protected}"


def needs_weights(case_id: str) -> bool:
    return bool(CASES[case_id][1].get("weights"))


def lmer_has_weights() -> bool:
    import jaxhlm

    return "weights" in inspect.signature(jaxhlm.lmer).parameters


@functools.lru_cache(maxsize=None)
def data(case_id: str) -> pd.DataFrame:
    r = ref(case_id)
    d = pd.read_csv(_data_path(case_id))
    for col in r.get("factors") or []:
        if col in d.columns and pd.api.types.is_numeric_dtype(d[col]):
            d[col] = pd.Categorical(d[col])
    return d


@functools.lru_cache(maxsize=None)
def fit(case_id: str):
    """The case fitted with jaxhlm (skips weighted cases while lmer has no weights=)."""
    import jaxhlm

    _, case = CASES[case_id]
    r = ref(case_id)
    formula = r.get("py_formula") or case.get("py_formula") or r["formula"]
    if r.get("contrasts") or case.get("contrasts"):
        formula = _sum_contrasts(formula, r.get("contrasts") or case.get("contrasts"))
    kwargs = {}
    if needs_weights(case_id):
        if not lmer_has_weights():
            pytest.skip("lmer has no weights= yet")
        kwargs["weights"] = case["weights"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxhlm.lmer(formula, data(case_id), reml=bool(r["REML"]), name=case_id, **kwargs)


def table(block: dict) -> pd.DataFrame:
    """A reference table (``rownames`` + columns, ``null`` = NA) as a DataFrame."""
    t = dict(block["table"])
    rn = t.pop("rownames", None)
    df = pd.DataFrame({k: [np.nan if v is None else v for v in vals] if isinstance(vals, list) else vals
                       for k, vals in t.items()})
    if rn is not None:
        df.index = rn
    return df


def num(x) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in x], dtype=float)
