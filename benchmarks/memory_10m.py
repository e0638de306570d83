#!/usr/bin/env python
"""Memory of a warm 10M-row, 1M-group random-slope fit: peak RSS above the start (sampled every
5 ms) and what a kept fit holds, as multiples of the input DataFrame.

    python benchmarks/memory_10m.py 10000000 1000000
"""
import os, sys, time, gc, threading, warnings
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np, pandas as pd
def rss():
    with open("/proc/self/status") as f:
        for l in f:
            if l.startswith("VmRSS"): return int(l.split()[1]) / 1024
import jaxhlm
warnings.simplefilter("ignore")
n, J = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
g = rng.integers(0, J, n); x = rng.normal(size=n)
u0 = rng.normal(size=J); u1 = 0.3 * rng.normal(size=J)
df = pd.DataFrame({"y": 1 + 0.5 * x + u0[g] + u1[g] * x + rng.normal(size=n), "x": x, "g": g})
del g, x, u0, u1
size = df.memory_usage(deep=True).sum() / 2**20
m = jaxhlm.lmer("y ~ x + (x | g)", df, reml=False)   # compiles this shape
del m; gc.collect()
base = rss(); top = [base]; stop = [False]
def sample():
    while not stop[0]:
        top[0] = max(top[0], rss()); time.sleep(0.005)
th = threading.Thread(target=sample); th.start()
t = time.perf_counter(); m = jaxhlm.lmer("y ~ x + (x | g)", df, reml=False); tt = time.perf_counter() - t
stop[0] = True; th.join(); gc.collect()
print(f"rows {n} groups {J}: DataFrame {size:.0f} MB; warm fit {tt:.1f} s; peak above the start {top[0]-base:.0f} MB = {(top[0]-base)/size:.2f}x the DataFrame; kept fit {rss()-base:.0f} MB = {(rss()-base)/size:.2f}x")
