"""Prediction / confidence intervals: the exact prediction-error variance against an independent
simulation of the BLUP, and the merTools-style simulation against merTools."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from inference_refs import EXTRA, data, fit
from jaxhlm._src.infer import intervals as iv
from jaxhlm._src.infer import kenward_roger as kr


@pytest.fixture(scope="module")
def sleep():
    d = pd.read_csv(os.path.join(os.path.dirname(EXTRA), "sleepstudy.csv"))
    d["Subject"] = d["Subject"].astype(str)
    return jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", d)


def _blup_errors(m, Xn, Zn, n_sims=20000, seed=1):
    """Prediction errors of x'beta_hat + z'b_hat for data simulated from the fit (theta, sigma fixed):
    solve the mixed-model equations directly with dense matrices."""
    d = m.design
    Z = kr._full_z(d).toarray()
    Lam = kr._lambda(m, Z.shape[1])
    X, s, beta = d.X, m.sigma, m.fixef.to_numpy()
    ZL = Z @ Lam
    p, Q = X.shape[1], Z.shape[1]
    C = np.block([[X.T @ X, X.T @ ZL], [ZL.T @ X, ZL.T @ ZL + np.eye(Q)]])
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_sims, Q)) * s
    y = X @ beta + u @ ZL.T + rng.standard_normal((n_sims, len(X))) * s
    sol = np.linalg.solve(C, np.hstack([y @ X, y @ ZL]).T).T
    return (sol[:, :p] - beta) @ Xn.T + (sol[:, p:] - u) @ (Zn @ Lam).T


def test_conditional_pev_matches_simulation_one_factor(sleep):
    new = pd.DataFrame({"Days": [3.0, 12.0, 5.0], "Subject": ["308", "308", "335"]})
    got = sleep.predict(new, interval="confidence")
    levels = list(sleep.design.factors[0].levels)
    Zn = np.zeros((3, 2 * len(levels)))
    for k, (dd, sub) in enumerate(zip(new["Days"], new["Subject"])):
        j = levels.index(sub)
        Zn[k, 2 * j], Zn[k, 2 * j + 1] = 1.0, dd
    err = _blup_errors(sleep, np.column_stack([np.ones(3), new["Days"]]), Zn)
    np.testing.assert_allclose(got["se"], err.std(axis=0), rtol=0.02)
    # ... and it is narrower than vcov + condVar, which ignores cov(beta_hat, b_hat)
    V = sleep.vcov.to_numpy()
    x = np.array([1.0, 3.0])
    cv = sleep.ranef_condvar["Subject"][levels.index("308")]
    naive = np.sqrt(x @ V @ x + x @ cv @ x)
    assert got["se"].iloc[0] < 0.9 * naive


def test_conditional_pev_matches_simulation_crossed():
    m = fit("crossed_cond")
    d = data("crossed_cond")
    new = d.iloc[[0, 5, 17]][["subj", "item", "cond"]].reset_index(drop=True)
    got = m.predict(new, interval="confidence")
    des = m.design
    offs, qf, Q = kr._z_layout(des)
    Zn = np.zeros((3, Q))
    for f, fac in enumerate(des.factors):
        for k in range(3):
            if fac.name == "subj":
                j = list(fac.levels).index(new["subj"][k])
                Zn[k, offs[f] + j * qf[f]] = 1.0
                Zn[k, offs[f] + j * qf[f] + 1] = new["cond"][k]
            else:
                j = list(fac.levels).index(new["item"][k])
                Zn[k, offs[f] + j * qf[f]] = 1.0
    err = _blup_errors(m, np.column_stack([np.ones(3), new["cond"]]), Zn, n_sims=20000)
    np.testing.assert_allclose(got["se"], err.std(axis=0), rtol=0.02)


def test_blocked_and_dense_paths_agree(sleep):
    new = pd.DataFrame({"Days": [0.0, 9.0, 4.0], "Subject": ["308", "372", "350"]})
    sel = list(range(len(sleep.design.terms)))
    Xn, terms, _ = iv.new_design(sleep, new, sel, True)
    zf, codes = iv._rows_by_factor(sleep, Xn, terms, 3)
    T = kr.factor_T(sleep)[0]
    w = zf[0] @ T
    a = iv._pev_blocked(sleep, Xn, w, codes[0])
    offs, qf, Q = kr._z_layout(sleep.design)
    wf = np.zeros((3, Q))
    for k in range(3):
        wf[k, codes[0][k] * qf[0]:(codes[0][k] + 1) * qf[0]] = w[k]
    b = iv._pev_dense(sleep, Xn, wf, 10_000)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)


def test_prediction_adds_sigma_and_new_levels_get_g(sleep):
    new = pd.DataFrame({"Days": [3.0, 3.0], "Subject": ["308", "new"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxhlm.NewLevelsWarning)
        c = sleep.predict(new, interval="confidence")
        p = sleep.predict(new, interval="prediction", level=0.9)
        pop = sleep.predict(new, interval="confidence", re_form="~0")
        point = sleep.predict(new).to_numpy()
    s2 = sleep.sigma ** 2
    np.testing.assert_allclose(p["se"] ** 2, c["se"] ** 2 + s2, rtol=1e-12)
    x = np.array([1.0, 3.0])
    V = sleep.vcov.to_numpy()
    G = sleep.varcorr
    g11, g22 = G.vcov.iloc[0], G.vcov.iloc[1]
    g12 = G.vcov.iloc[2]
    np.testing.assert_allclose(c["se"].iloc[1] ** 2, x @ V @ x + g11 + 9 * g22 + 6 * g12, rtol=1e-10)
    np.testing.assert_allclose(pop["se"] ** 2, x @ V @ x, rtol=1e-10)
    np.testing.assert_allclose((p["upr"] - p["fit"]) / p["se"], 1.6448536269514722, rtol=1e-12)
    assert list(c.columns) == ["fit", "se", "lwr", "upr"]
    np.testing.assert_allclose(c["fit"], point)


def test_simulate_matches_mertools():
    with open(os.path.join(EXTRA, "predict_interval_sleepstudy.json")) as fh:
        ref = json.load(fh)
    d = pd.read_csv(os.path.join(os.path.dirname(EXTRA), "sleepstudy.csv"))
    d["Subject"] = d["Subject"].astype(str)
    m = jaxhlm.lmer(ref["formula"], d)
    new = pd.DataFrame(ref["newdata"])
    new["Subject"] = new["Subject"].astype(str)
    for kind in ("prediction", "confidence"):
        s = m.predict(new, interval=kind, method="simulate", n_sims=ref["n_sims"], seed=7)
        w_r = np.array(ref[kind]["upr"]) - np.array(ref[kind]["lwr"])
        # the same algorithm as merTools: widths agree to Monte Carlo error (~1%)
        np.testing.assert_allclose(s["upr"] - s["lwr"], w_r, rtol=0.03)
        np.testing.assert_allclose(0.5 * (s["upr"] + s["lwr"]), ref[kind]["fit"], atol=0.03 * w_r.max())
    # merTools overstates the conditional uncertainty (it ignores cov(beta_hat, b_hat))
    a = m.predict(new, interval="confidence")
    assert np.all((a["upr"] - a["lwr"]).to_numpy() < np.array(ref["confidence"]["upr"]) - np.array(ref["confidence"]["lwr"]))


def test_simulate_is_reproducible_and_errors(sleep):
    new = pd.DataFrame({"Days": [1.0], "Subject": ["308"]})
    a = sleep.predict(new, interval="prediction", method="simulate", n_sims=500, seed=3)
    b = sleep.predict(new, interval="prediction", method="simulate", n_sims=500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(jaxhlm.ArgumentError, match="interval"):
        sleep.predict(new, interval="tolerance")
    with pytest.raises(jaxhlm.ArgumentError, match="method"):
        sleep.predict(new, interval="prediction", method="bootstrap")
    with pytest.raises(jaxhlm.ArgumentError, match="level"):
        sleep.predict(new, interval="prediction", level=95)


def test_default_newdata_is_the_fitted_rows(sleep):
    out = sleep.predict(interval="confidence")
    assert len(out) == sleep.nobs
    np.testing.assert_allclose(out["fit"], sleep.fitted.to_numpy())


def test_weighted_fit_confidence_se_is_the_dense_pev():
    """With prior weights the prediction-error variance of ``x'beta + z'b`` for a seen level is
    ``sigma^2 [x; Lambda'z]' (C'WC + diag(0, I))^{-1} [x; Lambda'z]``, ``C = [X, Z Lambda]``."""
    d = jaxhlm.datasets.load("sleepstudy").copy()
    d["w"] = np.random.default_rng(3).uniform(0.3, 3.0, len(d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", d, weights="w")
    new = pd.DataFrame({"Days": [0.0, 9.0, 4.0], "Subject": ["308", "372", "350"]})
    got = m.predict(new, interval="confidence")["se"].to_numpy()
    des = m.design
    offs, qf, Q = kr._z_layout(des)
    Z = kr._full_z(des).toarray()
    T = kr.factor_T(m)[0]
    Lam = np.kron(np.eye(des.factors[0].nlevels), T)
    C = np.hstack([des.X, Z @ Lam])
    W = np.asarray(des.weights)
    P = C.T @ (W[:, None] * C)
    P[des.p:, des.p:] += np.eye(Q)
    levels = list(des.factors[0].levels)
    want = []
    for days, subj in zip(new["Days"], new["Subject"]):
        x = np.array([1.0, days])
        z = np.zeros(Q)
        j = [str(v) for v in levels].index(str(subj))
        z[j * qf[0]:(j + 1) * qf[0]] = [1.0, days]
        v = np.r_[x, Lam.T @ z]
        want.append(np.sqrt(m.sigma ** 2 * v @ np.linalg.solve(P, v)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
