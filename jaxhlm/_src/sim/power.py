"""Power by simulation, in the manner of R's simr (Green & MacLeod 2016, Methods Ecol. Evol. 7(4)).

``power``: simulate ``nsim`` responses from the fitted model (optionally with the effect sizes
changed first, simr's ``fixef(fit)["x"] <- 0.5``), refit, test, and report the share of
significant tests with a Clopper-Pearson interval. ``power_curve``: the same for designs with
more or fewer levels of a grouping factor (simr's ``extend`` / ``powerCurve``): levels are
subset (without replacement) to shrink, and resampled with replacement -- each copy a new level
with the rows of its source -- to grow. All refits of one design run in one compiled program.

Tests
-----
``"satterthwaite"`` (default): t test of the coefficient with Satterthwaite df (lmerTest);
``"z"``: Wald z test; ``"lrt"``: likelihood-ratio test against the model without the tested
coefficient(s), both fitted by ML (simr's ``"lr"``), chi-square with as many df as coefficients.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..optim.batch import RefitSpec
from .replicates import chunk_count, on_spec, progress_bar, refit_design_many, spec_of
from ..design.build import GroupingFactor, TermDesign
from ..base.errors import ArgumentError, DataError
from .simulate import _check_nsim, replicate_rngs, resolve_params, simulate_design
from ..stats.layout import bucket, build_layout, theta_names
from ..stats.suffstats import compute_stats
from ..base import dist

__all__ = ["PowerResult", "power", "power_curve", "clopper_pearson", "resize_design", "curve_designs", "curve_frame"]

_METHODS = ("satterthwaite", "z", "lrt")


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple:
    """Exact binomial confidence interval (Clopper & Pearson 1934), as R's ``binom.test``."""
    a = 1.0 - level
    lo = 0.0 if successes == 0 else float(dist.beta_ppf(a / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(dist.beta_ppf(1 - a / 2, successes + 1, trials - successes))
    return lo, hi


@dataclasses.dataclass
class PowerResult:
    """Estimated power: ``successes / trials`` with a Clopper-Pearson interval.

    Attributes
    ----------
    power, lower, upper : float
    successes, trials : int
        Significant tests, and replicates whose refits converged (the denominator).
    nsim, n_failed : int
    test : list of str
    method : str
    alpha, level : float
    effect : dict
        The fixed effects the responses were simulated from (tested ones first).
    pvalues : numpy.ndarray
        One per replicate (NaN where a refit failed).
    replicates : pandas.DataFrame
        The refits (see ``refit_many``).
    """

    power: float
    lower: float
    upper: float
    successes: int
    trials: int
    nsim: int
    n_failed: int
    test: list
    method: str
    alpha: float
    level: float
    effect: dict
    pvalues: np.ndarray
    replicates: pd.DataFrame = dataclasses.field(repr=False)

    def __str__(self) -> str:
        what = self.test[0] if len(self.test) == 1 else ", ".join(self.test)
        eff = ", ".join(f"{k} = {v:.4g}" for k, v in self.effect.items() if k in self.test)
        lines = [
            f"Power for predictor {what!r}, ({100 * self.level:.0f}% confidence interval):",
            f"      {100 * self.power:.2f}% ({100 * self.lower:.2f}, {100 * self.upper:.2f})",
            "",
            f"Test: {self.method} (alpha = {self.alpha:g}); effect size: {eff}",
            f"Based on {self.trials} simulations ({self.n_failed} failed), {self.successes} significant",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()


def _check_tests(model, test) -> list:
    names = list(model.design.fixef_names)
    if test is None:
        cand = [nm for nm in names if nm != "(Intercept)"]
        if not cand:
            raise ArgumentError("the model has no fixed effect besides the intercept; name one with test=")
        test = cand[0]
    tests = [test] if isinstance(test, str) else list(test)
    if not tests:
        raise ArgumentError("test names no coefficient")
    for t in tests:
        if t not in names:
            raise ArgumentError(f"test: {t!r} is not a fixed-effect coefficient of the model; coefficients: {names}")
    return tests


def _check_level(x, what):
    if not (isinstance(x, (int, float, np.floating)) and 0 < x < 1):
        raise ArgumentError(f"{what} must be a number between 0 and 1, got {x!r}")
    return float(x)


def _reduced_spec(spec: RefitSpec, drop: list) -> RefitSpec:
    """The spec without the fixed-effect columns ``drop`` (ML), started at the same theta."""
    from ..model.pipeline import fit_design

    d = spec.design
    keep = [i for i, nm in enumerate(spec.fixef_names) if nm not in drop]
    d0 = dataclasses.replace(d, X=np.ascontiguousarray(d.X[:, keep]), fixef_names=[spec.fixef_names[i] for i in keep])
    s0 = dataclasses.replace(build_layout(d0), nlev=spec.layout.nlev)
    m0 = fit_design(d0, s0, compute_stats(d0, s0), False, start=spec.theta0)
    return spec_of(m0, centred=False)


def _ml_spec(spec: RefitSpec) -> RefitSpec:
    if not spec.reml:
        return spec
    from ..model.pipeline import fit_design

    m = fit_design(spec.design, spec.layout, spec.stats, False, start=spec.theta0)
    return spec_of(m, centred=False)


def _power_on_spec(spec: RefitSpec, params: dict, tests: list, method: str, nsim: int, alpha: float, level: float,
                   seed, refit_kw: dict, bar=None, label: str = "power") -> PowerResult:
    """Simulate and refit; ``bar`` (shared, advanced here) or ``refit_kw["progress"]`` for
    the progress bar, labelled ``label``."""
    streams = replicate_rngs(seed, nsim)

    def chunks(size):
        for rngs in streams(size):
            yield simulate_design(spec.design, spec.layout, params, rngs)

    refit_kw = dict(refit_kw)
    progress = refit_kw.pop("progress", None)
    task = progress if isinstance(progress, str) else label
    own = bar is None
    nrefit = 2 * nsim if method == "lrt" else nsim
    if own:
        bar = progress_bar(progress, nrefit, task,
                           chunks=nrefit // nsim * chunk_count(spec.design.n, nsim, refit_kw.get("chunk_size")))
    refit_kw["bar"] = bar
    try:
        return _power_refits(spec, chunks, params, tests, method, nsim, alpha, level, refit_kw, bar, task)
    finally:
        if own and bar is not None:
            bar.close()


def _power_refits(spec, chunks, params, tests, method, nsim, alpha, level, refit_kw, bar, task) -> PowerResult:
    """The refits of :func:`_power_on_spec` and the power estimate from their p-values."""
    if method == "lrt":
        if bar is not None:
            bar.set_description(f"{task}: refit full model")
        full = _ml_spec(spec)
        red = _reduced_spec(full, tests)
        r1 = refit_design_many(full, chunks, nsim, satterthwaite=False, **refit_kw)
        if bar is not None:
            bar.set_description(f"{task}: refit reduced model")
        r0 = refit_design_many(red, chunks, nsim, satterthwaite=False, **refit_kw)
        ok = r1["converged"].to_numpy() & r0["converged"].to_numpy()
        stat = r0["objective"].to_numpy() - r1["objective"].to_numpy()
        pv = dist.chi2_sf(np.maximum(stat, 0.0), len(tests))
        reps = r1
    else:
        if len(tests) != 1:
            raise ArgumentError(f"method={method!r} tests one coefficient; use method='lrt' to test {tests} jointly")
        reps = refit_design_many(spec, chunks, nsim, satterthwaite=(method == "satterthwaite"), **refit_kw)
        ok = reps["converged"].to_numpy()
        t = reps[f"t.{tests[0]}"].to_numpy()
        if method == "z":
            pv = 2.0 * dist.norm_sf(np.abs(t))
        else:
            pv = reps[f"p.{tests[0]}"].to_numpy()
        ok = ok & np.isfinite(pv)
    pv = np.where(ok, pv, np.nan)
    trials = int(ok.sum())
    succ = int(np.sum(pv[ok] < alpha))
    lo, hi = clopper_pearson(succ, trials, level) if trials else (np.nan, np.nan)
    names = spec.fixef_names
    effect = {nm: float(params["beta"][names.index(nm)]) for nm in tests}
    effect.update({nm: float(b) for nm, b in zip(names, params["beta"]) if nm not in effect})
    return PowerResult(
        power=succ / trials if trials else np.nan, lower=lo, upper=hi, successes=succ, trials=trials, nsim=nsim,
        n_failed=nsim - trials, test=tests, method=method, alpha=alpha, level=level, effect=effect, pvalues=pv,
        replicates=reps,
    )


def _check_arguments(caller, fit, nsim, alpha, level, method, test):
    """Validate the arguments shared by :func:`power` and :func:`power_curve`."""
    from ..model.state import FitState as LinearMixedModel

    if not isinstance(fit, LinearMixedModel):
        raise ArgumentError(f"{caller} needs a fitted model from lmer(), got {type(fit).__name__}")
    if getattr(fit, "family", None) is not None:  # a glmer fit: its own simulation (Wald z tests)
        raise ArgumentError(f"{caller} is for lmer fits; for a glmer fit call fit.power(test, nsim=...)")
    nsim = _check_nsim(nsim)
    alpha = _check_level(alpha, "alpha")
    level = _check_level(level, "level")
    method = str(method).lower()
    if method not in _METHODS:
        raise ArgumentError(f"method must be one of {_METHODS}, got {method!r}")
    return nsim, alpha, level, method, _check_tests(fit, test)


def _effect_params(fit, tests, fixef, effect, theta, sigma):
    """The simulation parameters: the fit's, with ``fixef`` and ``effect`` (the one tested
    coefficient) set as asked."""
    fx = dict(fixef) if fixef is not None else {}
    if effect is not None:
        if len(tests) != 1:
            raise ArgumentError("effect= sets one coefficient; use fixef={name: value, ...} for several")
        fx[tests[0]] = float(effect)
    return resolve_params(fit, fx or None, theta, sigma)


def power(fit, test=None, nsim: int = 1000, alpha: float = 0.05, effect=None, *, fixef=None, theta=None, sigma=None,
          method: str = "satterthwaite", seed=None, level: float = 0.95, batch_size=None, chunk_size=None,
          progress=None) -> PowerResult:
    """Power of a test of a fixed effect, by simulation from a fitted model (simr's ``powerSim``).

    Parameters
    ----------
    fit : LinearMixedModel or GeneralizedLinearMixedModel
        A glmer fit (through ``jaxhlm.power`` / ``jaxhlm.power_curve``) is tested by Wald z
        tests and takes ``test``, ``nsim``, ``alpha``, ``effect``, ``fixef``, ``theta``,
        ``seed`` and ``level`` only.
    test : str or list of str, optional
        Coefficient(s) to test (default: the first one that is not the intercept).
    nsim : int
    alpha : float
        Significance level of each test.
    effect : float, optional
        The value of the tested coefficient to simulate with (shorthand for ``fixef={test: effect}``).
    fixef : dict, optional
        Fixed effects to simulate with, e.g. ``{"family_inc": 0.5}`` (others keep their estimates).
    theta, sigma : optional
        Variance parameters to simulate with (lme4 names / order for theta).
    method : {"satterthwaite", "z", "lrt"}
    seed : int or numpy.random.Generator, optional
    level : float
        Level of the Clopper-Pearson interval.
    batch_size, chunk_size
        As for ``refit_many``.
    progress : bool or str, optional
        A progress bar labelled "power" (a string: that label), opened before anything is
        compiled; with ``method="lrt"`` one bar for the refits of both models. Default: shown
        for 4 or more compiled chunks on a terminal or in Jupyter.

    Returns
    -------
    PowerResult
    """
    nsim, alpha, level, method, tests = _check_arguments("power()", fit, nsim, alpha, level, method, test)
    params = _effect_params(fit, tests, fixef, effect, theta, sigma)
    kw = dict(batch_size=batch_size, chunk_size=chunk_size, progress=progress)
    spec = spec_of(fit)  # a fit searched centred: simulated and refitted on its centred twin
    return _power_on_spec(spec, on_spec(params, spec), tests, method, nsim, alpha, level, seed, kw)


# --------------------------------------------------------------------------------------------
# more or fewer groups
# --------------------------------------------------------------------------------------------
def _nested_in(codes_g: np.ndarray, codes_f: np.ndarray) -> bool:
    """Every level of g occurs with only one level of f."""
    key = np.unique(np.stack([codes_g, codes_f], axis=1), axis=0)
    return len(key) == len(np.unique(codes_g))


def resize_design(design, along: str, size: int, rng: np.random.Generator):
    """A design with ``size`` levels of the grouping factor ``along``.

    Shrinking keeps a random subset of the levels (without replacement); growing keeps every
    level and adds ``size - L`` copies of levels drawn with replacement, each a new level (label
    ``"<level>#<k>"``) with the rows -- covariates and random-effects values -- of its source.
    Grouping factors nested in ``along`` are copied along with it (new levels); crossed factors
    keep their levels. The response is carried along but is irrelevant (it is simulated); prior
    weights, offsets and binomial trials go with their rows.
    """
    names = [f.name for f in design.factors]
    if along not in names:
        raise ArgumentError(f"along: {along!r} is not a grouping factor of the model; grouping factors: {names}")
    fi = names.index(along)
    fac = design.factors[fi]
    L = fac.nlevels
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ArgumentError(f"sizes must be integers >= 2 (levels of {along!r}), got {size!r}")
    size = int(size)
    if size <= L:
        chosen = np.sort(rng.choice(L, size, replace=False))
        copy_no = np.zeros(size, np.int64)
    else:
        extra = rng.choice(L, size - L, replace=True)
        chosen = np.concatenate([np.arange(L), extra])
        copy_no = np.zeros(size, np.int64)
        seen = np.ones(L, np.int64)
        for i in range(L, size):  # number the copies of each source level (small loop over new levels)
            copy_no[i] = seen[chosen[i]]
            seen[chosen[i]] += 1
    order = np.argsort(fac.codes, kind="stable")
    cnt = np.bincount(fac.codes, minlength=L)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    counts = cnt[chosen]
    total = int(counts.sum())
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = order[np.repeat(start[chosen], counts) + within]
    new_level = np.repeat(np.arange(size), counts)
    labels = [str(fac.levels[c]) if k == 0 else f"{fac.levels[c]}#{k}" for c, k in zip(chosen, copy_no)]
    if size <= L:
        labels = list(fac.levels[chosen])
    factors = []
    for g, fg in enumerate(design.factors):
        if g == fi:
            factors.append(GroupingFactor(name=fg.name, codes=new_level.astype(np.int64), levels=pd.Index(labels, name=fg.name)))
            continue
        old = fg.codes[rows]
        if _nested_in(fg.codes, fac.codes):
            key = new_level.astype(np.int64) * fg.nlevels + old
            uk, codes = np.unique(key, return_inverse=True)
            lev = [str(fg.levels[k % fg.nlevels]) if copy_no[k // fg.nlevels] == 0
                   else f"{fg.levels[k % fg.nlevels]}#{copy_no[k // fg.nlevels]}" for k in uk]
        else:
            uk, codes = np.unique(old, return_inverse=True)
            lev = list(fg.levels[uk])
        factors.append(GroupingFactor(name=fg.name, codes=codes.astype(np.int64).ravel(), levels=pd.Index(lev, name=fg.name)))
    for f in factors:
        if f.nlevels < 2:
            raise DataError(f"the resized design has only {f.nlevels} level of {f.name!r}")
    terms = [TermDesign(term=td.term, Z=np.ascontiguousarray(td.Z[rows]), names=td.names, factor=td.factor)
             for td in design.terms]
    per_row = {k: np.ascontiguousarray(np.asarray(v)[rows]) for k in ("offset", "weights", "trials")
               if (v := getattr(design, k, None)) is not None}  # prior weights, offsets, binomial trials
    return dataclasses.replace(
        design, y=design.y[rows], X=np.ascontiguousarray(design.X[rows]), terms=terms, factors=factors,
        index=pd.RangeIndex(total), n_dropped=0, **per_row,
    )


def _spec_for_design(fit, design, nlev0=None) -> RefitSpec:
    layout = build_layout(design)
    if nlev0 is not None and nlev0 > layout.nlev[0]:
        layout = dataclasses.replace(layout, nlev=(nlev0,) + tuple(layout.nlev[1:]))
    stats = compute_stats(design, layout)
    return RefitSpec(design=design, layout=layout, stats=stats, reml=fit.reml,
                     theta0=layout.lifted(fit.opt.theta), fixef_names=list(design.fixef_names),
                     theta_names=theta_names(design))


def power_curve(fit, along: str, sizes, test=None, nsim: int = 1000, alpha: float = 0.05, effect=None, *,
                fixef=None, theta=None, sigma=None, method: str = "satterthwaite", seed=None, level: float = 0.95,
                batch_size=None, chunk_size=None, progress=None) -> pd.DataFrame:
    """Power as a function of the number of levels of a grouping factor (simr's ``extend`` + ``powerCurve``).

    Parameters
    ----------
    fit : LinearMixedModel or GeneralizedLinearMixedModel
        A glmer fit (through ``jaxhlm.power`` / ``jaxhlm.power_curve``) is tested by Wald z
        tests and takes ``test``, ``nsim``, ``alpha``, ``effect``, ``fixef``, ``theta``,
        ``seed`` and ``level`` only.
    along : str
        A grouping factor of the model (e.g. ``"sch_id"``).
    sizes : sequence of int
        Numbers of levels to try; fewer than the data has: a random subset; more: the data's
        levels plus resampled copies (see :func:`resize_design`).
    test, nsim, alpha, effect, fixef, theta, sigma, method, seed, level, batch_size, chunk_size
        As for :func:`power`.
    progress : bool or str, optional
        One progress bar over all sizes, labelled "power curve: <along> = <size>" (a string
        replaces "power curve"), opened before anything is compiled. Default: shown for 4 or
        more compiled chunks on a terminal or in Jupyter.

    Returns
    -------
    pandas.DataFrame
        One row per size: ``size``, ``nobs``, ``power``, ``lower``, ``upper``, ``successes``,
        ``trials``, ``n_failed``. ``attrs["results"]`` holds the :class:`PowerResult` of each.
    """
    nsim, alpha, level, method, tests = _check_arguments("power_curve()", fit, nsim, alpha, level, method, test)
    params = _effect_params(fit, tests, fixef, effect, theta, sigma)
    sizes, designs, streams = curve_designs(fit.design, along, sizes, seed)
    # one padded group count for all sizes: one compiled program when `along` is the batched factor
    nlev0 = max(bucket(d.factors[0].nlevels) for d in designs)
    kw = dict(batch_size=batch_size, chunk_size=chunk_size)
    task = progress if isinstance(progress, str) else "power curve"
    per = 2 * nsim if method == "lrt" else nsim
    bar = progress_bar(progress, per * len(sizes), f"{task}: {along} = {sizes[0]}",
                       chunks=sum(per // nsim * chunk_count(d.n, nsim, chunk_size) for d in designs))
    results = []
    try:
        for s, d, child in zip(sizes, designs, streams):
            if bar is not None:
                bar.set_description(f"{task}: {along} = {s}")
            spec = _spec_for_design(fit, d, nlev0)
            res = _power_on_spec(spec, params, tests, method, nsim, alpha, level, child, kw, bar=bar,
                                 label=f"{task}: {along} = {s}")
            results.append(res)
    finally:
        if bar is not None:
            bar.close()
    return curve_frame(sizes, designs, results, along, tests)


def curve_designs(design, along: str, sizes, seed):
    """The sizes (checked), one resized design per size and one simulation stream per size:
    ``seed`` splits into a design stream and a simulation stream, each spawning one child per
    size (shared by the lmer and glmer power curves)."""
    try:
        sizes = [s for s in sizes]
    except TypeError:
        raise ArgumentError(f"sizes must be a sequence of integers, got {sizes!r}") from None
    if not sizes:
        raise ArgumentError("sizes is empty")
    ss = np.random.SeedSequence(seed) if not isinstance(seed, np.random.Generator) else seed.bit_generator.seed_seq
    design_ss, sim_ss = ss.spawn(2)
    designs = [resize_design(design, along, s, np.random.default_rng(child))
               for s, child in zip(sizes, design_ss.spawn(len(sizes)))]
    return sizes, designs, sim_ss.spawn(len(sizes))


def curve_frame(sizes, designs, results, along: str, tests) -> pd.DataFrame:
    """One row per size (``size``, ``nobs``, ``power``, ``lower``, ``upper``, ``successes``,
    ``trials``, ``n_failed``); ``attrs``: ``results``, ``along``, ``test``."""
    rows = [{"size": int(s), "nobs": d.n, "power": r.power, "lower": r.lower, "upper": r.upper,
             "successes": r.successes, "trials": r.trials, "n_failed": r.n_failed}
            for s, d, r in zip(sizes, designs, results)]
    out = pd.DataFrame(rows)
    out.attrs["results"] = results
    out.attrs["along"] = along
    out.attrs["test"] = tests
    return out
