"""Write the data sets of tests/data/inference_extra/ (seeded; rerun gives the same files).

Usage (from the repository root): python tools/make_inference_extra_data.py
"""
import os

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")
OUT = os.path.join(DATA, "inference_extra")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    oats = pd.read_csv(os.path.join(DATA, "Oats.csv"))
    # unbalanced split plot: 7 plots' subplots removed at random
    drop = rng.choice(len(oats), size=7, replace=False)
    oats.drop(index=drop).to_csv(os.path.join(OUT, "oats_unbal.csv"), index=False)
    # a missing cell: no Victory plot got nitrogen 0.6
    miss = oats[~((oats.Variety == "Victory") & (oats.nitro == 0.6))]
    miss.to_csv(os.path.join(OUT, "oats_missing_cell.csv"), index=False)

    cake = pd.read_csv(os.path.join(DATA, "cake.csv"))
    drop = rng.choice(len(cake), size=23, replace=False)
    cake.drop(index=drop).to_csv(os.path.join(OUT, "cake_unbal.csv"), index=False)

    # balanced split plot: 3 blocks, whole-plot factor A (2 levels), subplot factor B (4 levels),
    # 2 replicates per subplot cell; whole-plot error df = (3 - 1)(2 - 1) = 2
    rows = []
    blk = rng.normal(0, 3.0, 3)
    wp = rng.normal(0, 2.0, (3, 2))
    aeff = [0.0, 1.5]
    beff = [0.0, 0.8, 2.0, 2.5]
    for b in range(3):
        for a in range(2):
            for s in range(4):
                for r in range(2):
                    y = 20 + blk[b] + wp[b, a] + aeff[a] + beff[s] + rng.normal(0, 1.0)
                    rows.append((f"b{b + 1}", f"a{a + 1}", f"s{s + 1}", r + 1, round(y, 4)))
    pd.DataFrame(rows, columns=["block", "A", "B", "rep", "y"]).to_csv(os.path.join(OUT, "splitplot3.csv"), index=False)

    # schools subset of nels_like for Kenward-Roger and emmeans with covariates (n ~ 1000)
    nels = pd.read_csv(os.path.join(DATA, "nels_like.csv"))
    schools = np.sort(nels.sch_id.unique())
    pick = rng.choice(schools, size=100, replace=False)
    sub = nels[nels.sch_id.isin(pick)].copy()
    sub["region"] = np.array(["north", "south", "west"])[sub.sch_id.rank(method="dense").astype(int).to_numpy() % 3]
    sub.to_csv(os.path.join(OUT, "nels_sub.csv"), index=False)


if __name__ == "__main__":
    main()
