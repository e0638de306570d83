"""Paired A/B timing of this checkout's jaxhlm against another one, in one process.

    python benchmarks/ab_inprocess.py --other /path/to/other/checkout/jaxhlm
    python benchmarks/ab_inprocess.py --other ../old/jaxhlm --cases ri_8k rs_8k --rounds 100 --block 30

On a shared machine the warm 8k-row fits (1-3 ms) drift by 30-50% within minutes, more than
the differences worth measuring between two versions, and separate processes see different
moments of that drift.  Here both versions live in one process (the other checkout's package is
copied to a temporary folder as ``jaxhlm_other``; its relative imports keep it apart from this
one) and run in alternating blocks of ``--block`` fits, the order swapped every round.  Each
round gives a ratio of the two blocks' median times; the median and quartiles of those ratios
over ``--rounds`` rounds are printed (below 1: this checkout is faster).  Both fit the same
DataFrame; their objectives are printed first.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CASES = {
    "ri_8k": "mathscore ~ family_inc + (1 | sch_id)",
    "rs_8k": "mathscore ~ family_inc + (family_inc | sch_id)",
}


def _load_other(path: str):
    """The jaxhlm package at ``path``, imported as ``jaxhlm_other``."""
    import importlib

    tmp = tempfile.mkdtemp(prefix="jaxhlm_ab_")
    shutil.copytree(path, os.path.join(tmp, "jaxhlm_other"), ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, tmp)
    return importlib.import_module("jaxhlm_other")


def _block(mod, formula, df, n) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        mod.lmer(formula, df, reml=False)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="the other version's jaxhlm package folder")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--block", type=int, default=30, help="fits per block")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    import pandas as pd

    import jaxhlm

    other = _load_other(os.path.abspath(args.other))
    warnings.simplefilter("ignore")
    df = pd.read_csv(os.path.join(ROOT, "tests", "data", "nels_like.csv"))
    print(f"this: {os.path.dirname(jaxhlm.__file__)}; other: {os.path.abspath(args.other)}; "
          f"load average {os.getloadavg()[0]:.2f}")
    for case in args.cases:
        f = CASES[case]
        mods = {"this": jaxhlm, "other": other}
        for m in mods.values():  # warm up: compile (or read the caches), interpreter caches
            for _ in range(30):
                m.lmer(f, df, reml=False)
        objs = {k: float(m.lmer(f, df, reml=False).objective) for k, m in mods.items()}
        res: dict = {"this": [], "other": []}
        for r in range(args.rounds):
            for k in (("this", "other") if r % 2 else ("other", "this")):
                res[k].append(_block(mods[k], f, df, args.block))
        ratios = sorted(a / b for a, b in zip(res["this"], res["other"]))
        n = len(ratios)
        print(f"{case}: this {1e3 * statistics.median(res['this']):.3f} ms, other "
              f"{1e3 * statistics.median(res['other']):.3f} ms (medians of {n} blocks of {args.block}); "
              f"paired this/other {statistics.median(ratios):.3f} (quartiles {ratios[n // 4]:.3f}-"
              f"{ratios[3 * n // 4]:.3f}); objectives {objs['this']:.8f} / {objs['other']:.8f}; "
              f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
