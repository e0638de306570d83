"""The benchmark cases and how each tool spells them.

Every case names its data (``nels``: tests/data/nels_like.csv itself; ``sis``: a
``datagen.students_in_schools`` design; ``three``: a ``datagen.three_level`` design;
``insteval``: tests/data/InstEval.csv; ``kb07``: a ``datagen.kb07_like`` design; ``movielens``: a
``datagen.movielens_like`` design), the lme4 formula (used verbatim by lme4, mixedlm and jaxhlm),
the REML flag, the statsmodels spelling (``sm``; ``None`` where statsmodels' MixedLM cannot
express the model at a usable cost, with the reason in ``sm_note``) and, where lme-python's
formula parser needs another spelling of the same model, ``lp`` (``formula`` plus ``derived``
product columns computed before the clock starts; ``None``: not expressible, ``lp_note`` says
why).  mixedlm-rs uses the statsmodels spelling but fits a single grouping factor only.

``predicted_s`` holds rough per-fit seconds measured on the 2-core benchmark machine; a peer run
whose prediction exceeds ``--max-predicted`` seconds is skipped with a note rather than run.
``timeout_s`` caps one tool's subprocess on a case below ``--timeout`` (a tool known to be slow
there is stopped and reported as a timeout rather than holding up the run); ``max_rounds`` caps
``--rounds`` for a case.
"""
from __future__ import annotations

RI = "mathscore ~ family_inc + (1 | sch_id)"
RS = "mathscore ~ family_inc + (family_inc | sch_id)"
SM_RI = {"fixed": "mathscore ~ family_inc", "groups": "sch_id", "re_formula": None}
SM_RS = {"fixed": "mathscore ~ family_inc", "groups": "sch_id", "re_formula": "~family_inc"}

# kb07: lme4/mixedlm/jaxhlm read the three-way factorial as written; lme-python's parser has no
# a*b*c or a:b:c, so it gets the two-way products spelled out and the three-way product as a
# precomputed column (the same model matrix column for +-0.5-coded numeric predictors)
KB07_FIXED = "y ~ 1 + spkr*prec*load"
LP_KB07_FIXED = "y ~ 1 + spkr + prec + load + spkr:prec + spkr:load + prec:load + spkr_prec_load"
LP_KB07_DERIVED = {"spkr_prec_load": ["spkr", "prec", "load"]}
SM_CROSSED = ("statsmodels MixedLM has no crossed factors except as variance components inside one "
              "all-rows group (a dense n x (levels) design per iteration); not run")


def _kb07():
    return {"kind": "kb07", "n_subj": 56, "n_item": 32, "n_rep": 3, "seed": 7}


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
        predicted_s={"lme4": 15, "lme_python": 100},
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
        cap={"lme4": 1000, "mixedlm": 1000, "mixedlm_rs": 1000, "statsmodels": 0, "jaxhlm": 1000,
             "lme_python": 1000},
        predicted_s={"statsmodels": 8000, "lme4": 30},
    ),
    # ---- crossed designs (added with the --load / --pin / --rounds modes)
    "kb07": dict(
        title="kb07-shaped crossed, maximal 4x4 per factor, ML", data=_kb07(),
        formula=KB07_FIXED + " + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)",
        reml=False, sm=None, sm_note=SM_CROSSED, response="y", factor_cols=["subj", "item"],
        lp={"formula": LP_KB07_FIXED + " + (1 + spkr + prec + load | subj) + (1 + spkr + prec + load | item)",
            "derived": LP_KB07_DERIVED},
        n=5376, groups="56 subj x 32 item", predicted_s={"lme4": 18, "mixedlm": 19, "lme_python": 15},
    ),
    "kb07_zc": dict(
        title="kb07-shaped crossed, uncorrelated (||), ML", data=_kb07(),
        formula=KB07_FIXED + " + (1 + spkr + prec + load || subj) + (1 + spkr + prec + load || item)",
        reml=False, sm=None, sm_note=SM_CROSSED, response="y", factor_cols=["subj", "item"],
        # lme-python rejects "(1 + x || g)" but reads "(x || g)", which includes the intercept
        lp={"formula": LP_KB07_FIXED + " + (spkr + prec + load || subj) + (spkr + prec + load || item)",
            "derived": LP_KB07_DERIVED},
        n=5376, groups="56 subj x 32 item", predicted_s={"lme4": 3.5, "mixedlm": 3.5, "lme_python": 2},
    ),
    "insteval_dept": dict(
        title="InstEval crossed + dept, REML", data={"kind": "insteval"},
        formula="y ~ service + (1 | s) + (1 | d) + (1 | dept)", reml=True, sm=None, response="y",
        sm_note=SM_CROSSED, factor_cols=["s", "d", "dept"], n=73421, groups="2972 s x 1128 d x 14 dept",
        # lme-python: no result within 300 s here (and 102 s without (1 | dept))
        predicted_s={"lme4": 40, "mixedlm": 35, "lme_python": 300},
    ),
    "movielens": dict(
        title="MovieLens-shaped crossed, 1M ratings, ML", data={"kind": "movielens", "n_rows": 1_000_000,
                                                             "n_users": 20_000, "n_items": 2_000, "seed": 11},
        formula="y ~ 1 + (1 | user) + (1 | item)", reml=False, sm=None, sm_note=SM_CROSSED,
        response="y", factor_cols=["user", "item"], n=1_000_000, groups="20000 user x 2000 item",
        # slow peers are run but capped (mixedlm gave no result within 300 s when measured)
        timeout_s={"lme4": 420, "mixedlm": 300, "lme_python": 300},
        max_rounds=1,  # one round even under --rounds: the capped peers would spend ~20 minutes a round
    ),
}

QUICK = [k for k, v in CASES.items() if v.get("quick")]
DEFAULT = list(CASES)
CROSSED = ["kb07", "kb07_zc", "insteval_dept", "movielens"]
