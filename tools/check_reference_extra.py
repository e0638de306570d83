#!/usr/bin/env python3
"""Sanity-check tests/data/reference_extra/*.json against the shared layout.

Run from the repository root:  python tools/check_reference_extra.py
Checks every case in cases.json has a JSON file that loads, carries the keys of
the corresponding shared reference type, and has internally consistent sizes.
"""
from __future__ import annotations

import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRA = os.path.join(ROOT, "tests", "data", "reference_extra")
SHARED = os.path.join(ROOT, "tests", "data", "reference")

TEMPLATES = {
    "lmer": "sleepstudy_rs_reml.json",
    "icc": "sleepstudy_icc.json",
    "anova": "nels_anova_m1_m2.json",
}


def main() -> int:
    cases = json.load(open(os.path.join(EXTRA, "cases.json")))
    data_dir = os.path.normpath(os.path.join(EXTRA, cases["data_dir"]))
    bad = 0
    for case in cases["cases"]:
        cid = case["id"]
        path = os.path.join(EXTRA, cid + ".json")
        problems = []
        if not os.path.exists(path):
            print(f"{cid}: MISSING")
            bad += 1
            continue
        d = json.load(open(path))
        tmpl = json.load(open(os.path.join(SHARED, TEMPLATES[case["type"]])))
        missing = [k for k in tmpl if k not in d]
        if missing:
            problems.append(f"missing keys {missing}")
        if d.get("id") != cid or d.get("type") != case["type"]:
            problems.append("id/type mismatch")
        if "data" in case and not os.path.exists(os.path.join(data_dir, case["data"])):
            problems.append(f"data file {case['data']} not found under {data_dir}")
        if case["type"] == "lmer":
            nb = len(d["beta"])
            if len(d["vcov"]["names"]) != nb or len(d["vcov"]["matrix"]) != nb:
                problems.append("vcov size")
            if set(d["satterthwaite"]["df"]) != set(d["beta"]):
                problems.append("satterthwaite df keys")
            if len(d["lower"]) != len(d["theta"]):
                problems.append("lower/theta length")
            exp_obj = d["REMLcrit"] if d["REML"] else d["deviance"]
            if not math.isclose(exp_obj, d["objective"]):
                problems.append("objective")
            for g, blk in d["ranef"].items():
                L = len(blk["levels"])
                for t in blk["terms"]:
                    if len(blk["values"][t]) != L or len(blk["condsd"][t]) != L:
                        problems.append(f"ranef {g}/{t} length")
                if d.get("ranef_truncated") is None and L != d["ngrps"][g]:
                    problems.append(f"ranef {g} levels {L} != ngrps {d['ngrps'][g]}")
            for k in ("bobyqa", "Nelder_Mead"):
                if "objective" not in d["alt_optimizers"].get(k, {}):
                    problems.append(f"alt optimizer {k} failed")
        size = os.path.getsize(path)
        status = "OK" if not problems else "PROBLEMS: " + "; ".join(problems)
        print(f"{cid:34s} {case['type']:6s} {size/1024:8.1f} KiB  {status}")
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
