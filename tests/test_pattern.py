"""engine.pattern: the dense block given by its values on a nonzero pattern."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhlm._src.engine import kernels as K
from jaxhlm._src.engine import pattern as P


def _case(n=14, m=3, density=0.3, seed=0):
    """A sparse SPD matrix's upper-triangle slots (diagonal included, padded past the end)."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n)) * (rng.uniform(size=(n, n)) < density)
    M = B @ B.T * (rng.uniform(size=(n, n)) < 0.5)
    M = np.triu(M) + np.triu(M, 1).T + n * np.eye(n)
    i, j = np.nonzero(np.triu(M))
    up = i * n + j
    lo = j * n + i
    pad = 5
    up = np.concatenate([up, np.full(pad, n * n)])
    lo = np.concatenate([lo, np.full(pad, n * n)])
    vals = np.concatenate([M[i, j], np.zeros(pad)])
    R = rng.standard_normal((n, m))
    return vals, R, up, lo, M


def test_pattern_matrix_places_the_slots_symmetrically():
    vals, R, up, lo, M = _case()
    np.testing.assert_array_equal(np.asarray(P.pattern_matrix(jnp.asarray(vals), up, lo, M.shape[0])), M)


def test_pattern_eliminate_equals_the_dense_block_with_its_derivatives():
    vals, R, up, lo, M = _case()
    n = M.shape[0]
    rng = np.random.default_rng(1)
    cv, cR = rng.standard_normal(vals.shape) * (up < n * n), rng.standard_normal(R.shape)
    w = rng.standard_normal((R.shape[1], R.shape[1]))

    def via(fn, t):  # a scalar function of one parameter moving both the values and R
        v, Rt = jnp.asarray(vals) + t * cv, jnp.asarray(R) + t * cR
        ld, G = fn(v, Rt)
        return ld + jnp.sum(w * G) + t * t * ld

    pat = lambda v, Rt: P.pattern_eliminate(v, Rt, up, lo)  # noqa: E731
    den = lambda v, Rt: K.dense_eliminate(P.pattern_matrix(v, up, lo, n), Rt)  # noqa: E731
    for t in (0.0, 0.3):
        np.testing.assert_allclose(via(pat, t), via(den, t), rtol=1e-12)
        np.testing.assert_allclose(jax.grad(via, 1)(pat, t), jax.grad(via, 1)(den, t), rtol=1e-10)
        for second in (jax.jacrev, jax.jacfwd):
            np.testing.assert_allclose(second(jax.grad(via, 1), 1)(pat, t), second(jax.grad(via, 1), 1)(den, t),
                                       rtol=1e-9)


def test_pattern_eliminate_is_nan_when_not_positive_definite():
    vals, R, up, lo, M = _case()
    bad = np.where(up == lo, -1.0, vals)
    ld, G = jax.jit(P.pattern_eliminate)(jnp.asarray(bad), jnp.asarray(R), up, lo)
    assert np.isnan(float(ld)) and np.all(np.isnan(np.asarray(G)))


@pytest.mark.parametrize("seed", [2, 3])
def test_pattern_eliminate_under_vmap(seed):
    vals, R, up, lo, M = _case(seed=seed)
    V = jnp.stack([jnp.asarray(vals), jnp.asarray(vals) * 1.5])
    out = jax.vmap(lambda v: P.pattern_eliminate(v, jnp.asarray(R), up, lo)[0])(V)
    want = [np.linalg.slogdet(M)[1], np.linalg.slogdet(1.5 * M)[1]]
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12)
