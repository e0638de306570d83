#!/usr/bin/env python
"""Small multi-term models (54-180 rows): warm REML fits, jaxhlm against lme4, interleaved.

    python benchmarks/small_models.py [--rounds 2]     # writes benchmarks/results/small_models.md

Each round runs jaxhlm (one process: 5 warm-up fits, then the median of 60) and lme4 (Rscript
benchmarks/small/r_small.R: 5 warm-up fits, then the median of 6 blocks of 10), per model; the
table shows the medians over rounds and the REML criteria (they must agree). Data: Orthodont and
Machines (nlme, in benchmarks/small/), Penicillin, Pastes and sleepstudy (tests/data).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time, warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL, TESTDATA = os.path.join(ROOT, "benchmarks", "small"), os.path.join(ROOT, "tests", "data")
MODELS = [
    ("orthodont_slopes", "Orthodont.csv", "distance ~ age + Sex + (age | Subject)"),
    ("orthodont_zerocorr", "Orthodont.csv", "distance ~ age * Sex + (1 | Subject) + (0 + age | Subject)"),
    ("machines_nested", "Machines.csv", "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)"),
    ("machines_3x3", "Machines.csv", "score ~ Machine + (Machine | Worker)"),
    ("penicillin_crossed", "Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes_nested", "Pastes.csv", "strength ~ 1 + (1 | batch/cask)"),
    ("sleepstudy_zerocorr", "sleepstudy.csv", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"),
]
FACTORS = ("Worker", "plate", "sample", "batch", "cask", "Subject")


def _path(fn):
    p = os.path.join(SMALL, fn)
    return p if os.path.exists(p) else os.path.join(TESTDATA, fn)


def run_jaxhlm():
    import pandas as pd
    sys.path.insert(0, ROOT)
    import jaxhlm
    warnings.simplefilter("ignore")
    out = {}
    for name, fn, f in MODELS:
        d = pd.read_csv(_path(fn))
        for c in d.columns:
            if d[c].dtype == object or c in FACTORS:
                d[c] = d[c].astype(str)
        for _ in range(5):
            m = jaxhlm.lmer(f, d)
        ts = []
        for _ in range(60):
            t = time.perf_counter(); m = jaxhlm.lmer(f, d); ts.append(time.perf_counter() - t)
        out[name] = (1e3 * float(np.median(ts)), float(m.objective), len(d))
    return out


def run_lme4():
    if shutil.which("Rscript") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as fh:
        for name, fn, f in MODELS:
            fh.write(f"{name}\t{_path(fn)}\t{f}\n")
    try:
        r = subprocess.run(["Rscript", os.path.join(SMALL, "r_small.R"), fh.name], capture_output=True, text=True,
                           timeout=900)
    finally:
        os.unlink(fh.name)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[0]] = (float(parts[1]), float(parts[2]))
    return out or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "small_models.md"))
    a = ap.parse_args()
    if os.environ.get("_SMALL_CHILD"):
        print(json.dumps(run_jaxhlm()))
        return
    rounds = []
    for _ in range(a.rounds):
        env = dict(os.environ, _SMALL_CHILD="1")
        r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=900)
        jx = json.loads(r.stdout.strip().splitlines()[-1])
        rounds.append((jx, run_lme4(), os.getloadavg()[0]))
    lines = [f"# Small multi-term models: warm REML fits (jaxhlm vs lme4)\n",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {a.rounds} interleaved rounds, 1-minute load "
             f"{min(r[2] for r in rounds):.1f}-{max(r[2] for r in rounds):.1f} on {os.cpu_count()} cores. "
             "Median ms per fit (jaxhlm: 60 fits after 5; lme4: 6 blocks of 10 after 5), medians over rounds.\n",
             "| model | rows | formula | jaxhlm | lme4 | speed-up | REML criterion jaxhlm - lme4 |", "|---|---|---|---|---|---|---|"]
    for name, fn, f in MODELS:
        j = float(np.median([r[0][name][0] for r in rounds]))
        have = all(r[1] and name in r[1] for r in rounds)
        l = float(np.median([r[1][name][0] for r in rounds])) if have else float("nan")
        gap = rounds[-1][0][name][1] - rounds[-1][1][name][1] if have else float("nan")
        fm = f.replace("|", "\\|")  # (a pipe inside a table cell)
        lines.append(f"| {name} | {rounds[-1][0][name][2]} | `{fm}` | {j:.1f} ms | "
                     f"{'%.1f ms' % l if have else 'n/a'} | {'%.1fx' % (l / j) if have else '-'} | {gap:+.1e} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
