"""glmer benchmark: jaxhlm against lme4 (Rscript) on the same data and formula.

Cases
-----
``verbagg``   VerbAgg (tests/data/VerbAgg.csv): 7584 binary responses, 316 subjects x 24 items crossed,
              ``r2 ~ btype + situ + mode + Anger + Gender + (1 | id) + (1 | item)``.
``sis_100k``  100,000 students in 2,000 schools, binary outcome, a student and a school predictor,
              ``pass ~ ses + sch_ses + (1 | school)`` (data simulated here, seed 1).
``power``     1,000-replicate power analysis of ``period2`` in cbpp's
              ``cbind(incidence, size - incidence) ~ period + (1 | herd)`` (jaxhlm: ``power``, every
              refit a call of the fit's compiled search; lme4: a ``simulate`` / ``refit`` loop, timed on
              ``--r-reps`` replicates and scaled to 1,000). "Compile included": the first
              ``power()`` call of a fresh process with an empty program cache, after the model's
              fit, as lme4's loop is timed after its fit.

jaxhlm's "cold" time is a fresh Python process with an empty program cache (import, design,
compile, fit); "cached" a second fresh process, whose compiled programs come from the disk
cache; "warm" a second fit in the same process. lme4's time is ``glmer`` alone
(``system.time``), R's start and data reading excluded.

Usage: ``python benchmarks/glmm_bench.py [--cases verbagg,sis_100k,power] [--r-reps 50]``;
writes benchmarks/results/glmm_bench.json (cases not run keep their earlier results).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "tests", "data")

CASES = {
    "verbagg": dict(formula="r2 ~ btype + situ + mode + Anger + Gender + (1 | id) + (1 | item)", family="binomial"),
    "sis_100k": dict(formula="pass ~ ses + sch_ses + (1 | school)", family="binomial"),
}


def sis_data(n=100_000, schools=2_000, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = rng.integers(0, schools, n)
    sch_ses = rng.normal(size=schools)
    ses = rng.normal(size=n) + 0.5 * sch_ses[school]
    eta = -0.3 + 0.6 * ses + 0.4 * sch_ses[school] + rng.normal(0, 0.8, schools)[school]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"pass": y, "ses": ses, "sch_ses": sch_ses[school], "school": school})


def _csv(case: str, folder: str) -> str:
    path = os.path.join(folder, f"{case}.csv")
    if case == "verbagg":
        pd.read_csv(os.path.join(DATA, "VerbAgg.csv")).to_csv(path, index=False)
    else:
        sis_data().to_csv(path, index=False)
    return path


_PY = """
import json, sys, time, warnings
t0 = time.perf_counter()
import pandas as pd
import jaxhlm
warnings.simplefilter("ignore")
case, path, formula = sys.argv[1], sys.argv[2], sys.argv[3]
df = pd.read_csv(path)
if case == "verbagg":
    for c in ["id", "btype", "situ", "Gender", "r2"]:
        df[c] = pd.Categorical(df[c].astype(str), categories=sorted(df[c].astype(str).unique()))
    df["mode"] = pd.Categorical(df["mode"], categories=["want", "do"])
    df["item"] = df["item"].astype(str)
else:
    df["school"] = df["school"].astype(str)
t1 = time.perf_counter()
m = jaxhlm.glmer(formula, df, family="binomial")
t2 = time.perf_counter()
m2 = jaxhlm.glmer(formula, df, family="binomial")
t3 = time.perf_counter()
print(json.dumps({"cold_s": t2 - t0, "cold_fit_s": t2 - t1, "warm_s": t3 - t2, "objective": m.objective,
                  "fixef": m.fixef.to_dict(), "theta": m.theta.to_list()}))
"""

_R_FIT = """
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(TRUE); d <- read.csv(a[2])
if (a[1] == "verbagg") {
  for (v in c("id", "btype", "situ", "Gender", "r2")) d[[v]] <- factor(d[[v]])
  d$mode <- factor(d$mode, levels = c("want", "do")); d$item <- factor(d$item)
} else d$school <- factor(d$school)
tm <- system.time(m <- glmer(as.formula(a[3]), data = d, family = binomial))[["elapsed"]]
cat(sprintf('{"lme4_s": %.6f, "objective": %.10f}\\n', tm, m@devcomp$cmp[["dev"]]))
"""

_R_POWER = """
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(TRUE); reps <- as.integer(a[2])
d <- read.csv(a[1]); d$herd <- factor(d$herd); d$period <- factor(d$period)
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = d, family = binomial)
f <- fixef(m); f["period2"] <- -0.6
tm <- system.time({
  ys <- simulate(m, nsim = reps, seed = 1, newparams = list(beta = f, theta = getME(m, "theta")))
  p <- sapply(ys, function(y) { r <- refit(m, y); coef(summary(r))["period2", 4] })
})[["elapsed"]]
cat(sprintf('{"lme4_s": %.6f, "reps": %d, "power": %.4f}\\n', tm, reps, mean(p < 0.05)))
"""

_PY_POWER = """
import json, sys, time, warnings
t0 = time.perf_counter()
import numpy as np, pandas as pd
import jaxhlm
warnings.simplefilter("ignore")
d = pd.read_csv(sys.argv[1])
d["herd"] = pd.Categorical(d["herd"].astype(str), categories=[str(v) for v in sorted(d["herd"].unique())])
d["period"] = d["period"].astype(str)
m = jaxhlm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")
t1 = time.perf_counter()
pw = m.power("period2", nsim=1000, seed=1, fixef={"period2": -0.6})
t2 = time.perf_counter()
pw2 = m.power("period2", nsim=1000, seed=2, fixef={"period2": -0.6})
t3 = time.perf_counter()
print(json.dumps({"cold_s": t2 - t0, "power_cold_s": t2 - t1, "warm_s": t3 - t2, "power": pw.power}))
"""


def _run(cmd, env=None) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{cmd[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="verbagg,sis_100k,power")
    ap.add_argument("--r-reps", type=int, default=50)
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=ROOT, JAXHLM_CACHE_DIR=os.path.join(tmp, "cache"))
        rfit = os.path.join(tmp, "fit.R")
        with open(rfit, "w") as fh:
            fh.write(textwrap.dedent(_R_FIT))
        for case in args.cases.split(","):
            if case == "power":
                path = os.path.join(DATA, "cbpp.csv")
                rp = os.path.join(tmp, "power.R")
                with open(rp, "w") as fh:
                    fh.write(_R_POWER)
                j = _run([sys.executable, "-c", _PY_POWER, path], env)
                j["cached_s"] = _run([sys.executable, "-c", _PY_POWER, path], env)["cold_s"]
                r = _run(["Rscript", rp, path, str(args.r_reps)])
                r["lme4_s_1000"] = r["lme4_s"] * 1000 / r["reps"]
                # compile included: the power call of a fresh process with an empty program cache,
                # after the model's fit (lme4's loop is timed after its fit too)
                results[case] = {"jaxhlm": j, "lme4": r, "speedup_cold": r["lme4_s_1000"] / j["cold_s"],
                                 "speedup_compile_included": r["lme4_s_1000"] / j["power_cold_s"],
                                 "speedup_cached": r["lme4_s_1000"] / j["cached_s"],
                                 "speedup_warm": r["lme4_s_1000"] / j["warm_s"]}
            else:
                path = _csv(case, tmp)
                j = _run([sys.executable, "-c", _PY, case, path, CASES[case]["formula"]], env)
                # a new process again: the compiled programs now come from the disk cache
                j["cached_s"] = _run([sys.executable, "-c", _PY, case, path, CASES[case]["formula"]], env)["cold_s"]
                r = _run(["Rscript", rfit, case, path, CASES[case]["formula"]])
                results[case] = {"jaxhlm": j, "lme4": r, "speedup_cold": r["lme4_s"] / j["cold_s"],
                                 "speedup_cached": r["lme4_s"] / j["cached_s"],
                                 "speedup_warm": r["lme4_s"] / j["warm_s"],
                                 "objective_jaxhlm_minus_lme4": j["objective"] - r["objective"]}
            res = results[case]
            if case == "power":
                print(f"power      first power() call in a fresh process, empty cache (compile included) "
                      f"{res['jaxhlm']['power_cold_s']:.2f} s vs lme4 {res['lme4']['lme4_s_1000']:.1f} s: "
                      f"{res['speedup_compile_included']:.1f}x", flush=True)
            print(f"{case:10s} jaxhlm cold {res['jaxhlm']['cold_s']:8.2f} s  warm {res['jaxhlm']['warm_s']:8.3f} s | "
                  f"lme4 {res['lme4'].get('lme4_s_1000', res['lme4']['lme4_s']):8.2f} s | speedup cold "
                  f"{res['speedup_cold']:6.1f}x cached {res['speedup_cached']:6.1f}x warm {res['speedup_warm']:7.1f}x", flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "glmm_bench.json")
    try:
        with open(path) as fh:
            merged = json.load(fh)
    except (OSError, ValueError):
        merged = {}
    merged.update(results)
    with open(path, "w") as fh:
        json.dump(merged, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
