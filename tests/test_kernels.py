"""Block kernels: the closed-form reverse pass of the batched elimination, the dense block."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhlm._src.engine import kernels as K
from jaxhlm._src.engine import soa


def _spec(q, entries):
    return K.ElimSpec((q, tuple(entries)))


def _plain(theta, S, spec):
    """The elimination written with jnp.linalg (no custom rule): the reference derivative."""
    q = spec.q
    T = jnp.zeros((q, q), theta.dtype)
    for k, r, c in spec.entries:
        T = T.at[r, c].set(theta[k])
    Sb = jnp.moveaxis(S, -1, 0)
    M = jnp.einsum("ki,jkl,lm->jim", T, Sb, T) + jnp.eye(q)
    W = jnp.einsum("ik,jkl,ml->jim", T, jnp.linalg.inv(M), T)
    return jnp.sum(jnp.linalg.slogdet(M)[1]), jnp.moveaxis(W, 0, -1)


SPECS = {
    "q1": _spec(1, [(0, 0, 0)]),
    "q2": _spec(2, [(0, 0, 0), (1, 1, 0), (2, 1, 1)]),
    "q2_diag": _spec(2, [(0, 0, 0), (1, 1, 1)]),
    "q3_two_terms": _spec(3, [(0, 0, 0), (1, 1, 0), (2, 1, 1), (3, 2, 2)]),
    "q4_full": _spec(4, [(k, r, c) for k, (r, c) in enumerate((r, c) for c in range(4) for r in range(c, 4))]),
    "q2_square": _spec(2, [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]),  # profiles use full T
}


@pytest.mark.parametrize("name", list(SPECS))
def test_eliminate_value_and_reverse_pass_equal_plain_autodiff(name):
    spec = SPECS[name]
    q, m = spec.q, len(spec.entries)
    rng = np.random.default_rng(0)
    L = 7
    Z = rng.normal(size=(L, 5, q))
    S = jnp.asarray(np.moveaxis(np.einsum("lni,lnj->lij", Z, Z), 0, -1))
    theta = jnp.asarray(rng.normal(size=m))
    C = jnp.asarray(rng.normal(size=(q, q, L)))

    def loss(fn, th, S):
        ld, W = fn(th, S, spec)
        return 0.7 * ld + jnp.sum(C * W)

    v1, g1 = jax.value_and_grad(lambda th, S: loss(K.eliminate, th, S), argnums=(0, 1))(theta, S)
    v2, g2 = jax.value_and_grad(lambda th, S: loss(_plain, th, S), argnums=(0, 1))(theta, S)
    assert float(v1) == pytest.approx(float(v2), rel=1e-12)
    np.testing.assert_allclose(g1[0], g2[0], rtol=1e-9, atol=1e-11)
    sym = 0.5 * (g2[1] + jnp.swapaxes(g2[1], 0, 1))  # S is symmetric: compare symmetric parts
    np.testing.assert_allclose(g1[1], sym, rtol=1e-9, atol=1e-11)
    # second order (reverse over reverse) through the custom rule
    H1 = jax.hessian(lambda th: loss(_plain, th, S))(theta)
    H2 = jax.jacrev(jax.grad(lambda th: loss(K.eliminate, th, S)))(theta)
    np.testing.assert_allclose(H2, H1, rtol=1e-8, atol=1e-10)


def test_sandwich_sum_and_level_products():
    rng = np.random.default_rng(1)
    q, m, r, L = 3, 4, 2, 6
    B, C = jnp.asarray(rng.normal(size=(q, m, L))), jnp.asarray(rng.normal(size=(q, r, L)))
    A = rng.normal(size=(q, q, L))
    W = jnp.asarray(A + np.swapaxes(A, 0, 1))
    np.testing.assert_allclose(K.sandwich_sum(B, W), np.einsum("uaj,uvj,vbj->ab", B, W, B), rtol=1e-12)
    np.testing.assert_allclose(K.sandwich_sum(B, W, C), np.einsum("uaj,uvj,vbj->ab", B, W, C), rtol=1e-12)
    np.testing.assert_allclose(K.level_sandwich(B, W, C), np.einsum("uaj,uvj,vbj->abj", B, W, C), rtol=1e-12)
    v = jnp.asarray(rng.normal(size=(q, L)))
    np.testing.assert_allclose(K.level_apply(W, v), np.einsum("uvj,vj->uj", W, v), rtol=1e-12)


@pytest.mark.parametrize("size", [20, K.SMALL_DENSE + 40])
def test_dense_block_small_and_large_agree_with_numpy(size):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(size, size))
    M = jnp.asarray(A @ A.T / size + np.eye(size))
    R = jnp.asarray(rng.normal(size=(size, 3)))
    ld, G = K.dense_eliminate(M, R)
    assert float(ld) == pytest.approx(np.linalg.slogdet(np.asarray(M))[1], rel=1e-11)
    np.testing.assert_allclose(G, np.asarray(R).T @ np.linalg.solve(M, R), rtol=1e-10)
    # derivatives through the host (LAPACK) path equal XLA's
    dM = jnp.asarray(rng.normal(size=(size, size)))
    dM = dM + dM.T
    f = lambda t: K.dense_eliminate(M + t * dM, R)  # noqa: E731
    _, (dld, dG) = jax.jvp(f, (0.0,), (1.0,))
    Minv = np.linalg.inv(np.asarray(M))
    assert float(dld) == pytest.approx(float(np.sum(Minv * np.asarray(dM))), rel=1e-9)
    Zm = Minv @ np.asarray(R)
    np.testing.assert_allclose(dG, -Zm.T @ np.asarray(dM) @ Zm, rtol=1e-8)


def test_structural_zeros_are_skipped():
    assert soa.is_zero(0.0) and not soa.is_zero(jnp.zeros(1))
    X = [[1.0, 0.0], [0.0, 2.0]]
    assert soa.mm(X, X) == [[1.0, 0.0], [0.0, 4.0]]


def test_large_dense_block_second_derivatives():
    """Forward over reverse mode through the host path (the Satterthwaite Hessians of large
    crossed fits): equal to central differences of its exact gradient."""
    rng = np.random.default_rng(6)
    size = K.SMALL_DENSE + 40
    A = rng.normal(size=(size, size))
    M = jnp.asarray(A @ A.T / size + np.eye(size))
    R = jnp.asarray(rng.normal(size=(size, 3)))
    dM = jnp.asarray(rng.normal(size=(size, size)) * 0.1)
    dM = dM + dM.T
    dR = jnp.asarray(rng.normal(size=(size, 3)))

    def f(t):
        ld, G = K.dense_eliminate(M + t[0] * dM, R + t[1] * dR)
        return ld + jnp.sum(G) * t[0] + jnp.sum(G)

    t0 = jnp.array([0.1, -0.2])
    H = jax.jacfwd(jax.grad(f))(t0)
    g = jax.grad(f)
    h = 1e-5
    Hd = np.stack([(np.asarray(g(t0 + h * e)) - np.asarray(g(t0 - h * e))) / (2 * h) for e in np.eye(2)])
    np.testing.assert_allclose(H, Hd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("idx", [[0, 1, 2], [2, 3], [4], [3, 0, 5], []])
def test_place_puts_values_at_static_positions_without_a_scatter(idx):
    like = jnp.zeros(6)
    vals = jnp.arange(1.0, len(idx) + 1.0)
    got = jax.jit(lambda v: K._place(v, np.array(idx, dtype=np.int64), like))(vals)
    want = np.zeros(6)
    want[idx] = np.arange(1.0, len(idx) + 1.0)
    np.testing.assert_array_equal(np.asarray(got), want)
    hlo = jax.jit(lambda v: K._place(v, np.array(idx, dtype=np.int64), like)).lower(vals).as_text()
    assert "scatter" not in hlo


def test_scalar_fill_derivatives_equal_autodiff_through_the_levels():
    rng = np.random.default_rng(3)
    L, m, size = 7, 40, 9
    S = rng.uniform(1.0, 5.0, L)
    v = rng.uniform(-1.0, 2.0, m)
    a = rng.integers(0, L, m)
    dest = np.sort(rng.integers(0, size, m))
    ct = rng.standard_normal(size)

    def plain(t):
        W = t * t / (t * t * S + 1.0)
        return jnp.dot(ct, jax.ops.segment_sum(v * W[a], dest, size)) ** 2

    def kernel(t):
        W = t * t / (t * t * S + 1.0)
        return jnp.dot(ct, K.scalar_fill(t, W, S, v, a, dest, size)) ** 2

    for t in (0.7, -1.3, 0.0):
        np.testing.assert_allclose(kernel(t), plain(t), rtol=1e-13)
        np.testing.assert_allclose(jax.grad(kernel)(t), jax.grad(plain)(t), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(jax.jacrev(jax.grad(kernel))(t), jax.jacrev(jax.grad(plain))(t), rtol=1e-11)
        np.testing.assert_allclose(jax.jacfwd(jax.grad(kernel))(t), jax.jacfwd(jax.grad(plain))(t), rtol=1e-11)
