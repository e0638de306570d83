"""The README's sections beyond the walk-through run as printed (simulation, power, glmer, big data)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def blocks(heading: str) -> list:
    m = re.search(rf"^{re.escape(heading)}$(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert m, f"README has no section {heading!r}"
    return re.findall(r"^```python\n(.*?)^```", m.group(1), flags=re.M | re.S)


def run(heading: str, tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in blocks(heading):
            exec(compile(b, f"README.md {heading}", "exec"), ns)  # noqa: S102
    return ns


def test_simulation_section_runs(tmp_path, monkeypatch, capsys):
    ns = run("## Simulation, bootstrap and power", tmp_path, monkeypatch)
    assert ns["Y"].shape == (ns["m"].nobs, 200)
    assert len(ns["reps"]) == 200 and ns["reps"]["converged"].mean() > 0.95
    ci = ns["boot"].confint()
    assert (ci.iloc[:, 0] < ci.iloc[:, 1]).all()
    assert "Days" in capsys.readouterr().out


def test_big_data_section_runs(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    ns = run("## Big data and devices", tmp_path, monkeypatch)
    a, b, c = (ns[k].fixef.to_numpy() for k in ("m_mem", "m_file", "m_shard"))
    np.testing.assert_allclose(b, a, rtol=1e-8)
    np.testing.assert_allclose(c, a, rtol=1e-8)


def test_glmer_section_runs(tmp_path, monkeypatch, capsys):
    ns = run("## Generalized linear mixed models", tmp_path, monkeypatch)
    g, g25 = ns["g"], ns["g25"]
    # lme4's glmer with its PIRLS iterated to convergence (tests/data/reference_glmm/cbpp_cbind_laplace.json,
    # "tight_pirls")
    np.testing.assert_allclose(g.fixef.to_numpy(), [-1.398532, -0.992316, -1.128664, -1.580316], atol=1e-4)
    assert g25.nagq == 25 and abs(g25.fixef.iloc[0] - g.fixef.iloc[0]) < 0.01
    out = capsys.readouterr().out
    assert "Generalized linear mixed model fit by maximum likelihood" in out and "Pr(>Chisq)" in out
    p = ns["p"].to_numpy()
    assert p.shape == (5,) and np.all((p > 0) & (p < 1))
    assert 0 < ns["pw"].power <= 1 and list(ns["curve"]["size"]) == [10, 30]
