"""The benchmark cases and how each tool spells them.

Every case names its data (``nels``: tests/data/nels_like.csv itself; ``sis``: a
``datagen.students_in_schools`` design; ``three``: a ``datagen.three_level`` design;
``insteval``: tests/data/InstEval.csv), the lme4 formula (used verbatim by lme4, mixedlm and
jaxhlm), the REML flag, and the statsmodels spelling (``sm``; ``None`` where statsmodels'
MixedLM cannot express the model at a usable cost).  mixedlm-rs uses the statsmodels spelling but
fits a single grouping factor only.

``predicted_s`` holds rough per-fit seconds measured on the 2-core benchmark machine; a run whose
prediction (x the number of fits) exceeds ``--max-predicted`` seconds is skipped with a note
rather than run.
"""
from __future__ import annotations

RI = "mathscore ~ family_inc + (1 | sch_id)"
RS = "mathscore ~ family_inc + (family_inc | sch_id)"
SM_RI = {"fixed": "mathscore ~ family_inc", "groups": "sch_id", "re_formula": None}
SM_RS = {"fixed": "mathscore ~ family_inc", "groups": "sch_id", "re_formula": "~family_inc"}


def _sis(n, g, seed):
    return {"kind": "sis", "n_rows": n, "n_groups": g, "seed": seed, "slope": True}


CASES: dict[str, dict] = {
    "ri_8k": dict(
        title="random intercept, nels_like.csv", data={"kind": "nels"}, formula=RI, reml=False,
        sm=SM_RI, response="mathscore", factor_cols=["sch_id"], n=8378, groups="854", quick=True,
        predicted_s={"statsmodels": 13, "lme4": 0.1},
    ),
    "rs_8k": dict(
        title="random slope, nels_like.csv", data={"kind": "nels"}, formula=RS, reml=False,
        sm=SM_RS, response="mathscore", factor_cols=["sch_id"], n=8378, groups="854", quick=True,
        predicted_s={"statsmodels": 8, "lme4": 0.2},
    ),
    "ri_100k": dict(
        title="random intercept, 100k students", data=_sis(100_000, 10_000, 100), formula=RI,
        reml=False, sm=SM_RI, response="mathscore", factor_cols=["sch_id"], n=100_000,
        groups="10000", predicted_s={"statsmodels": 155, "lme4": 1.5},
    ),
    "rs_100k": dict(
        title="random slope, 100k students", data=_sis(100_000, 10_000, 100), formula=RS,
        reml=False, sm=SM_RS, response="mathscore", factor_cols=["sch_id"], n=100_000,
        groups="10000", predicted_s={"statsmodels": 190, "lme4": 3.5},
    ),
    "ri_1m": dict(
        title="random intercept, 1M students", data=_sis(1_000_000, 100_000, 1000), formula=RI,
        reml=False, sm=SM_RI, response="mathscore", factor_cols=["sch_id"], n=1_000_000,
        groups="100000", predicted_s={"statsmodels": 3000, "lme4": 20},
    ),
    "rs_1m": dict(
        title="random slope, 1M students", data=_sis(1_000_000, 100_000, 1000), formula=RS,
        reml=False, sm=SM_RS, response="mathscore", factor_cols=["sch_id"], n=1_000_000,
        groups="100000", predicted_s={"statsmodels": 1500, "lme4": 40},
    ),
    "insteval": dict(
        title="InstEval crossed, REML", data={"kind": "insteval"},
        formula="y ~ service + (1 | s) + (1 | d)", reml=True, sm=None, response="y",
        factor_cols=["s", "d"], n=73421, groups="2972 s x 1128 d",
        predicted_s={"lme4": 15},
        sm_note="statsmodels MixedLM has no crossed factors except as variance components inside "
        "one all-rows group (dense 73k x 4100 design per iteration); not run",
    ),
    "nested3": dict(
        title="3-level nested, REML", data={"kind": "three", "n_students": 100_000,
                                           "n_classes": 5000, "n_schools": 500, "seed": 7},
        formula="y ~ x + (1 | school/class)", reml=True,
        sm={"fixed": "y ~ x", "groups": "school", "re_formula": "1",
            "vc_formula": {"class": '0 + C(Q("class"))'}},
        response="y", factor_cols=["school", "class"], n=100_000, groups="500 schools / 5000 classes",
        predicted_s={"statsmodels": 5, "lme4": 3},
    ),
    "sim1000": dict(
        title="simulate + refit 1000 x random slope (nels)", kind="sim", data={"kind": "nels"},
        formula=RS, reml=False, sm=SM_RS, response="mathscore", factor_cols=["sch_id"], n=8378,
        groups="854", nsim=1000,
        # how many of the 1000 replicates each peer may refit (a loop also stops at --sim-budget
        # seconds; the total is extrapolated from the refits done)
        cap={"lme4": 1000, "mixedlm": 1000, "mixedlm_rs": 1000, "statsmodels": 0, "jaxhlm": 1000},
        predicted_s={"statsmodels": 8000, "lme4": 30},
    ),
}

QUICK = [k for k, v in CASES.items() if v.get("quick")]
DEFAULT = list(CASES)
