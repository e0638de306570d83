"""lmerTest's type I/II/III hypothesis matrices, exactly (they depend on X only, not on the fit)."""
from __future__ import annotations

import numpy as np
import pytest

from inference_refs import fit, ids_with, ref
from jaxhlm._src.infer.hypotheses import doolittle_upper, hypotheses, zapsmall

CASES = sorted({(cid, t) for t in (1, 2, 3) for kr in ("", "_kr") for cid in ids_with(f"anova_type{t}{kr}")})


@pytest.mark.parametrize("case_id,typ", CASES, ids=[f"{c}-type{t}" for c, t in CASES])
def test_hypothesis_matrices_match_lmertest(case_id, typ):
    r = ref(case_id)
    key = f"anova_type{typ}" if f"anova_type{typ}" in r else f"anova_type{typ}_kr"
    want = r[key]["hypotheses"]
    got = hypotheses(fit(case_id), type=typ)
    assert len(got) == len(want)
    for (lab, L), (rlab, W) in zip(got.items(), want.items()):
        W = np.array(W["matrix"], dtype=float).reshape(len(W["matrix"]), -1)
        assert L.shape == W.shape, (lab, rlab)
        np.testing.assert_allclose(L, W, atol=1e-9, err_msg=f"{case_id} type {typ} {lab}")


def test_term_labels_follow_the_formula():
    assert list(hypotheses(fit("oats_unbal"), 3)) == ["Variety", "nitro", "Variety:nitro"]
    assert list(hypotheses(fit("cake_slopes_only"), 2)) == ["temp", "temp:recipe"]


def test_doolittle_is_the_ldl_factor():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    S = X.T @ X
    U = doolittle_upper(S, eps=0.0)
    L = U.T
    assert np.allclose(np.diag(L), 1) and np.allclose(np.triu(L, 1), 0)
    D = np.linalg.solve(L, S) @ np.linalg.inv(L.T)
    np.testing.assert_allclose(D, np.diag(np.diag(D)), atol=1e-10)
    np.testing.assert_allclose(L @ D @ L.T, S, rtol=1e-12)


def test_zapsmall_is_rs():
    x = np.array([1.0, 1 / 3, 1e-9, -2.5e-8])
    np.testing.assert_array_equal(zapsmall(x), np.round(x, 7))
    np.testing.assert_array_equal(zapsmall(100 * x), np.round(100 * x, 5))
    assert zapsmall(np.zeros(3)).tolist() == [0, 0, 0]


def test_type3_is_coding_independent():
    a = hypotheses(fit("oats_contrsum"), 3)
    b = hypotheses(fit("oats_treatment"), 3)
    ma, mb = fit("oats_contrsum"), fit("oats_treatment")
    for (la, La), (lb, Lb) in zip(a.items(), b.items()):
        # the same hypotheses on the cell means: L_a beta_a = L_b beta_b for the fitted betas
        np.testing.assert_allclose(La @ ma.fixef.to_numpy(), Lb @ mb.fixef.to_numpy(), rtol=1e-6, atol=1e-6)
