#!/usr/bin/env python3
"""Seeded generator for the extra reference data sets in tests/data/extra/.

Run from the repository root:  python tools/make_extra_data.py
Every data set is deterministic (numpy default_rng with fixed seeds); numeric
values are rounded to a few decimals so that R's read.csv and pandas parse the
exact same doubles.  The R side (tools/reference.R) then fits lme4 models to
these files and writes tests/data/reference_extra/*.json.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(DATA, "extra")


def _write(df: pd.DataFrame, name: str) -> None:
    path = os.path.join(OUT, name)
    df.to_csv(path, index=False, na_rep="NA", lineterminator="\n")
    print(f"wrote {path}: {df.shape[0]} rows x {df.shape[1]} cols")


def sleep_q3() -> None:
    """sleepstudy + Days2 = (Days - 4.5)^2 / 10 (q = 3 random slopes)."""
    d = pd.read_csv(os.path.join(DATA, "sleepstudy.csv"))
    d["Days2"] = ((d["Days"] - 4.5) ** 2 / 10.0).round(4)
    _write(d[["Reaction", "Days", "Days2", "Subject"]], "sleep_q3.csv")


def sleep_na() -> None:
    """sleepstudy with 10 Reaction values and 3 Days values set to NA.

    Row 3 (1-based) has NA Reaction so that predict() on rows 1-5 still works
    (response not needed); the other NAs are after row 5.
    """
    d = pd.read_csv(os.path.join(DATA, "sleepstudy.csv"))
    d["Reaction"] = d["Reaction"].astype(float)
    d["Days"] = d["Days"].astype(float)
    rng = np.random.default_rng(20240910)
    rows = np.sort(rng.choice(np.arange(5, len(d)), size=12, replace=False))
    na_reaction = np.concatenate([[2], rows[:9]])  # 0-based; 10 rows
    na_days = rows[9:]  # 3 rows
    d.loc[na_reaction, "Reaction"] = np.nan
    d.loc[na_days, "Days"] = np.nan
    # write Days as integers where present
    out = d.copy()
    out["Days"] = out["Days"].map(lambda v: "NA" if np.isnan(v) else str(int(v)))
    _write(out, "sleep_na.csv")


def threelevel() -> None:
    """Students in classes in schools: 40 schools, 4-6 classes each, ~3000 rows.

    Class labels 1..k repeat across schools (nesting must be written school/class).
    School ids are integers 1..40 (numeric sort != string sort).
    """
    rng = np.random.default_rng(314159)
    n_school = 40
    rows = []
    n_class = rng.integers(4, 7, size=n_school)  # 4..6 classes
    total_classes = int(n_class.sum())
    # ~3000 rows in total
    per_class_mean = 3000 / total_classes
    u0 = rng.normal(0.0, 2.0, size=n_school)  # school intercept
    u1 = rng.normal(0.0, 0.6, size=n_school)  # school slope on x
    for s in range(n_school):
        for c in range(1, n_class[s] + 1):
            v = rng.normal(0.0, 1.2)  # class intercept
            m = int(rng.integers(int(per_class_mean) - 4, int(per_class_mean) + 5))
            x = rng.normal(0.0, 1.0, size=m) + 0.3 * u0[s] / 2.0
            e = rng.normal(0.0, 3.0, size=m)
            y = 50.0 + 2.0 * x + u0[s] + u1[s] * x + v + e
            for xi, yi in zip(x, y):
                rows.append((s + 1, c, round(float(xi), 4), round(float(yi), 3)))
    d = pd.DataFrame(rows, columns=["school", "class", "x", "y"])
    _write(d, "threelevel.csv")


def crossed() -> None:
    """Crossed subjects x items (30 x 20, 2 reps); cond 0/1 numeric."""
    rng = np.random.default_rng(271828)
    n_subj, n_item, n_rep = 30, 20, 2
    s0 = rng.normal(0, 40, n_subj)
    s1 = 0.4 * s0 / 40 * 20 + rng.normal(0, 15, n_subj)  # correlated slope
    i0 = rng.normal(0, 30, n_item)
    rows = []
    for s in range(n_subj):
        for i in range(n_item):
            for r in range(n_rep):
                cond = (s + i + r) % 2
                y = 600 + 35 * cond + s0[s] + s1[s] * cond + i0[i] + rng.normal(0, 60)
                rows.append((f"s{s + 1:02d}", f"i{i + 1:02d}", r + 1, cond, round(float(y), 2)))
    d = pd.DataFrame(rows, columns=["subj", "item", "rep", "cond", "y"])
    _write(d, "crossed.csv")


def singular() -> None:
    """No between-group variance at all: (1 + x | g) fit should be singular."""
    rng = np.random.default_rng(4242)
    n_g, m = 12, 8
    g = np.repeat(np.arange(1, n_g + 1), m)
    x = rng.normal(0, 1, n_g * m).round(4)
    y = (1.0 + 0.5 * x + rng.normal(0, 1, n_g * m)).round(4)
    d = pd.DataFrame({"g": [f"G{k}" for k in g], "x": x, "y": y})
    _write(d, "singular.csv")


def charlevels() -> None:
    """Character grouping with mixed-case labels + numeric grouping 1..12.

    Checks factor level order: R's factor() sorts numerics numerically
    (1, 2, ..., 12, not "1", "10", ...) and strings with the locale collation
    (R here uses ICU root collation: "a" < "A" < "alpha" < "b" < "B" ...,
    which differs from Python's code-point sort).
    """
    rng = np.random.default_rng(9001)
    char_labels = ["beta", "Alpha", "alpha", "B", "gamma", "Delta", "a", "Zeta", "b2", "b10"]
    num_labels = list(range(1, 13))
    c_eff = dict(zip(char_labels, rng.normal(0, 3, len(char_labels))))
    n_eff = dict(zip(num_labels, rng.normal(0, 2, len(num_labels))))
    rows = []
    # every (num, char) combination appears once or twice, in scrambled order
    for ng in num_labels:
        for cg in char_labels:
            for _ in range(int(rng.integers(1, 3))):
                y = 20 + n_eff[ng] + c_eff[cg] + rng.normal(0, 1.5)
                rows.append((round(float(y), 3), ng, cg))
    d = pd.DataFrame(rows, columns=["y", "num_g", "char_g"])
    d = d.iloc[rng.permutation(len(d))].reset_index(drop=True)
    _write(d, "charlevels.csv")


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    sleep_q3()
    sleep_na()
    threelevel()
    crossed()
    singular()
    charlevels()


if __name__ == "__main__":
    main()
