"""Seeded synthetic data for the benchmarks (nothing is ever downloaded).

``students_in_schools`` makes data shaped like ``nels_like.csv`` (the NELS-88 example of the
classic HLM tutorial: 8,378 students in 854 schools) at any size, with the columns
``stu_id, sch_id, mathscore, family_inc, urban, ses``.  The scales follow nels_like.csv:

* school sizes average ``n_rows / n_groups`` (about 10 in nels), every school has >= 2 students
  when ``n_rows >= 2 * n_groups``;
* ``family_inc`` is an integer 1..15 (mean 9.2, between-school sd 1.95, within sd 2.4, capped at
  15 the way nels piles up at the top category);
* ``urban`` is a school-level 0/1 indicator (29% urban);
* ``ses`` is continuous (sd about 1), correlated 0.3 with ``family_inc``, with a school component;
* ``mathscore = 40.56 + 1.087 family_inc + b0 + b1 family_inc + e`` with the random intercept and
  slope covariance and the residual sd (8.47) of lme4's ML fit of
  ``mathscore ~ family_inc + (family_inc | sch_id)`` to nels_like.csv (intercept sd 4.32, slope sd
  0.30, correlation -0.73).  ``slope=False`` drops the random slope and uses the random-intercept
  fit (intercept sd 3.04, residual sd 8.50).

``three_level`` makes a students-in-classes-in-schools design with columns
``school, class, x, y`` for ``y ~ x + (1 | school/class)``.  Class labels are numbered *within*
each school (1, 2, ... in every school), so the model needs the ``school/class`` nesting operator
(``school:class``) to tell the classes apart, as lme4 users write it.

``kb07_like`` makes a kb07-shaped subjects x items design (56 x 32, every pair 3 times) with
three +-0.5-coded two-level predictors and correlated 4-dimensional random effects per factor;
``movielens_like`` a MovieLens-shaped users x items design (1M ratings, 20k users, 2k items,
skewed counts and popularity).

All functions are deterministic for a given seed (numpy ``default_rng``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# lme4 1.1-31, ML fit of mathscore ~ family_inc + (family_inc | sch_id) to nels_like.csv
# (tests/data/reference/nels_m2.json)
_BETA_SLOPE = (40.55531830772023, 1.0872664481950858)
_SIGMA_SLOPE = 8.466693561693793
_THETA_SLOPE = (0.5104009258911495, -0.025419273491539912, 0.024013715245081006)
# ... and of mathscore ~ family_inc + (1 | sch_id) (nels_m1.json)
_BETA_INT = (40.59109409301591, 1.084301278792874)
_SIGMA_INT = 8.499464991816216
_THETA_INT = 0.3575343622290866


def _group_sizes(rng: np.random.Generator, n_rows: int, n_groups: int) -> np.ndarray:
    """Sizes summing to n_rows, each >= 2 where possible, spread like nels (sd ~ 3 at mean ~ 10)."""
    if n_groups <= 0 or n_rows < n_groups:
        raise ValueError(f"need n_rows >= n_groups > 0, got n_rows={n_rows}, n_groups={n_groups}")
    floor = 2 if n_rows >= 2 * n_groups else 1
    weights = rng.gamma(shape=20.0, size=n_groups)
    sizes = floor + rng.multinomial(n_rows - floor * n_groups, weights / weights.sum())
    return sizes.astype(np.int64)


def students_in_schools(n_rows: int, n_groups: int, seed: int = 0, slope: bool = True) -> pd.DataFrame:
    """A nels_like-shaped students-in-schools data set with ``n_rows`` students in ``n_groups`` schools.

    Rows are grouped by school (schools in random id order, as in nels_like.csv).
    """
    rng = np.random.default_rng(seed)
    sizes = _group_sizes(rng, n_rows, n_groups)
    g = np.repeat(np.arange(n_groups), sizes)  # school index per row, 0..n_groups-1

    # school ids: distinct integers, 5 digits for nels-sized designs, in random order
    hi = max(50_000, 5 * n_groups)
    sch_ids = rng.choice(np.arange(10, hi), size=n_groups, replace=False)
    stu_id = 7_898_401 + np.arange(n_rows, dtype=np.int64)

    # covariates
    urban_s = (rng.random(n_groups) < 0.29).astype(np.int64)
    fi_s = rng.normal(0.0, 1.95, n_groups)
    fi = np.rint(9.2 + fi_s[g] + rng.normal(0.0, 2.4, n_rows))
    family_inc = np.clip(fi, 1, 15).astype(np.int64)
    ses_s = 0.5 * fi_s / 1.95 * 0.38 + rng.normal(0.0, 0.33, n_groups)
    ses = np.round(0.07 * (family_inc - 9.2) + ses_s[g] + rng.normal(0.0, 0.93, n_rows), 4)

    # response
    if slope:
        b0, b1 = _BETA_SLOPE
        t11, t21, t22 = _THETA_SLOPE
        z = rng.standard_normal((n_groups, 2))
        u0 = _SIGMA_SLOPE * t11 * z[:, 0]
        u1 = _SIGMA_SLOPE * (t21 * z[:, 0] + t22 * z[:, 1])
        sigma = _SIGMA_SLOPE
    else:
        b0, b1 = _BETA_INT
        u0 = _SIGMA_INT * _THETA_INT * rng.standard_normal(n_groups)
        u1 = np.zeros(n_groups)
        sigma = _SIGMA_INT
    mu = b0 + u0[g] + (b1 + u1[g]) * family_inc
    mathscore = np.round(mu + sigma * rng.standard_normal(n_rows), 2)

    return pd.DataFrame(
        {
            "stu_id": stu_id,
            "sch_id": sch_ids[g].astype(np.int64),
            "mathscore": mathscore,
            "family_inc": family_inc,
            "urban": urban_s[g],
            "ses": ses,
        }
    )


def three_level(n_students: int, n_classes: int, n_schools: int, seed: int = 0) -> pd.DataFrame:
    """Students in classes in schools: columns ``school, class, x, y``.

    ``y = 10 + 0.5 x + u_school + v_class + e`` with sd(u) = 2, sd(v) = 1.5, sd(e) = 3; ``x`` has a
    class-level component.  ``class`` labels restart at 1 within each school.
    """
    if not (n_students >= n_classes >= n_schools > 0):
        raise ValueError("need n_students >= n_classes >= n_schools > 0")
    rng = np.random.default_rng(seed)
    cls_per_school = _group_sizes(rng, n_classes, n_schools)
    school_of_class = np.repeat(np.arange(n_schools), cls_per_school)
    # class number within its school: 1..k
    starts = np.repeat(np.cumsum(cls_per_school) - cls_per_school, cls_per_school)
    class_label = np.arange(n_classes) - starts + 1
    stu_per_class = _group_sizes(rng, n_students, n_classes)
    c = np.repeat(np.arange(n_classes), stu_per_class)
    s = school_of_class[c]

    u = rng.normal(0.0, 2.0, n_schools)
    v = rng.normal(0.0, 1.5, n_classes)
    x = np.round(rng.normal(0.0, 0.5, n_classes)[c] + rng.normal(0.0, 1.0, n_students), 4)
    y = np.round(10.0 + 0.5 * x + u[s] + v[c] + rng.normal(0.0, 3.0, n_students), 4)
    return pd.DataFrame(
        {"school": s + 1, "class": class_label[c].astype(np.int64), "x": x, "y": y}
    )


def simulate_random_slope(df: pd.DataFrame, nsim: int, seed: int = 1) -> np.ndarray:
    """``nsim`` responses from the nels random-slope model at lme4's ML estimates (nels_m2).

    ``mathscore ~ family_inc + (family_inc | sch_id)`` with the fixed effects, relative covariance
    factor and residual sd of lme4's fit to nels_like.csv; returns an array of shape
    ``(len(df), nsim)``.  The benchmark's simulation study refits these same responses with every
    tool, so the per-replicate objectives can be compared across tools.
    """
    rng = np.random.default_rng(seed)
    codes, _ = pd.factorize(df["sch_id"])
    G = int(codes.max()) + 1
    x = df["family_inc"].to_numpy(dtype=float)
    b0, b1 = _BETA_SLOPE
    t11, t21, t22 = _THETA_SLOPE
    Y = np.empty((len(df), nsim))
    for j in range(nsim):
        z = rng.standard_normal((G, 2))
        u0 = _SIGMA_SLOPE * t11 * z[:, 0]
        u1 = _SIGMA_SLOPE * (t21 * z[:, 0] + t22 * z[:, 1])
        Y[:, j] = b0 + u0[codes] + (b1 + u1[codes]) * x + _SIGMA_SLOPE * rng.standard_normal(len(df))
    return Y


# ----------------------------------------------------------------------------- crossed designs
# kb07-shaped (Kronmueller & Barr 2007, experiment 2, as fitted in MixedModels.jl's docs): the
# scales follow the published maximal fit (EffectsCoding +-1 there; doubled here for +-0.5 codes),
# with the correlation matrices moderated so that the true covariances are well inside the
# positive-definite cone (the published subject correlations are nearly singular).
KB07_BETA = {  # intercept, spkr, prec, load, spkr:prec, spkr:load, prec:load, spkr:prec:load
    "(Intercept)": 2180.0, "spkr": 136.0, "prec": -667.0, "load": 157.0,
    "spkr:prec": -86.0, "spkr:load": 73.0, "prec:load": 17.0, "spkr:prec:load": 186.0,
}
KB07_SD_SUBJ = (320.0, 134.0, 118.0, 126.0)  # (Intercept), spkr, prec, load
KB07_COR_SUBJ = ((1.0, 0.6, -0.6, 0.2),
                 (0.6, 1.0, -0.1, 0.5),
                 (-0.6, -0.1, 1.0, 0.2),
                 (0.2, 0.5, 0.2, 1.0))
KB07_SD_ITEM = (360.0, 60.0, 250.0, 40.0)
KB07_COR_ITEM = ((1.0, 0.1, -0.7, 0.3),
                 (0.1, 1.0, -0.1, 0.2),
                 (-0.7, -0.1, 1.0, -0.2),
                 (0.3, 0.2, -0.2, 1.0))
KB07_SIGMA = 670.0


def _correlated(rng: np.random.Generator, n: int, sd, cor) -> np.ndarray:
    """``n`` draws of a zero-mean normal vector with standard deviations ``sd`` and correlations ``cor``."""
    sd = np.asarray(sd, dtype=float)
    cov = np.asarray(cor, dtype=float) * np.outer(sd, sd)
    return rng.standard_normal((n, len(sd))) @ np.linalg.cholesky(cov).T


def kb07_like(n_subj: int = 56, n_item: int = 32, n_rep: int = 3, seed: int = 0) -> pd.DataFrame:
    """A kb07-shaped fully crossed subjects x items design: columns ``subj, item, spkr, prec, load, y``.

    Every subject sees every item ``n_rep`` times (56 x 32 x 3 = 5,376 rows by default).  The
    three two-level predictors are coded -0.5 / +0.5 and counterbalanced: the condition of
    (subject s, item i, repetition r) is ``c = (s + i + 3 r) mod 8`` with ``spkr``, ``prec``,
    ``load`` the three bits of ``c``, so every subject and every item meets all eight conditions
    equally often (each subject: 4 items per condition per repetition).  The response is

    .. math::  y = x' \\beta + z' b_{subj} + z' c_{item} + e,

    with ``x`` the 8 columns of ``1 + spkr*prec*load``, ``z = (1, spkr, prec, load)``, ``b`` and
    ``c`` correlated normal 4-vectors (``KB07_SD_*``, ``KB07_COR_*``) and ``e`` normal with sd
    ``KB07_SIGMA``, rounded to 0.1 ms.  Subject and item labels are ``S01..`` / ``I01..``.
    """
    rng = np.random.default_rng(seed)
    s, i, r = (a.ravel() for a in np.meshgrid(np.arange(n_subj), np.arange(n_item), np.arange(n_rep),
                                              indexing="ij"))
    c = (s + i + 3 * r) % 8
    spkr = np.where(c & 1, 0.5, -0.5)
    prec = np.where(c & 2, 0.5, -0.5)
    load = np.where(c & 4, 0.5, -0.5)
    b = KB07_BETA
    mu = (b["(Intercept)"] + b["spkr"] * spkr + b["prec"] * prec + b["load"] * load
          + b["spkr:prec"] * spkr * prec + b["spkr:load"] * spkr * load + b["prec:load"] * prec * load
          + b["spkr:prec:load"] * spkr * prec * load)
    us = _correlated(rng, n_subj, KB07_SD_SUBJ, KB07_COR_SUBJ)
    ui = _correlated(rng, n_item, KB07_SD_ITEM, KB07_COR_ITEM)
    Z = np.column_stack([np.ones_like(spkr), spkr, prec, load])
    y = mu + (Z * us[s]).sum(axis=1) + (Z * ui[i]).sum(axis=1) + KB07_SIGMA * rng.standard_normal(len(s))
    width = max(2, len(str(max(n_subj, n_item))))
    return pd.DataFrame({
        "subj": np.array([f"S{k + 1:0{width}d}" for k in range(n_subj)])[s],
        "item": np.array([f"I{k + 1:0{width}d}" for k in range(n_item)])[i],
        "spkr": spkr, "prec": prec, "load": load, "y": np.round(y, 1),
    })


def movielens_like(n_rows: int = 1_000_000, n_users: int = 20_000, n_items: int = 2_000,
                   seed: int = 0) -> pd.DataFrame:
    """A MovieLens-shaped users x items crossed design: columns ``user, item, y`` (``n_rows`` rows).

    * ratings per user: ``10 + `` a negative-binomial count (shape 1.2) scaled so that the counts
      sum to exactly ``n_rows`` (mean 50 at the defaults; right-skewed: median about 40, 99th
      percentile about 180, the largest a few hundred), each at most ``n_items``;
    * each user rates *distinct* items, drawn without replacement with probabilities
      proportional to a Zipf-like popularity ``1 / (rank + 20)`` (at the defaults the most rated
      item has about 80 times the ratings of the least rated one, which has about 100); item
      ids are a random permutation of the popularity ranks, so ids carry no order;
    * ``y = 3.6 + u_user + v_item + e`` with sd(u) = 0.45, sd(v) = 0.5, sd(e) = 0.9: continuous
      (rounded to 0.001), not 1-5 integers, so that the model ``y ~ 1 + (1|user) + (1|item)`` is
      the true one and every tool's optimum is well defined.

    Rows are sorted by user (as MovieLens' ratings file is), items in random order within a user.
    Every user has at least 10 ratings; every item is rated (checked).
    """
    if not (n_users > 0 and n_items >= 10 and n_rows >= 10 * n_users and n_rows <= n_users * n_items):
        raise ValueError("need n_items >= 10 and 10 * n_users <= n_rows <= n_users * n_items")
    rng = np.random.default_rng(seed)
    floor = 10
    extra = rng.negative_binomial(1.2, 1.2 / (1.2 + 40.0), size=n_users).astype(float) + 1e-9
    counts = floor + np.floor(extra / extra.sum() * (n_rows - floor * n_users)).astype(np.int64)
    short = n_rows - counts.sum()  # distribute the rounding remainder one by one
    counts[rng.choice(n_users, size=short, replace=False)] += 1
    over = counts > n_items
    if over.any():  # cap at n_items, hand the excess to the others (rare at realistic sizes)
        excess = int((counts[over] - n_items).sum())
        counts[over] = n_items
        room = np.flatnonzero(counts < n_items)
        counts[rng.choice(room, size=excess, replace=False)] += 1
    pop = 1.0 / (np.arange(n_items) + 20.0)
    pop /= pop.sum()
    item_id = rng.permutation(n_items) + 1  # id of the item with popularity rank k
    items = np.empty(n_rows, dtype=np.int64)
    pos = 0
    for k in counts:  # weighted sampling without replacement, per user
        items[pos:pos + k] = rng.choice(n_items, size=int(k), replace=False, p=pop)
        pos += k
    users = np.repeat(np.arange(n_users), counts)
    if np.unique(items).size != n_items:
        raise RuntimeError("some item got no rating; use more rows or less popularity skew")
    u = rng.normal(0.0, 0.45, n_users)
    v = rng.normal(0.0, 0.5, n_items)
    y = 3.6 + u[users] + v[items] + rng.normal(0.0, 0.9, n_rows)
    return pd.DataFrame({"user": users + 1, "item": item_id[items], "y": np.round(y, 3)})


if __name__ == "__main__":  # a quick look
    d = students_in_schools(8378, 854, seed=1)
    print(d.describe().T)
    print(d.groupby("sch_id").size().describe())
    print(three_level(1000, 100, 10, seed=1).head())
