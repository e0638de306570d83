"""Run one Python tool on one benchmark case, in this (fresh) process, and write a JSON result.

    python benchmarks/runners/pyrunner.py TOOL SPEC.json OUT.json

TOOL is one of jaxhlm, statsmodels, mixedlm, mixedlm_rs, lme_python.  The spec is written by
benchmarks/run.py.  Only the fitting calls are timed (time.perf_counter); importing the tool and
loading the data happen before the clock starts.  Any exception is caught and written to OUT as
``{"status": "error", ...}`` so the harness can report it instead of crashing.

Timed quantities:
* ``kind == "fit"``: ``first_s`` (the first fit in this process) and ``times_s`` (every fit,
  first included).  Fits are repeated up to ``repeats`` times while the total stays within
  ``time_budget_s`` (but at least ``min_fits`` times: jaxhlm's warm process needs a fit after
  the first).
* ``kind == "sim"``: ``fit_s`` (the initial fit), ``simulate_s`` (the tool's own
  ``simulate(nsim)``, where it has one) and the refits of a shared response matrix (``y_path``,
  float64, replicate-major) so every tool refits the very same responses: ``refit_s`` for
  ``k`` replicates, ``per_refit_s`` and the per-replicate objectives.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings

import numpy as np

T = time.perf_counter
MIN_K = 20  # a loop-based peer refits at least this many replicates before its time budget stops it


class Deadline:
    """Stops a per-replicate refit loop once ``budget_s`` have passed (after ``MIN_K`` replicates)."""

    def __init__(self, budget_s):
        self.t_end = T() + float(budget_s) if budget_s else None

    def done(self, j):
        return self.t_end is not None and j >= MIN_K and T() > self.t_end


# ----------------------------------------------------------------------------- adapters
class Adapter:
    name = "?"

    def __init__(self, spec):
        self.spec = spec
        self.reml = bool(spec["reml"])
        self.notes: list[str] = []

    def version(self) -> str:
        return "?"

    def prepare(self, df):
        """Untimed per-data preparation (e.g. converting group columns)."""
        return df

    def fit(self, df):
        raise NotImplementedError

    def objective(self, res) -> float:
        raise NotImplementedError

    def extras(self, res) -> dict:
        return {}

    # simulation study
    def simulate(self, res, nsim, seed):
        return None  # None: no simulate()

    def refit_all(self, res, Y, deadline=None):
        """Refit the columns of Y (loops may stop at ``deadline``); return the objectives."""
        raise NotImplementedError


def _floatlist(x):
    try:
        return [float(v) for v in np.asarray(x, dtype=float).ravel()]
    except Exception:
        return None


class JaxhlmAdapter(Adapter):
    name = "jaxhlm"

    def __init__(self, spec):
        super().__init__(spec)
        import jaxhlm  # noqa: F401  (import is outside the timed region)

        self.m = jaxhlm
        if not hasattr(jaxhlm, "lmer"):
            raise RuntimeError("jaxhlm.lmer does not exist yet")

    def version(self):
        return str(getattr(self.m, "__version__", "?"))

    def fit(self, df):
        return self.m.lmer(self.spec["formula"], data=df, reml=self.reml)

    def objective(self, res):
        return float(res.objective)

    def extras(self, res):
        out = {}
        for attr in ("theta", "fixef"):
            try:
                v = getattr(res, attr)
                if hasattr(v, "to_dict"):
                    v = list(v.values) if hasattr(v, "values") else v
                out[attr] = _floatlist(v)
            except Exception:
                pass
        for attr in ("converged", "n_iter", "niter", "optimizer"):
            v = getattr(res, attr, None)
            if v is not None and isinstance(v, (bool, int, float, str, np.bool_, np.integer)):
                out[attr] = v.item() if hasattr(v, "item") else v
        oi = getattr(res, "optinfo", None)
        if isinstance(oi, dict):
            for k in ("iterations", "converged", "max_abs_grad"):
                if k in oi:
                    out[k] = oi[k].item() if hasattr(oi[k], "item") else oi[k]
        t = getattr(res, "timings", None)
        if isinstance(t, dict):
            out["timings"] = {str(k): float(v) for k, v in t.items() if np.isscalar(v)}
        return out

    def simulate(self, res, nsim, seed):
        return res.simulate(nsim=nsim, seed=seed)

    def refit_all(self, res, Y, deadline=None):
        out = res.refit_many(Y)  # batched: always all replicates
        return _objectives_from_frame(out, self.notes)


def _objectives_from_frame(out, notes):
    try:
        import pandas as pd

        if isinstance(out, pd.DataFrame):
            for col in ("objective", "deviance", "REMLcrit", "remlcrit"):
                if col in out.columns:
                    return [float(v) for v in out[col].to_numpy()]
            notes.append(f"refit_many result has no objective column (columns: {list(out.columns)})")
            return None
    except Exception:
        pass
    notes.append(f"refit_many returned {type(out).__name__}, not a DataFrame")
    return None


class StatsmodelsAdapter(Adapter):
    name = "statsmodels"

    def __init__(self, spec):
        super().__init__(spec)
        import statsmodels
        import statsmodels.formula.api as smf

        self.sm = statsmodels
        self.smf = smf
        self.s = spec["sm"]
        if self.s is None:
            raise NotImplementedError("case not expressible in this tool")

    def version(self):
        return self.sm.__version__

    def _model(self, df):
        s = self.s
        kw = {}
        if s.get("re_formula"):
            kw["re_formula"] = s["re_formula"]
        if s.get("vc_formula"):
            kw["vc_formula"] = s["vc_formula"]
        return self.smf.mixedlm(s["fixed"], df, groups=df[s["groups"]], **kw)

    def fit(self, df):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            res = self._model(df).fit(reml=self.reml)
        msgs = sorted({str(x.message).splitlines()[0][:120] for x in w})
        if msgs:
            self.notes = sorted(set(self.notes) | set(msgs))
        return res

    def objective(self, res):
        # statsmodels' llf is lme4's logLik: ML deviance = -2 llf, and for a REML fit
        # -2 llf = lme4's REMLcrit (checked on Dyestuff: 319.65428 both; see check_conversion.py)
        return float(-2.0 * res.llf)

    def extras(self, res):
        return {"converged": bool(getattr(res, "converged", True)), "fixef": _floatlist(res.fe_params)}

    def refit_all(self, res, Y, deadline=None):
        df = self._df
        col = self.spec["response"]
        objs = []
        for j in range(Y.shape[1]):
            if deadline and deadline.done(j):
                break
            d2 = df.copy(deep=False)
            d2[col] = Y[:, j]
            objs.append(self.objective(self.fit(d2)))
        return objs


class MixedlmAdapter(Adapter):
    name = "mixedlm"

    def __init__(self, spec):
        super().__init__(spec)
        import mixedlm

        self.m = mixedlm

    def version(self):
        try:
            from importlib.metadata import version

            return version("mixedlm")
        except Exception:
            return "?"

    def fit(self, df):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.m.lmer(self.spec["formula"], df, REML=self.reml)

    def objective(self, res):
        return float(res.REMLcrit() if self.reml else res.deviance)

    def extras(self, res):
        out = {"theta": _floatlist(res.theta)}
        try:
            out["fixef"] = _floatlist(list(res.fixef().values()))
        except Exception:
            pass
        try:
            out["converged"] = bool(res.converged)
        except Exception:
            pass
        return out

    def simulate(self, res, nsim, seed):
        return res.simulate(nsim=nsim, seed=seed)

    def refit_all(self, res, Y, deadline=None):
        objs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j in range(Y.shape[1]):
                if deadline and deadline.done(j):
                    break
                objs.append(self.objective(res.refit(Y[:, j])))
        return objs


class MixedlmRsAdapter(Adapter):
    name = "mixedlm_rs"

    def __init__(self, spec):
        super().__init__(spec)
        import mixedlm_rs

        self.m = mixedlm_rs
        self.s = spec["sm"]
        if self.s is None or self.s.get("vc_formula"):
            raise NotImplementedError(
                "mixedlm-rs fits one grouping factor only (no vc_formula / crossed or nested factors)"
            )

    def version(self):
        return str(getattr(self.m, "__version__", "?"))

    def _model(self, df):
        s = self.s
        return self.m.MixedLM.from_formula(
            s["fixed"], df, groups=df[s["groups"]], re_formula=s.get("re_formula")
        )

    def fit(self, df):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self._model(df).fit(reml=self.reml)
        return res

    def objective(self, res):
        return float(-2.0 * res.llf)

    def extras(self, res):
        return {"converged": bool(getattr(res, "converged", True)), "fixef": _floatlist(res.fe_params)}

    def refit_all(self, res, Y, deadline=None):
        # the statsmodels-style API has no simulate(); with_endog() reuses the prepared design
        objs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j in range(Y.shape[1]):
                if deadline and deadline.done(j):
                    break
                objs.append(self.objective(res.model.with_endog(Y[:, j]).fit(reml=self.reml)))
        return objs


class LmePythonAdapter(Adapter):
    """PyPI ``lme-python`` (import ``lme_python``): Rust lme-rs with lme4-style formulas.

    Its formula parser has no ``a*b*c`` / three-way ``a:b:c`` fixed terms and no
    ``(1 + x || g)`` (``(x || g)`` works), so a case may give its own spelling (``spec["lp"]``:
    ``formula`` plus ``derived`` product columns such as ``spkr_prec_load = spkr*prec*load``,
    computed before the clock starts; the model is the same).  The data are handed over as a
    polars DataFrame, its native input, converted before the clock starts.
    """

    name = "lme_python"

    def __init__(self, spec):
        super().__init__(spec)
        import lme_python

        self.m = lme_python
        lp = spec.get("lp", {"formula": spec["formula"]})
        if lp is None:
            raise NotImplementedError(spec.get("lp_note") or "case not expressible in lme-python")
        self.formula = lp.get("formula") or spec["formula"]
        self.derived = lp.get("derived", {})
        self._prepared = None

    def version(self):
        try:
            from importlib.metadata import version

            return version("lme_python")
        except Exception:
            return "?"

    def prepare(self, df):
        import polars as pl

        df = df.copy()
        for name, cols in self.derived.items():
            v = np.ones(len(df))
            for c in cols:
                v = v * df[c].to_numpy(dtype=float)
            df[name] = v
        self._pdf = df
        return pl.from_pandas(df)

    def fit(self, df):
        return self.m.lmer(self.formula, data=df, reml=self.reml)

    def objective(self, res):
        return float(res.reml_criterion if self.reml else res.deviance)

    def extras(self, res):
        out = {"theta": _floatlist(res.theta or []), "fixef": _floatlist(res.coefficients)}
        if res.converged is not None:
            out["converged"] = bool(res.converged)
        if res.iterations is not None:
            out["iterations"] = int(res.iterations)
        return out

    def simulate(self, res, nsim, seed):
        sims = res.simulate(nsim, seed=seed).simulations  # nsim lists of nobs values
        return _Shape((len(sims[0]) if sims else 0, len(sims)))

    def refit_all(self, res, Y, deadline=None):
        # prepare once, refit each response (lme-python's documented repeated-response path)
        if self._prepared is None:
            self._prepared = self.m.prepare_lmer(self.formula, self._df)
        objs = []
        for j in range(Y.shape[1]):
            if deadline and deadline.done(j):
                break
            objs.append(self.objective(self._prepared.fit(y=Y[:, j].tolist(), reml=self.reml)))
        return objs


class _Shape:
    """Stands for a simulation result that is not an array: only its (nobs, nsim) shape is used."""

    def __init__(self, shape):
        self.shape = tuple(shape)


ADAPTERS = {
    "jaxhlm": JaxhlmAdapter,
    "statsmodels": StatsmodelsAdapter,
    "mixedlm": MixedlmAdapter,
    "mixedlm_rs": MixedlmRsAdapter,
    "lme_python": LmePythonAdapter,
}


# ----------------------------------------------------------------------------- driver
def load_data(spec):
    import pandas as pd

    # grouping columns stay integer codes: every Python tool here treats a grouping variable as
    # categorical labels (R's runner turns them into factors)
    return pd.read_csv(spec["data"])


def run_fit(ad, df, spec, out):
    repeats = max(1, int(spec.get("repeats", 5)))
    budget = float(spec.get("time_budget_s", 60.0))
    min_fits = min(repeats, max(1, int(spec.get("min_fits", 1))))  # the time budget stops no earlier
    times, objs = [], []
    res = None
    while len(times) < repeats:
        t0 = T()
        res = ad.fit(df)
        times.append(T() - t0)
        objs.append(ad.objective(res))
        if sum(times) >= budget and len(times) >= min_fits:
            break
    out["first_s"] = times[0]
    out["times_s"] = times
    out["objective"] = objs[-1]
    out["objectives"] = objs
    try:
        out.update(ad.extras(res))
    except Exception as e:  # extras are informational only
        out.setdefault("notes", []).append(f"extras failed: {e!r}")


def run_sim(ad, df, spec, out):
    sim = spec["sim"]
    nsim, cap, seed = int(sim["nsim"]), int(sim["cap"]), int(sim.get("seed", 1))
    nobs = int(sim["nobs"])
    Yall = np.fromfile(sim["y_path"], dtype="<f8", count=nsim * nobs).reshape(nsim, nobs).T  # (nobs, nsim)
    k = max(1, min(nsim, cap))
    Y = np.ascontiguousarray(Yall[:, :k])
    ad._df = df

    t0 = T()
    res = ad.fit(df)
    out["fit_s"] = T() - t0
    out["objective"] = ad.objective(res)

    repeats = max(1, int(spec.get("repeats", 1)))
    sim_times, refit_times = [], []
    objs = None
    for _ in range(repeats):
        t0 = T()
        ysim = ad.simulate(res, nsim, seed)
        ts = T() - t0
        if ysim is not None:
            shp = tuple(ysim.shape) if hasattr(ysim, "shape") else tuple(np.shape(ysim))
            if shp != (nobs, nsim):
                ad.notes.append(f"simulate(nsim={nsim}) returned shape {shp}, expected {(nobs, nsim)}")
            sim_times.append(ts)
        t0 = T()
        objs = ad.refit_all(res, Y, Deadline(sim.get("budget_s")))
        refit_times.append(T() - t0)
        if objs is not None and len(objs) < k:  # the loop stopped at its time budget
            k = len(objs)
            ad.notes.append(f"refitted {k} of {nsim} replicates within the {sim.get('budget_s')} s "
                            "simulation budget; total extrapolated")
            break
        if sum(refit_times) + sum(sim_times) > float(spec.get("time_budget_s", 60.0)):
            break
    out["nsim"] = nsim
    out["k"] = k
    out["simulate_s"] = float(np.median(sim_times)) if sim_times else None
    out["simulate_times_s"] = sim_times
    out["refit_times_s"] = refit_times
    out["refit_s"] = float(np.median(refit_times))
    out["per_refit_s"] = out["refit_s"] / k
    out["first_s"] = (sim_times[0] if sim_times else 0.0) + refit_times[0] * nsim / k
    # total for all nsim replicates (extrapolated from k when k < nsim)
    out["times_s"] = [
        (sim_times[i] if i < len(sim_times) else 0.0) + refit_times[i] * nsim / k
        for i in range(len(refit_times))
    ]
    out["extrapolated"] = k < nsim
    out["sim_objectives"] = objs


def main(argv):
    tool, spec_path, out_path = argv[1], argv[2], argv[3]
    with open(spec_path) as f:
        spec = json.load(f)
    out = {"tool": tool, "case": spec.get("case"), "status": "ok", "notes": []}

    def write():
        with open(out_path + ".tmp", "w") as f:
            json.dump(out, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        os.replace(out_path + ".tmp", out_path)

    try:
        t0 = T()
        ad = ADAPTERS[tool](spec)
        out["import_s"] = T() - t0
        out["version"] = ad.version()
        t0 = T()
        df = ad.prepare(load_data(spec))
        out["load_s"] = T() - t0
        if spec["kind"] == "fit":
            run_fit(ad, df, spec, out)
        else:
            run_sim(ad, df, spec, out)
        out["notes"] = list(dict.fromkeys(out["notes"] + ad.notes))
    except NotImplementedError as e:
        out["status"] = "unsupported"
        out["error"] = str(e) or "not implemented"
    except Exception as e:
        out["status"] = "error"
        out["error"] = f"{type(e).__name__}: {e}"[:2000]
        out["traceback"] = traceback.format_exc()[-4000:]
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
