#!/usr/bin/env python
"""Check that statsmodels' and mixedlm-rs' llf convert to lme4's objective as the harness assumes.

    python benchmarks/check_conversion.py

ML: deviance = -2 llf.  REML: lme4's REMLcrit = -2 llf (statsmodels' REML log-likelihood includes
the same constants as lme4's).  Compared with lme4's numbers in tests/data/reference on Dyestuff
(where statsmodels converges reliably) and on the nels random-slope model.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT / "tests" / "data" / "reference"
DATA = ROOT / "tests" / "data"

CHECKS = [  # reference file, data file, fixed, groups, re_formula, reml
    ("dyestuff_ml.json", "Dyestuff.csv", "Yield ~ 1", "Batch", None, False),
    ("dyestuff_reml.json", "Dyestuff.csv", "Yield ~ 1", "Batch", None, True),
    ("nels_m2.json", "nels_like.csv", "mathscore ~ family_inc", "sch_id", "~family_inc", False),
    ("nels_m2_reml.json", "nels_like.csv", "mathscore ~ family_inc", "sch_id", "~family_inc", True),
]


def main() -> int:
    warnings.simplefilter("ignore")
    tools = {}
    try:
        import statsmodels.formula.api as smf

        tools["statsmodels"] = lambda f, d, g, re: smf.mixedlm(f, d, groups=d[g], re_formula=re)
    except ImportError:
        print("statsmodels not installed")
    try:
        import mixedlm_rs

        tools["mixedlm_rs"] = lambda f, d, g, re: mixedlm_rs.MixedLM.from_formula(f, d, groups=d[g], re_formula=re)
    except ImportError:
        print("mixedlm_rs not installed")
    bad = 0
    for ref, data, fixed, g, re, reml in CHECKS:
        r = json.loads((REF / ref).read_text())
        want = r["objective_best"] if r.get("objective_best") is not None else r["objective"]
        d = pd.read_csv(DATA / data)
        for name, mk in tools.items():
            got = -2.0 * mk(fixed, d, g, re).fit(reml=reml).llf
            ok = abs(got - want) < 1e-3
            bad += not ok
            print(f"{ref:20s} {name:12s} -2 llf = {got:.6f}   lme4 {'REMLcrit' if reml else 'deviance'} = "
                  f"{want:.6f}   {'ok' if ok else 'MISMATCH'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
