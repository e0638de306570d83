#!/usr/bin/env python
"""jaxhlm benchmark harness: jaxhlm against lme4, statsmodels, mixedlm, mixedlm-rs and lme-python.

    python benchmarks/run.py                 # every case (well over an hour on 2 cores)
    python benchmarks/run.py --quick         # only the 8k-row nels cases
    python benchmarks/run.py --cases rs_100k insteval --repeats 3 --no-r
    python benchmarks/run.py --crossed --rounds 2 --load 2 --pin   # crossed designs, under load, pinned

Run conditions (recorded in results.json ``meta.mode`` and each case's ``mode``, and stated in
the tables): ``--load N`` keeps N CPU-bound busy processes running for the whole run;
``--pin`` runs every tool's process on one core with one BLAS/OpenMP/rayon thread;
``--rounds R`` runs the tools R times per case interleaved (A, B, A, B) and reports medians over
the rounds.  The 1-minute load average is sampled every 5 s and reported per case.

Every tool runs each case in its own fresh subprocess (runners/pyrunner.py, runners/lme4_bench.R)
under a timeout; only the fitting calls are timed, data loading and imports are not.  Peak memory
is the subprocess's ru_maxrss (os.wait4).  A tool that is missing, cannot express a case, errors
or times out is reported in the tables and notes, never a crash of the harness.

jaxhlm is timed three ways per case:
* cold, cache empty: the first fit in a fresh process whose JAXHLM_CACHE_DIR is a new empty dir;
* cold, cache warm: the first fit in a second fresh process sharing that cache dir;
* warm: the median of the further fits in that second process.
Peers report the median of their fits after the first (the first alone when only one ran), and
their first fit in a fresh process for the cold-start table.

Every tool's objective (ML deviance, or lme4's REML criterion, on lme4's scale) is compared with
the best any tool reached on the case; a gap over 1e-2 is flagged: a faster wrong answer is not a
win.  Results go to benchmarks/results/results.md and results.json and are printed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import cases as C  # noqa: E402
import datagen  # noqa: E402
import loadmode as LM  # noqa: E402

TOOLS = ["jaxhlm", "lme4", "statsmodels", "mixedlm", "mixedlm_rs", "lme_python"]
PEERS = TOOLS[1:]
LABEL = {"jaxhlm": "jaxhlm", "lme4": "lme4", "statsmodels": "statsmodels", "mixedlm": "mixedlm",
         "mixedlm_rs": "mixedlm-rs", "lme_python": "lme-python"}
# run conditions, set by main(): --pin core (None: not pinned) and the extra environment
COND: dict = {"pin_core": None, "env": {}}
TOL = 1e-2
T_START = time.monotonic()  # reset by main(); --deadline counts from it
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
REFERENCE = {"ri_8k": "nels_m1.json", "rs_8k": "nels_m2.json"}


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- data
def _datagen_hash() -> str:
    return hashlib.sha1((HERE / "datagen.py").read_bytes()).hexdigest()[:8]


def _find(name: str) -> Path:
    for p in (ROOT / "tests" / "data" / name, ROOT.parent / "shared" / "data" / name):
        if p.exists():
            return p
    raise FileNotFoundError(f"{name} not found in tests/data or ../shared/data")


def data_path(spec: dict) -> Path:
    kind = spec["kind"]
    if kind == "nels":
        return _find("nels_like.csv")
    if kind == "insteval":
        return _find("InstEval.csv")
    DATA_DIR.mkdir(exist_ok=True)
    h = _datagen_hash()
    if kind == "sis":
        p = DATA_DIR / f"sis_{spec['n_rows']}_{spec['n_groups']}_s{spec['seed']}_{h}.csv"
        if not p.exists():
            log(f"  generating {p.name}")
            df = datagen.students_in_schools(spec["n_rows"], spec["n_groups"], spec["seed"],
                                             slope=spec.get("slope", True))
            df.to_csv(str(p) + ".part", index=False)
            os.replace(str(p) + ".part", p)
        return p
    if kind == "three":
        p = DATA_DIR / (f"three_{spec['n_students']}_{spec['n_classes']}_{spec['n_schools']}"
                        f"_s{spec['seed']}_{h}.csv")
        if not p.exists():
            log(f"  generating {p.name}")
            df = datagen.three_level(spec["n_students"], spec["n_classes"], spec["n_schools"],
                                     spec["seed"])
            df.to_csv(str(p) + ".part", index=False)
            os.replace(str(p) + ".part", p)
        return p
    if kind == "kb07":
        p = DATA_DIR / f"kb07_{spec['n_subj']}_{spec['n_item']}_{spec['n_rep']}_s{spec['seed']}_{h}.csv"
        if not p.exists():
            log(f"  generating {p.name}")
            df = datagen.kb07_like(spec["n_subj"], spec["n_item"], spec["n_rep"], spec["seed"])
            df.to_csv(str(p) + ".part", index=False)
            os.replace(str(p) + ".part", p)
        return p
    if kind == "movielens":
        p = DATA_DIR / f"movielens_{spec['n_rows']}_{spec['n_users']}_{spec['n_items']}_s{spec['seed']}_{h}.csv"
        if not p.exists():
            log(f"  generating {p.name}")
            df = datagen.movielens_like(spec["n_rows"], spec["n_users"], spec["n_items"], spec["seed"])
            df.to_csv(str(p) + ".part", index=False)
            os.replace(str(p) + ".part", p)
        return p
    raise ValueError(f"unknown data kind {kind!r}")


def sim_responses(nsim: int, dpath: Path) -> tuple[Path, int]:
    import pandas as pd

    DATA_DIR.mkdir(exist_ok=True)
    p = DATA_DIR / f"simY_{dpath.stem}_{nsim}_s1_{_datagen_hash()}.f64"
    df = pd.read_csv(dpath)
    if not p.exists():
        log(f"  generating {p.name}")
        Y = datagen.simulate_random_slope(df, nsim, seed=1)
        Y.T.astype("<f8").tofile(str(p) + ".part")  # replicate-major: column j is contiguous
        os.replace(str(p) + ".part", p)
    return p, len(df)


# ----------------------------------------------------------------------------- availability
_AVAIL: dict[str, tuple[bool, str]] = {}


def _py_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("JAXHLM_NO_CACHE", None)
    env.update(COND["env"])
    if extra:
        env.update(extra)
    return env


def available(tool: str) -> tuple[bool, str]:
    if tool in _AVAIL:
        return _AVAIL[tool]
    ok, why = True, ""
    try:
        if tool == "lme4":
            if not shutil.which("Rscript"):
                ok, why = False, "Rscript not found"
            else:
                r = subprocess.run(["Rscript", "-e", "suppressMessages({library(lme4); library(jsonlite);"
                                    " library(data.table)})"], capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    ok, why = False, "R packages lme4/jsonlite/data.table not loadable: " + r.stderr.strip()[-200:]
        elif tool == "jaxhlm":
            r = subprocess.run([sys.executable, "-c", "import jaxhlm; jaxhlm.lmer"], capture_output=True,
                               text=True, timeout=300, cwd=ROOT, env=_py_env())
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["?"])[-1]
                ok, why = False, f"`import jaxhlm; jaxhlm.lmer` fails ({last[:200]})"
        else:
            mod = {"statsmodels": "statsmodels", "mixedlm": "mixedlm", "mixedlm_rs": "mixedlm_rs",
                   "lme_python": "lme_python"}[tool]
            if importlib.util.find_spec(mod) is None:
                ok, why = False, f"python package {mod} not installed"
    except Exception as e:  # a broken tool is reported, not fatal
        ok, why = False, f"availability check failed: {e!r}"
    _AVAIL[tool] = (ok, why)
    return ok, why


# ----------------------------------------------------------------------------- subprocesses
def run_proc(cmd: list[str], env: dict, timeout: float, logfile: Path) -> dict:
    """Run cmd in its own process group; return rc, wall time, peak RSS (MB), timed_out.

    Under ``--pin`` the child is restricted to one core before it starts (COND["pin_core"]).
    """
    t0 = time.monotonic()
    core = COND["pin_core"]
    with open(logfile, "w") as lf:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=lf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=LM.pin_preexec(core) if core is not None else None)
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if time.monotonic() - t0 > timeout:
                timed_out = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": time.monotonic() - t0,
            "peak_rss_mb": ru.ru_maxrss / 1024.0, "timed_out": timed_out,
            "cpu_s": ru.ru_utime + ru.ru_stime}


def run_tool(tool: str, spec: dict, workdir: Path, timeout: float, env_extra: dict | None = None,
             tag: str = "") -> dict:
    name = f"{spec['case']}_{tool}{tag}"
    spec_path = workdir / f"{name}.spec.json"
    out_path = workdir / f"{name}.out.json"
    log_path = workdir / f"{name}.log"
    spec_path.write_text(json.dumps(spec, indent=1))
    if tool == "lme4":
        cmd = ["Rscript", str(HERE / "runners" / "lme4_bench.R"), str(spec_path), str(out_path)]
    else:
        cmd = [sys.executable, str(HERE / "runners" / "pyrunner.py"), tool, str(spec_path), str(out_path)]
    proc = run_proc(cmd, _py_env(env_extra), timeout, log_path)
    res: dict
    if out_path.exists():
        try:
            res = json.loads(out_path.read_text())
        except Exception as e:
            res = {"status": "error", "error": f"unreadable result: {e!r}"}
    elif proc["timed_out"]:
        res = {"status": "timeout", "error": f"no result within the {timeout:.0f} s timeout "
               f"({proc['cpu_s']:.0f} CPU s used, peak {proc['peak_rss_mb']:.0f} MB)"}
    else:
        tail = log_path.read_text(errors="replace")[-600:] if log_path.exists() else ""
        res = {"status": "error", "error": f"exit code {proc['rc']} without a result: {tail}"}
    if proc["timed_out"] and res.get("status") == "ok":
        res["status"] = "timeout"
    # cpu_s: the process's user + system CPU time, imports and data loading included; with
    # wall_s it shows how much of the cores a run got on a loaded machine
    res.update({"peak_rss_mb": proc["peak_rss_mb"], "wall_s": proc["wall_s"], "cpu_s": proc["cpu_s"]})
    if isinstance(res.get("notes"), str):
        res["notes"] = [res["notes"]]
    for k in ("times_s", "objectives"):  # R's toJSON writes a length-1 vector as a scalar
        if isinstance(res.get(k), (int, float)):
            res[k] = [res[k]]
    res.setdefault("notes", [])
    return res


def _median_after_first(times) -> float | None:
    if not times:
        return None
    if isinstance(times, (int, float)):
        return float(times)
    times = [float(t) for t in times]
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


# ----------------------------------------------------------------------------- one case
def base_spec(cid: str, case: dict, dpath: Path, args) -> dict:
    return {
        "case": cid, "kind": case.get("kind", "fit"), "data": str(dpath), "formula": case["formula"],
        "reml": bool(case["reml"]), "sm": case.get("sm"), "response": case["response"],
        "factor_cols": case.get("factor_cols", []), "repeats": args.repeats,
        "time_budget_s": args.time_budget, "lp": case.get("lp", {"formula": case["formula"]}),
        "lp_note": case.get("lp_note"),
    }


def predicted_cost(tool: str, case: dict, args) -> float | None:
    p = case.get("predicted_s", {}).get(tool)
    if p is None:
        return None
    if case.get("kind") == "sim":
        return float(p)
    return float(p)  # at least one fit; further fits stop at the time budget


def _not_runnable(tool: str, case: dict, args) -> tuple[str, str] | None:
    """(status, reason) when ``tool`` is not run on ``case`` at all, else None."""
    ok, why = available(tool)
    if not ok:
        return "missing", why
    if tool == "mixedlm_rs" and (case.get("sm") is None or case["sm"].get("vc_formula")):
        return "unsupported", ("mixedlm-rs fits a single grouping factor only (no crossed or nested "
                               "factors, no vc_formula)")
    if tool == "statsmodels" and case.get("sm") is None:
        return "unsupported", case.get("sm_note", "case not expressible in the statsmodels API")
    if tool == "lme_python" and "lp" in case and case["lp"] is None:
        return "unsupported", case.get("lp_note") or "case not expressible in lme-python"
    pred = predicted_cost(tool, case, args)
    if pred is not None and pred > args.max_predicted and tool != "jaxhlm":
        return "skipped", (f"predicted ~{pred:.0f} s on this machine, over --max-predicted "
                           f"{args.max_predicted:.0f} s")
    return None


def run_case(cid: str, args, workdir: Path, sampler: "LM.LoadSampler | None" = None) -> dict:
    """Run every tool on one case, ``--rounds`` times interleaved (A, B, A, B), and check them."""
    case = C.CASES[cid]
    log(f"\n== {cid}: {case['title']}  [{case['formula']}, REML={case['reml']}]")
    t_case = time.monotonic()
    dpath = data_path(case["data"])
    out = {"title": case["title"], "formula": case["formula"], "reml": case["reml"],
           "kind": case.get("kind", "fit"), "n": case["n"], "groups": case["groups"],
           "data": str(dpath.relative_to(ROOT) if dpath.is_relative_to(ROOT) else dpath), "tools": {},
           "load_avg_start": LM.loadavg(), "mode": dict(COND.get("mode", {}))}
    spec0 = base_spec(cid, case, dpath, args)
    if out["kind"] == "sim":
        nsim = int(args.nsim or case["nsim"])
        ypath, nobs = sim_responses(nsim, dpath)
        spec0["sim"] = {"y_path": str(ypath), "nobs": nobs, "nsim": nsim, "seed": 1, "cap": 0}
        out["nsim"] = spec0["sim"]["nsim"]

    specs: dict[str, dict] = {}
    for tool in args.tools:
        why = _not_runnable(tool, case, args)
        if why:
            out["tools"][tool] = {"status": why[0], "error": why[1]}
            if why[0] == "skipped":
                out["tools"][tool]["predicted_s"] = predicted_cost(tool, case, args)
            log(f"  {LABEL[tool]:12s} {why[0]}: {why[1]}")
            continue
        spec = dict(spec0)
        if out["kind"] == "sim":
            spec["sim"] = dict(spec0["sim"])
            cap = case.get("cap", {}).get(tool, spec["sim"]["nsim"])
            if args.sim_cap is not None and tool != "jaxhlm":
                cap = min(cap, args.sim_cap) if cap else args.sim_cap
            spec["sim"]["cap"] = min(int(cap), spec["sim"]["nsim"])
            spec["sim"]["budget_s"] = None if tool == "jaxhlm" else args.sim_budget
            spec["repeats"] = args.repeats if tool == "jaxhlm" else 1
            if spec["sim"]["cap"] <= 0:
                pred = predicted_cost(tool, case, args)
                out["tools"][tool] = {"status": "skipped", "error": "refit loop predicted to take "
                                      f"~{pred or float('nan'):.0f} s"}
                log(f"  {LABEL[tool]:12s} skipped (refit loop too slow)")
                continue
        specs[tool] = spec

    rounds = 1 if out["kind"] == "sim" else max(1, min(int(args.rounds), int(case.get("max_rounds", args.rounds))))
    per_round: dict[str, list[dict]] = {t: [] for t in specs}
    for rnd in range(rounds):
        for tool, spec in specs.items():
            if args.deadline and time.monotonic() - T_START > args.deadline:
                if not per_round[tool]:
                    per_round[tool].append({"status": "skipped", "error": f"run deadline of {args.deadline:.0f} s "
                                            "reached before this tool ran", "notes": []})
                log(f"  {LABEL[tool]:12s} round {rnd + 1}: not started (--deadline {args.deadline:.0f} s)")
                continue
            timeout = min(args.timeout, float(case.get("timeout_s", {}).get(tool, args.timeout)))
            t_start = time.monotonic()
            load_before = LM.loadavg()
            if tool == "jaxhlm":
                res = run_jaxhlm(spec, workdir, args, timeout, tag=f"_r{rnd}")
            else:
                res = run_tool(tool, spec, workdir, timeout, tag=f"_r{rnd}")
                if res.get("status") == "ok":
                    res["median_s"] = _median_after_first(res.get("times_s"))
            res["load_avg"] = [load_before, LM.loadavg()]
            if sampler is not None:
                res["load_avg_run"] = sampler.summary(t_start)
            per_round[tool].append(res)
            tag = f" [round {rnd + 1}/{rounds}]" if rounds > 1 else ""
            log("  " + _progress_line(tool, res, time.monotonic() - t_start) + tag)
    for tool, results in per_round.items():
        out["tools"][tool] = combine_rounds(tool, results) if len(results) > 1 else results[0]
    out["rounds"] = rounds
    out["load_avg_end"] = LM.loadavg()
    if sampler is not None:
        out["load_avg"] = sampler.summary(t_case)
    out["wall_s"] = time.monotonic() - t_case
    out["check"] = objective_check(cid, out)
    return out


def combine_rounds(tool: str, results: list[dict]) -> dict:
    """One tool's interleaved rounds on a case, summarised.

    Per-fit time: the median over all rounds of the fits after the first in each process (a
    round with a single fit contributes that fit); first fit / cold times: the median over
    rounds.  Objective: the *worst* any fit reached (so a tool that only sometimes falls short
    is flagged), with the spread over all fits in ``objective_spread``.  Peak memory: the max.
    """
    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        res = dict(results[-1])
        res["rounds"] = [_round_summary(r) for r in results]
        return res
    res = dict(ok[-1])
    res["rounds"] = [_round_summary(r) for r in results]
    warm = []
    for r in ok:
        t = [float(x) for x in (r.get("times_s") or [])]
        warm += t[1:] if len(t) > 1 else t
    res["median_s"] = statistics.median(warm) if warm else None
    res["times_s"] = [x for r in ok for x in (r.get("times_s") or [])]
    for k in ("first_s", "cold_nocache_s", "cold_cache_s"):
        vals = [r[k] for r in ok if isinstance(r.get(k), (int, float))]
        res[k] = statistics.median(vals) if vals else None
    extra = []
    objs = [float(o) for r in ok for o in (r.get("objectives") or [r.get("objective")])
            if isinstance(o, (int, float)) and math.isfinite(o)]
    if objs:
        res["objective"] = max(objs)
        res["objective_spread"] = max(objs) - min(objs)
        if res["objective_spread"] > TOL:
            extra.append(f"objective varied by {res['objective_spread']:.3g} over the rounds' fits; "
                         "the worst is reported")
    res["peak_rss_mb"] = max(r.get("peak_rss_mb") or 0 for r in results)
    res["cpu_s"] = sum(r.get("cpu_s") or 0 for r in results)
    res["load_avg"] = [la for r in results for la in (r.get("load_avg") or [])]
    bad = [r for r in results if r.get("status") != "ok"]
    if bad:
        extra.append(f"{len(bad)} of {len(results)} rounds {bad[0].get('status')}: "
                     f"{str(bad[0].get('error'))[:150]}")
    res["notes"] = list(dict.fromkeys([n for r in results for n in r.get("notes", [])] + extra))
    return res


def _round_summary(r: dict) -> dict:
    keys = ("status", "error", "first_s", "median_s", "times_s", "objective", "cold_nocache_s",
            "cold_cache_s", "peak_rss_mb", "load_avg", "load_avg_run", "wall_s", "cpu_s")
    return {k: r[k] for k in keys if k in r}


def run_jaxhlm(spec: dict, workdir: Path, args, timeout: float | None = None, tag: str = "") -> dict:
    timeout = args.timeout if timeout is None else timeout
    cache = tempfile.mkdtemp(prefix="jaxhlm_cache_", dir=workdir)
    env = {"JAXHLM_CACHE_DIR": cache}
    cold_spec = dict(spec, repeats=1)
    cold = run_tool("jaxhlm", cold_spec, workdir, timeout, env, tag=tag + "_cold")
    warm_spec = dict(spec, repeats=spec["repeats"] + 1, min_fits=2)  # >= 1 fit after the first
    warm = run_tool("jaxhlm", warm_spec, workdir, timeout, env, tag=tag + "_warm")
    res = dict(warm) if warm.get("status") == "ok" else dict(cold)
    res["cold"] = cold
    res["cold_nocache_s"] = cold.get("first_s") if cold.get("status") == "ok" else None
    res["cold_cache_s"] = warm.get("first_s") if warm.get("status") == "ok" else None
    if warm.get("status") == "ok":
        res["median_s"] = _median_after_first(warm.get("times_s"))
    elif cold.get("status") == "ok":
        res["median_s"] = None
        res["notes"] = list(res.get("notes", [])) + [f"warm run failed: {warm.get('error')}"]
    res["peak_rss_mb"] = max(cold.get("peak_rss_mb") or 0, warm.get("peak_rss_mb") or 0)
    res["cpu_s"] = (cold.get("cpu_s") or 0) + (warm.get("cpu_s") or 0)
    res["cache_dir_mb"] = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file()) / 2**20
    shutil.rmtree(cache, ignore_errors=True)
    return res


def _fmt_s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    x = float(x)
    if x < 0.01:
        return f"{x * 1000:.2f} ms"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _progress_line(tool: str, res: dict, wall: float) -> str:
    st = res.get("status")
    if st != "ok":
        return f"{LABEL[tool]:12s} {st}: {str(res.get('error'))[:300]}"
    s = f"{LABEL[tool]:12s} median {_fmt_s(res.get('median_s'))}"
    if tool == "jaxhlm":
        s += f", cold {_fmt_s(res.get('cold_nocache_s'))} (cache warm {_fmt_s(res.get('cold_cache_s'))})"
    else:
        s += f", first {_fmt_s(res.get('first_s'))}"
    if res.get("kind") == "sim" or res.get("per_refit_s") is not None:
        s += f", per refit {_fmt_s(res.get('per_refit_s'))} x{res.get('k')}"
    obj = res.get("objective")
    if obj is not None:
        s += f", objective {obj:.4f}"
    s += f", peak {res.get('peak_rss_mb', 0):.0f} MB, wall {wall:.0f} s"
    la = res.get("load_avg") or []
    if la and la[0] is not None:
        s += f", load {la[0]:.1f}->{la[-1]:.1f}"
    return s


# ----------------------------------------------------------------------------- checks
def objective_check(cid: str, out: dict) -> dict:
    objs = {t: r["objective"] for t, r in out["tools"].items()
            if r.get("status") == "ok" and isinstance(r.get("objective"), (int, float))
            and math.isfinite(r["objective"])}
    chk: dict = {"tol": TOL}
    ref = REFERENCE.get(cid)
    if ref:
        for base in (ROOT / "tests" / "data" / "reference", ROOT.parent / "shared" / "reference"):
            if (base / ref).exists():
                r = json.loads((base / ref).read_text())
                chk["lme4_reference"] = {"file": ref, "objective": r.get("objective"),
                                         "objective_best": r.get("objective_best")}
                break
    if objs:
        best = min(objs.values())
        ref_best = chk.get("lme4_reference", {}).get("objective_best")
        if isinstance(ref_best, (int, float)):
            best = min(best, ref_best)
        chk["best"] = best
        chk["gap"] = {t: v - best for t, v in objs.items()}
        chk["agree"] = {t: g <= TOL for t, g in chk["gap"].items()}
    # simulation study: the same 1000 responses were refitted by every tool
    sims = {t: r["sim_objectives"] for t, r in out["tools"].items()
            if r.get("status") == "ok" and isinstance(r.get("sim_objectives"), list) and r["sim_objectives"]}
    if sims:
        k = min(len(v) for v in sims.values())
        bests = [min(float(v[i]) for v in sims.values() if v[i] is not None) for i in range(k)]
        chk["sim_replicates_compared"] = k
        chk["sim"] = {}
        for t, v in sims.items():
            gaps = [float(v[i]) - bests[i] for i in range(k) if v[i] is not None]
            chk["sim"][t] = {"max_gap": max(gaps) if gaps else None,
                             "n_over_tol": sum(g > TOL for g in gaps), "n": len(gaps)}
    return chk


# ----------------------------------------------------------------------------- report
def _cell_time(r: dict | None) -> str:
    if not r:
        return "-"
    st = r.get("status")
    if st == "ok":
        return _fmt_s(r.get("median_s"))
    return {"missing": "missing", "unsupported": "n/a", "skipped": "skipped", "timeout": "timeout"}.get(st, "error")


def _wrong(chk: dict, tool: str) -> bool:
    return chk.get("agree", {}).get(tool) is False or chk.get("sim", {}).get(tool, {}).get("n_over_tol", 0) > 0


def mode_line(meta_or_mode: dict) -> str:
    """'quiet' / '--load N' and 'unpinned' / 'pinned to core k' for a run (or one case's mode)."""
    m = meta_or_mode.get("mode", meta_or_mode)
    parts = [f"--load {m['load']} ({m.get('load_kind', 'spin')})" if m.get("load") else "no --load"]
    parts.append(f"pinned to core {m['pinned_core']}, 1 BLAS thread" if m.get("pinned_core") is not None
                 else "unpinned")
    if (m.get("rounds") or 1) > 1:
        parts.append(f"{m['rounds']} interleaved rounds")
    return ", ".join(parts)


def _case_load(c: dict) -> str:
    """The 1-minute load average while a case ran: 'median (min-max)'."""
    la = c.get("load_avg")
    if isinstance(la, dict) and la:
        return f"{la['median']:.1f} ({la['min']:.1f}-{la['max']:.1f})"
    vals = [v for r in c.get("tools", {}).values() for v in (r.get("load_avg") or []) if v is not None]
    if not vals:
        return "-"
    return f"{statistics.median(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})"


def render_markdown(results: dict) -> str:
    meta = results["meta"]
    L: list[str] = []
    L.append("# jaxhlm benchmark results\n")
    L.append(f"{meta['date']} on {meta['cpu']} ({meta['ncpu']} cores), Python {meta['python']}. "
             f"Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(meta.get("versions", {}).items())) + ".")
    L.append(f"Command: `{meta['command']}`. Median seconds per fit (fits after the first in one process; "
             "the first alone when only one ran); only the fit is timed. `speed-up` = peer median / "
             "jaxhlm warm median. `*` = that tool's objective is worse than the best by more than 1e-2 "
             "(see the objective table): a faster wrong answer is not a win.\n")
    ml = meta.get("mode", {}).get("description") or mode_line(meta.get("mode", {"load": 0}))
    run_la = meta.get("mode", {}).get("load_avg_run") or {}
    L.append(f"Mode: **{ml}**. `load` = the 1-minute load average while the case ran, median (min-max) of "
             f"samples every 5 s, on {meta.get('ncpu')} cores" +
             (f"; whole run {run_la['median']:.1f} ({run_la['min']:.1f}-{run_la['max']:.1f})" if run_la else "") +
             ". The machine is shared: the load includes other users' work.\n")
    case_modes = {mode_line(c["mode"]) for c in results["cases"].values() if c.get("mode")}
    tools = [t for t in TOOLS if any(t in c["tools"] for c in results["cases"].values())]
    peers = [t for t in tools if t != "jaxhlm"]

    hdr = ["case", "n", "groups", "load"] + (["mode"] if len(case_modes) > 1 else [])
    if "jaxhlm" in tools:
        hdr += ["jaxhlm warm", "jaxhlm cold", "jaxhlm cold (cache)"]
    hdr += [LABEL[t] for t in peers]
    if "jaxhlm" in tools:
        hdr += [f"speed-up vs {LABEL[t]}" for t in peers]
    L.append("## Time\n")
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for cid, c in results["cases"].items():
        chk = c.get("check", {})
        row = [cid, f"{c['n']:,}", str(c["groups"]), _case_load(c)]
        if len(case_modes) > 1:
            row.append(mode_line(c["mode"]) if c.get("mode") else "?")
        jx = c["tools"].get("jaxhlm")
        if "jaxhlm" in tools:
            star = "*" if jx and _wrong(chk, "jaxhlm") else ""
            row += [_cell_time(jx) + star,
                    _fmt_s(jx.get("cold_nocache_s")) if jx and jx.get("status") == "ok" else _cell_time(jx),
                    _fmt_s(jx.get("cold_cache_s")) if jx and jx.get("status") == "ok" else _cell_time(jx)]
        for t in peers:
            r = c["tools"].get(t)
            row.append(_cell_time(r) + ("*" if r and _wrong(chk, t) else ""))
        if "jaxhlm" in tools:
            jm = jx.get("median_s") if jx and jx.get("status") == "ok" else None
            for t in peers:
                r = c["tools"].get(t)
                pm = r.get("median_s") if r and r.get("status") == "ok" else None
                if jm and pm:
                    ratio = pm / jm
                    cell = f"{ratio:.1f}x" if ratio >= 0.95 else f"{ratio:.2g}x"
                    if _wrong(chk, "jaxhlm"):
                        cell = f"({cell}, jaxhlm wrong)"
                    elif _wrong(chk, t):
                        cell += "*"
                    row.append(cell)
                else:
                    row.append("-")
        L.append("| " + " | ".join(row) + " |")

    # objectives
    L.append("\n## Objectives (ML deviance or REML criterion, lme4's scale)\n")
    L.append("Gap = objective minus the best reached by any tool (or lme4's best optimizer in "
             "tests/data/reference for the nels cases); over 1e-2 is marked **bold**.\n")
    hdr = ["case", "best"] + [LABEL[t] for t in tools]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for cid, c in results["cases"].items():
        chk = c.get("check", {})
        row = [cid, f"{chk['best']:.4f}" if "best" in chk else "-"]
        for t in tools:
            if t in chk.get("sim", {}):
                s = chk["sim"][t]
                g = s["max_gap"]
                cell = f"max {g:.2g} ({s['n_over_tol']}/{s['n']} over)" if g is not None else "-"
                row.append(f"**{cell}**" if s["n_over_tol"] else cell)
            elif t in chk.get("gap", {}):
                g = chk["gap"][t]
                cell = f"+{g:.2g}" if g > 0 else "0"
                row.append(f"**{cell}**" if g > TOL else cell)
            else:
                row.append("-")
        L.append("| " + " | ".join(row) + " |")

    # cold start / first fit
    L.append("\n## First fit in a fresh process (cold start)\n")
    hdr = ["case"] + (["jaxhlm (cache empty)", "jaxhlm (cache warm)"] if "jaxhlm" in tools else []) + \
        [LABEL[t] for t in peers]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for cid, c in results["cases"].items():
        row = [cid]
        if "jaxhlm" in tools:
            jx = c["tools"].get("jaxhlm") or {}
            row += [_fmt_s(jx.get("cold_nocache_s")), _fmt_s(jx.get("cold_cache_s"))]
        for t in peers:
            r = c["tools"].get(t) or {}
            row.append(_fmt_s(r.get("first_s")) if r.get("status") == "ok" else _cell_time(r))
        L.append("| " + " | ".join(row) + " |")

    # memory
    L.append("\n## Peak memory of each tool's process (MB, ru_maxrss; includes the interpreter and data)\n")
    hdr = ["case"] + [LABEL[t] for t in tools]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for cid, c in results["cases"].items():
        row = [cid]
        for t in tools:
            r = c["tools"].get(t) or {}
            if r.get("status") in ("ok", "timeout") and r.get("peak_rss_mb"):
                row.append(f"{r['peak_rss_mb']:.0f}" + (" (timeout)" if r["status"] == "timeout" else ""))
            else:
                row.append("-")
        L.append("| " + " | ".join(row) + " |")

    # jaxhlm phases
    rows = []
    for cid, c in results["cases"].items():
        jx = c["tools"].get("jaxhlm") or {}
        if jx.get("status") == "ok" and isinstance(jx.get("timings"), dict) and jx["timings"]:
            rows.append((cid, jx))
    if rows:
        keys = list(dict.fromkeys(k for _, jx in rows for k in jx["timings"]))
        L.append("\n## jaxhlm phases (`fit.timings` of the last warm fit)\n")
        hdr = ["case"] + keys + ["iterations", "cold (cache empty) - warm"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for cid, jx in rows:
            cold_gap = (jx["cold_nocache_s"] - jx["median_s"]
                        if jx.get("cold_nocache_s") is not None and jx.get("median_s") is not None else None)
            L.append("| " + " | ".join([cid] + [_fmt_s(jx["timings"].get(k)) for k in keys]
                                       + [str(jx.get("iterations", "-")), _fmt_s(cold_gap)]) + " |")

    # simulation details
    sims = [(cid, c) for cid, c in results["cases"].items() if c["kind"] == "sim"]
    for cid, c in sims:
        L.append(f"\n## Simulation study `{cid}`: simulate {c.get('nsim')} responses + refit all\n")
        L.append("Every tool refits the same simulated responses (benchmarks/datagen.py "
                 "`simulate_random_slope`), so replicate objectives are compared one by one; "
                 "simulate() is each tool's own. Totals of tools that refitted fewer than all "
                 "replicates are extrapolated from the per-refit time.\n")
        L.append("| tool | initial fit | simulate() | per refit | refits run | total for all |")
        L.append("|---|---|---|---|---|---|")
        for t in tools:
            r = c["tools"].get(t) or {}
            if r.get("status") != "ok":
                L.append(f"| {LABEL[t]} | {_cell_time(r)} | | | | |")
                continue
            L.append(f"| {LABEL[t]} | {_fmt_s(r.get('fit_s'))} | "
                     f"{_fmt_s(r.get('simulate_s')) if r.get('simulate_s') is not None else 'none'} | "
                     f"{_fmt_s(r.get('per_refit_s'))} | {r.get('k')} | {_fmt_s(r.get('median_s'))}"
                     f"{' (extrapolated)' if r.get('extrapolated') else ''} |")

    # notes
    L.append("\n## Notes\n")
    for cid, c in results["cases"].items():
        for t in TOOLS:
            r = c["tools"].get(t)
            if not r:
                continue
            msgs = []
            if r.get("status") != "ok":
                msgs.append(f"{r.get('status')}: {str(r.get('error'))[:300]}")
            msgs += [str(n)[:200] for n in r.get("notes", [])]
            if t == "jaxhlm" and isinstance(r.get("cold"), dict) and r["cold"].get("status") not in (None, "ok"):
                msgs.append(f"cold run {r['cold'].get('status')}: {str(r['cold'].get('error'))[:200]}")
            if r.get("status") == "ok" and r.get("converged") is False:
                msgs.append("reported converged=False")
            for m in dict.fromkeys(msgs):
                L.append(f"- `{cid}` {LABEL[t]}: {m}")
    loads = [la for c in results["cases"].values() for r in c["tools"].values()
             for la in (r.get("load_avg") or []) if la is not None]
    ncpu = meta.get("ncpu") or 1
    if loads and max(loads) > 0.75 * ncpu:
        L.append(f"- The machine was busy with other work during this run (1-minute load average up to "
                 f"{max(loads):.1f} on {ncpu} cores, median {statistics.median(loads):.1f}; per tool in "
                 "results.json `load_avg`): absolute times are inflated and noisy, compare ratios with care.")
    for n in meta.get("notes", []):
        L.append(f"- {n}")
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------------------- main
def machine_meta(args) -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except Exception:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except Exception:
        commit = "?"
    return {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "ncpu": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(), "git_commit": commit,
            "command": "python benchmarks/run.py " + " ".join(args.argv), "notes": [], "versions": {},
            "mode": {"load": args.load, "load_kind": args.load_kind, "pinned_core": None, "rounds": args.rounds,
                     "thread_env": {}}}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the 8k-row nels cases")
    ap.add_argument("--crossed", action="store_true",
                    help=f"only the crossed-design cases ({', '.join(C.CROSSED)})")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="start N CPU-bound busy processes for the whole run (default 0: none)")
    ap.add_argument("--load-kind", choices=["spin", "matmul"], default="spin",
                    help="busy processes: pure-Python loops (spin, default) or numpy matmul loops")
    ap.add_argument("--pin", nargs="?", type=int, const=-1, default=None, metavar="CORE",
                    help="run each tool's process on one core (os.sched_setaffinity; default core: the "
                    "last one allowed) with 1 BLAS/OpenMP/rayon thread")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the tools this many times per case, interleaved (A, B, A, B); medians are "
                    "over all rounds (default 1)")
    ap.add_argument("--deadline", type=float, default=None, metavar="S",
                    help="start no tool run after S seconds of the whole run (later ones are reported "
                    "as skipped)")
    ap.add_argument("--cases", nargs="+", metavar="CASE",
                    help=f"cases to run (default: all): {', '.join(C.CASES)}")
    ap.add_argument("--tools", nargs="+", choices=TOOLS, default=TOOLS, help="tools to run (default: all)")
    ap.add_argument("--no-r", action="store_true", help="do not run lme4")
    ap.add_argument("--repeats", type=int, default=5, help="fits per tool per case (default 5; slow tools "
                    "stop early at --time-budget)")
    ap.add_argument("--time-budget", type=float, default=45.0,
                    help="stop repeating a tool's fits once they total this many seconds (default 45)")
    ap.add_argument("--max-predicted", type=float, default=150.0,
                    help="skip peer runs predicted to take longer than this many seconds (default 150)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-subprocess timeout, s (default 600)")
    ap.add_argument("--nsim", type=int, default=None, help="replicates in the simulation study (default 1000)")
    ap.add_argument("--sim-cap", type=int, default=None,
                    help="at most this many refits per peer in the simulation study (rest extrapolated)")
    ap.add_argument("--sim-budget", type=float, default=90.0,
                    help="a peer's refit loop in the simulation study stops after this many seconds "
                    "(at least 20 refits; the rest extrapolated; default 90)")
    ap.add_argument("--update", action="store_true",
                    help="keep the other cases of an existing results.json and replace only those run now")
    ap.add_argument("--out", default=str(RESULTS_DIR), help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    args.argv = argv
    if args.cases:
        names = []
        for c in args.cases:
            names += [x for x in c.split(",") if x]
        bad = [c for c in names if c not in C.CASES]
        if bad:
            ap.error(f"unknown case(s) {bad}; known: {list(C.CASES)}")
        args.cases = names
    else:
        args.cases = C.QUICK if args.quick else C.CROSSED if args.crossed else C.DEFAULT
    if args.no_r:
        args.tools = [t for t in args.tools if t != "lme4"]
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"meta": machine_meta(args), "cases": {}}
    if args.pin is not None:
        COND["pin_core"] = LM.pick_core(args.pin)
        COND["env"] = LM.pin_env(1)
        results["meta"]["mode"].update(pinned_core=COND["pin_core"], thread_env=COND["env"])
    COND["mode"] = {k: results["meta"]["mode"][k] for k in ("load", "load_kind", "pinned_core", "rounds")}
    order = list(C.CASES)
    if args.update and (out_dir / "results.json").exists():
        # re-run only the chosen cases; keep the others from the previous results (in case order)
        prev = json.loads((out_dir / "results.json").read_text())
        prev_cases = {k: v for k, v in prev.get("cases", {}).items() if k not in args.cases}
        results["meta"]["notes"].append(
            f"updated: cases {', '.join(args.cases)} re-run {results['meta']['date']} at commit "
            f"{results['meta']['git_commit']}; the others are from the run of {prev['meta'].get('date')} "
            f"at commit {prev['meta'].get('git_commit')} (`{prev['meta'].get('command')}`)")
        results["meta"]["notes"] += [n for n in prev["meta"].get("notes", []) if n.startswith("updated:")]
        results["meta"]["versions"].update(prev["meta"].get("versions", {}))
        results["cases"] = prev_cases
    global T_START
    T_START = t0 = time.monotonic()
    load = LM.CompetingLoad(args.load, args.load_kind)
    sampler = LM.LoadSampler(5.0).start()
    results["meta"]["mode"]["load_avg_before"] = LM.loadavg()
    results["meta"]["mode"]["description"] = mode_line(results["meta"])
    log(f"jaxhlm benchmarks: cases {args.cases}; tools {args.tools}; {mode_line(results['meta'])}")
    try:
        load.start()
        _run_all(args, results, out_dir, order, t0, sampler, load)
    finally:
        load.stop()
        sampler.stop()
    results["meta"]["mode"]["load_avg_run"] = sampler.summary(t0)
    for t, (ok, why) in _AVAIL.items():
        if not ok:
            results["meta"]["notes"].append(f"{LABEL[t]} not run: {why}")
    results["meta"]["elapsed_s"] = time.monotonic() - t0
    md = render_markdown(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "results.md").write_text(md)
    log("\n" + md)
    log(f"total {results['meta']['elapsed_s']:.0f} s; wrote {out_dir / 'results.md'} and results.json")
    return 0


def _run_all(args, results: dict, out_dir: Path, order: list, t0: float, sampler, load) -> None:
    with tempfile.TemporaryDirectory(prefix="jaxhlm_bench_") as wd:
        workdir = Path(wd)
        for cid in args.cases:
            if args.load and load.alive() < args.load:
                results["meta"]["notes"].append(f"only {load.alive()} of {args.load} load processes alive "
                                                f"at case {cid}")
            try:
                results["cases"][cid] = run_case(cid, args, workdir, sampler)
            except Exception as e:  # a broken case is reported, the others still run
                import traceback

                results["cases"][cid] = {"title": C.CASES[cid]["title"], "n": C.CASES[cid]["n"],
                                         "groups": C.CASES[cid]["groups"], "kind": C.CASES[cid].get("kind", "fit"),
                                         "tools": {}, "check": {}, "error": repr(e)}
                results["meta"]["notes"].append(f"case {cid} failed in the harness: {e!r}")
                log(traceback.format_exc())
            if args.update:
                results["cases"] = dict(sorted(results["cases"].items(),
                                               key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
            for r in results["cases"][cid]["tools"].values():
                if r.get("version") and r.get("tool"):
                    results["meta"]["versions"][LABEL.get(r["tool"], r["tool"])] = r["version"]
            results["meta"]["elapsed_s"] = time.monotonic() - t0
            (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
