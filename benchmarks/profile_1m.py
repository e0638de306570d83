#!/usr/bin/env python
"""Where the time goes in jaxhlm's fit of a 1M-row, 100k-group random-slope model.

    python benchmarks/profile_1m.py [--rows 1000000] [--groups 100000] [--intercept] [--cprofile]

Reports, for one fresh process:
* the floor: what the unavoidable passes over the data cost with numpy/pandas
  (``pd.factorize`` of the group column, X'X over [1, x, y], per-group sums via bincount);
* the first (cold) fit and a second (warm) fit, each split into phases with ``fit.timings``
  (e.g. design, sufficient statistics, optimize) when the engine provides it, and the optimizer's
  iteration count (``fit.optinfo``) when it exists;
* compile time, estimated as cold minus warm optimize time;
* with ``--cprofile``, the top functions of a warm fit by cumulative time.

It uses ``jaxhlm.lmer(..., verbose=False)`` when that keyword exists and ``fit.timings`` when it
exists, and works (with less detail) when they do not.  The persistent compilation cache goes to
a fresh temporary directory unless JAXHLM_CACHE_DIR is set, so the first fit really compiles.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

T = time.perf_counter


def fmt(s) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:9.1f} ms" if s < 10 else f"{s:9.2f} s "


def per_eval(fit, warm_ph) -> None:
    """Cost of one criterion (+ gradient) evaluation at the optimum, through engine internals.

    Best effort: uses jaxhlm._src.optim.fit.value_and_grad_theta(theta, stats, struct, reml) and
    the fit's private _fit/_stats/_struct when they exist, and says so when they do not.
    """
    try:
        import jax
        import jax.numpy as jnp
        from jaxhlm._src.optim import fit as opt

        vg = opt.value_and_grad_theta
        th = jnp.asarray(fit._fit["theta"])
        args = (th, fit._stats, fit._struct, fit.reml)
    except Exception as e:
        print(f"\n(per-evaluation timing unavailable: {type(e).__name__}: {e})")
        return
    try:
        jax.block_until_ready(vg(*args))
        ts = []
        for _ in range(5):
            t = T()
            jax.block_until_ready(vg(*args))
            ts.append(T() - t)
        ev = min(ts)
        print(f"\none value-and-gradient evaluation at the optimum: {fmt(ev)}")
        o = next((v for k, v in warm_ph.items() if "optim" in k.lower()), None)
        if o:
            print(f"warm optimize time = {o / ev:.0f} such evaluations")
    except Exception as e:
        print(f"\n(per-evaluation timing failed: {type(e).__name__}: {e})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--intercept", action="store_true", help="random intercept model instead of random slope")
    ap.add_argument("--reml", action="store_true")
    ap.add_argument("--warm-fits", type=int, default=3)
    ap.add_argument("--cprofile", action="store_true", help="cProfile one warm fit")
    args = ap.parse_args()

    if not os.environ.get("JAXHLM_CACHE_DIR"):
        os.environ["JAXHLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxhlm_profile_cache_")
    import numpy as np
    import pandas as pd

    import datagen

    formula = ("mathscore ~ family_inc + (1 | sch_id)" if args.intercept
               else "mathscore ~ family_inc + (family_inc | sch_id)")
    t0 = T()
    df = datagen.students_in_schools(args.rows, args.groups, seed=args.seed, slope=True)
    print(f"data: {len(df):,} rows, {df.sch_id.nunique():,} groups, generated in {T() - t0:.2f} s")
    print(f"model: {formula}  (REML={args.reml})\n")

    # ------------------------------------------------------------------ floor
    print("floor (numpy/pandas, best of 3):")
    def best(f, n=3):
        ts = []
        for _ in range(n):
            t = T()
            f()
            ts.append(T() - t)
        return min(ts)
    codes, uniq = pd.factorize(df["sch_id"])
    x = df["family_inc"].to_numpy(float)
    y = df["mathscore"].to_numpy(float)
    A = np.column_stack([np.ones_like(x), x, y])
    G = len(uniq)
    floor = {
        "pd.factorize(sch_id)": best(lambda: pd.factorize(df["sch_id"])),
        "X'X over [1, x, y]": best(lambda: A.T @ A),
        "per-group sums (6 bincounts)": best(lambda: [np.bincount(codes, w, minlength=G)
                                                      for w in (None, x, y, x * x, x * y, y * y)]),
    }
    for k, v in floor.items():
        print(f"  {k:32s} {fmt(v)}")
    print(f"  {'total':32s} {fmt(sum(floor.values()))}\n")

    # ------------------------------------------------------------------ jaxhlm
    t0 = T()
    try:
        import jaxhlm
        lmer = jaxhlm.lmer
    except Exception as e:
        print(f"jaxhlm is not usable yet: {type(e).__name__}: {e}")
        return 1
    print(f"import jaxhlm: {T() - t0:.2f} s   (cache dir {os.environ['JAXHLM_CACHE_DIR']})")
    try:
        import jax

        print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    except Exception:
        pass
    kw = {"reml": args.reml}
    try:
        if "verbose" in inspect.signature(lmer).parameters:
            kw["verbose"] = False
    except (TypeError, ValueError):
        pass

    def one_fit():
        t = T()
        fit = lmer(formula, data=df, **kw)
        return fit, T() - t

    def phases(fit):
        tm = getattr(fit, "timings", None)
        return {str(k): float(v) for k, v in tm.items()} if isinstance(tm, dict) else {}

    def iters(fit):
        oi = getattr(fit, "optinfo", None)
        if isinstance(oi, dict):
            return {k: oi[k] for k in ("iterations", "feval", "converged", "max_abs_grad") if k in oi}
        return {k: getattr(fit, k) for k in ("n_iter", "niter", "iterations") if hasattr(fit, k)}

    fit, cold = one_fit()
    cold_ph = phases(fit)
    print(f"\nfit 1 (cold, compiles): {cold:.3f} s   objective {fit.objective:.4f}   {iters(fit)}")
    warm_runs = []
    for _ in range(max(1, args.warm_fits)):
        fit, w = one_fit()
        warm_runs.append((w, phases(fit)))
    warm_runs.sort(key=lambda r: r[0])
    warm, warm_ph = warm_runs[len(warm_runs) // 2]
    print(f"fit 2..{len(warm_runs) + 1} (warm, median): {warm:.3f} s   {iters(fit)}")

    if cold_ph or warm_ph:
        keys = list(dict.fromkeys(list(cold_ph) + list(warm_ph)))
        print(f"\n{'phase':24s} {'cold':>12s} {'warm':>12s}")
        for k in keys:
            print(f"  {k:22s} {fmt(cold_ph.get(k))} {fmt(warm_ph.get(k))}")
        rest_c = cold - sum(cold_ph.values())
        rest_w = warm - sum(warm_ph.values())
        print(f"  {'(outside timings)':22s} {fmt(rest_c)} {fmt(rest_w)}")
        opt = next((k for k in keys if "optim" in k.lower()), None)
        if opt and opt in cold_ph and opt in warm_ph:
            print(f"\ncompile (cold - warm '{opt}'): {cold_ph[opt] - warm_ph[opt]:.3f} s")
        it = iters(fit).get("iterations")
        if opt and it:
            print(f"per optimizer iteration (warm): {warm_ph.get(opt, 0) / it * 1000:.1f} ms over {it} iterations")
    else:
        print("\n(fit.timings is not available: only totals)")
        print(f"compile + first-call overhead (cold - warm): {cold - warm:.3f} s")
    print(f"\nwarm fit / floor total: {warm / sum(floor.values()):.1f}x")
    per_eval(fit, warm_ph)

    if args.cprofile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        lmer(formula, data=df, **kw)
        pr.disable()
        print("\ncProfile of one warm fit (top 25 by cumulative time):")
        pstats.Stats(pr, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
