#!/usr/bin/env python
"""jaxhlm benchmark harness: jaxhlm against lme4, statsmodels, mixedlm and mixedlm-rs.

    python benchmarks/run.py                 # every case (about 20-25 minutes on 2 cores)
    python benchmarks/run.py --quick         # only the 8k-row nels cases
    python benchmarks/run.py --cases rs_100k insteval --repeats 3 --no-r

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

TOOLS = ["jaxhlm", "lme4", "statsmodels", "mixedlm", "mixedlm_rs"]
PEERS = TOOLS[1:]
LABEL = {"jaxhlm": "jaxhlm", "lme4": "lme4", "statsmodels": "statsmodels", "mixedlm": "mixedlm",
         "mixedlm_rs": "mixedlm-rs"}
TOL = 1e-2
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
            mod = {"statsmodels": "statsmodels", "mixedlm": "mixedlm", "mixedlm_rs": "mixedlm_rs"}[tool]
            if importlib.util.find_spec(mod) is None:
                ok, why = False, f"python package {mod} not installed"
    except Exception as e:  # a broken tool is reported, not fatal
        ok, why = False, f"availability check failed: {e!r}"
    _AVAIL[tool] = (ok, why)
    return ok, why


# ----------------------------------------------------------------------------- subprocesses
def run_proc(cmd: list[str], env: dict, timeout: float, logfile: Path) -> dict:
    """Run cmd in its own process group; return rc, wall time, peak RSS (MB), timed_out."""
    t0 = time.monotonic()
    with open(logfile, "w") as lf:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=lf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
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
            "peak_rss_mb": ru.ru_maxrss / 1024.0, "timed_out": timed_out}


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
        res = {"status": "timeout", "error": f"no result within the {timeout:.0f} s timeout"}
    else:
        tail = log_path.read_text(errors="replace")[-600:] if log_path.exists() else ""
        res = {"status": "error", "error": f"exit code {proc['rc']} without a result: {tail}"}
    if proc["timed_out"] and res.get("status") == "ok":
        res["status"] = "timeout"
    res.update({"peak_rss_mb": proc["peak_rss_mb"], "wall_s": proc["wall_s"]})
    if isinstance(res.get("notes"), str):
        res["notes"] = [res["notes"]]
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
        "time_budget_s": args.time_budget,
    }


def predicted_cost(tool: str, case: dict, args) -> float | None:
    p = case.get("predicted_s", {}).get(tool)
    if p is None:
        return None
    if case.get("kind") == "sim":
        return float(p)
    return float(p)  # at least one fit; further fits stop at the time budget


def run_case(cid: str, args, workdir: Path) -> dict:
    case = C.CASES[cid]
    log(f"\n== {cid}: {case['title']}  [{case['formula']}, REML={case['reml']}]")
    dpath = data_path(case["data"])
    out = {"title": case["title"], "formula": case["formula"], "reml": case["reml"],
           "kind": case.get("kind", "fit"), "n": case["n"], "groups": case["groups"],
           "data": str(dpath.relative_to(ROOT) if dpath.is_relative_to(ROOT) else dpath), "tools": {}}
    spec0 = base_spec(cid, case, dpath, args)
    if out["kind"] == "sim":
        nsim = int(args.nsim or case["nsim"])
        ypath, nobs = sim_responses(nsim, dpath)
        spec0["sim"] = {"y_path": str(ypath), "nobs": nobs, "nsim": nsim, "seed": 1, "cap": 0}
        out["nsim"] = spec0["sim"]["nsim"]

    for tool in args.tools:
        t_start = time.monotonic()
        ok, why = available(tool)
        if not ok:
            out["tools"][tool] = {"status": "missing", "error": why}
            log(f"  {LABEL[tool]:12s} missing: {why}")
            continue
        if tool == "mixedlm_rs" and (case.get("sm") is None or case["sm"].get("vc_formula")):
            why = "mixedlm-rs fits a single grouping factor only (no crossed or nested factors, no vc_formula)"
            out["tools"][tool] = {"status": "unsupported", "error": why}
            log(f"  {LABEL[tool]:12s} unsupported: {why}")
            continue
        if tool == "statsmodels" and case.get("sm") is None:
            why = case.get("sm_note", "case not expressible in the statsmodels API")
            out["tools"][tool] = {"status": "unsupported", "error": why}
            log(f"  {LABEL[tool]:12s} unsupported: {why}")
            continue
        pred = predicted_cost(tool, case, args)
        if pred is not None and pred > args.max_predicted and tool != "jaxhlm":
            why = (f"predicted ~{pred:.0f} s on this machine, over --max-predicted "
                   f"{args.max_predicted:.0f} s")
            out["tools"][tool] = {"status": "skipped", "error": why, "predicted_s": pred}
            log(f"  {LABEL[tool]:12s} {why}")
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
                out["tools"][tool] = {"status": "skipped", "error": "refit loop predicted to take "
                                      f"~{pred or float('nan'):.0f} s"}
                log(f"  {LABEL[tool]:12s} skipped (refit loop too slow)")
                continue

        load_before = _load()
        if tool == "jaxhlm":
            res = run_jaxhlm(spec, workdir, args)
        else:
            res = run_tool(tool, spec, workdir, args.timeout)
            if res.get("status") == "ok":
                res["median_s"] = _median_after_first(res.get("times_s"))
        res["load_avg"] = [load_before, _load()]
        out["tools"][tool] = res
        log("  " + _progress_line(tool, res, time.monotonic() - t_start))
    out["check"] = objective_check(cid, out)
    return out


def run_jaxhlm(spec: dict, workdir: Path, args) -> dict:
    cache = tempfile.mkdtemp(prefix="jaxhlm_cache_", dir=workdir)
    env = {"JAXHLM_CACHE_DIR": cache}
    cold_spec = dict(spec, repeats=1)
    cold = run_tool("jaxhlm", cold_spec, workdir, args.timeout, env, tag="_cold")
    warm_spec = dict(spec, repeats=spec["repeats"] + 1)
    warm = run_tool("jaxhlm", warm_spec, workdir, args.timeout, env, tag="_warm")
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
    res["cache_dir_mb"] = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file()) / 2**20
    shutil.rmtree(cache, ignore_errors=True)
    return res


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


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
    tools = [t for t in TOOLS if any(t in c["tools"] for c in results["cases"].values())]
    peers = [t for t in tools if t != "jaxhlm"]

    hdr = ["case", "n", "groups"]
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
        row = [cid, f"{c['n']:,}", str(c["groups"])]
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
            row.append(f"{r['peak_rss_mb']:.0f}" if r.get("status") == "ok" and r.get("peak_rss_mb") else "-")
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
            "command": "python benchmarks/run.py " + " ".join(args.argv), "notes": [], "versions": {}}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the 8k-row nels cases")
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
        args.cases = C.QUICK if args.quick else C.DEFAULT
    if args.no_r:
        args.tools = [t for t in args.tools if t != "lme4"]
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"meta": machine_meta(args), "cases": {}}
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
    t0 = time.monotonic()
    log(f"jaxhlm benchmarks: cases {args.cases}; tools {args.tools}")
    with tempfile.TemporaryDirectory(prefix="jaxhlm_bench_") as wd:
        workdir = Path(wd)
        for cid in args.cases:
            try:
                results["cases"][cid] = run_case(cid, args, workdir)
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


if __name__ == "__main__":
    sys.exit(main())
