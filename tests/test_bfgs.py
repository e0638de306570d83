"""optim.bfgs: the one quasi-Newton core (fit, refits, profiles)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhlm._src.optim.bfgs import minimize, quasi_newton


def _vg(f):
    return jax.jit(jax.value_and_grad(lambda x: (f(x), {}), has_aux=True))


A = jnp.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]]) * 100.0
b = jnp.array([1.0, -2.0, 3.0])


def quad(x):
    return 0.5 * x @ A @ x - b @ x


def test_seeded_quasi_newton_is_newton_on_a_quadratic():
    res = quasi_newton(_vg(quad), jnp.zeros(3), seed_hessian=True)
    np.testing.assert_allclose(res["x"], np.linalg.solve(A, b), rtol=1e-6)
    assert bool(res["converged"])
    assert int(res["it"]) <= 6  # 1 call at x0, 3 probes, the Newton step and the confirming call
    plain = quasi_newton(_vg(quad), jnp.zeros(3))
    assert int(plain["it"]) > int(res["it"])


def test_given_inverse_hessian_starts_with_the_newton_step():
    res = quasi_newton(_vg(quad), jnp.zeros(3), Hinv0=jnp.linalg.inv(A))
    np.testing.assert_allclose(res["x"], np.linalg.solve(A, b), rtol=1e-8)
    assert int(res["it"]) <= 3 and bool(res["converged"])


def test_seed_that_is_not_positive_definite_falls_back():
    f = lambda x: (x[0] ** 2 - 1.0) ** 2 + 10.0 * x[1] ** 2  # noqa: E731  (concave in x[0] near 0)
    res = quasi_newton(_vg(f), jnp.array([0.1, 0.3]), seed_hessian=True)
    assert bool(res["converged"])
    np.testing.assert_allclose(np.abs(res["x"]), [1.0, 0.0], atol=1e-5)


def test_minimize_rosenbrock():
    f = lambda x: (1 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2  # noqa: E731
    x, fx, g, conv = jax.jit(lambda x0: minimize(f, x0))(jnp.array([-1.2, 1.0]))
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-5)
    assert bool(conv) and float(fx) < 1e-10


def test_maxit_one_evaluates_at_the_start():
    res = quasi_newton(_vg(quad), jnp.array([0.1, 0.2, 0.3]), maxit=1)
    np.testing.assert_allclose(res["x"], [0.1, 0.2, 0.3])
    assert float(res["f"]) == float(quad(jnp.array([0.1, 0.2, 0.3])))


def _smooth(x):  # strictly convex, not quadratic: the Hessian varies with x
    return jnp.sum(jnp.exp(0.3 * x)) + 0.5 * x @ A @ x / 100.0 - b @ x + 0.1 * jnp.sum(x ** 4)


def test_final_hessian_is_the_hessian_at_the_optimum_and_leaves_the_search_alone():
    x0 = jnp.array([0.3, -0.2, 0.1])
    plain = quasi_newton(_vg(_smooth), x0, seed_hessian=True)
    res = quasi_newton(_vg(_smooth), x0, seed_hessian=True, final_hessian=True)
    np.testing.assert_array_equal(res["x"], plain["x"])  # the same search, the same stop
    assert int(res["it"]) == int(plain["it"]) and bool(res["converged"])
    exact = jax.hessian(_smooth)(res["x"])
    np.testing.assert_allclose(res["hessian"], exact, rtol=1e-7, atol=1e-9)
    assert "hessian" not in plain


def test_final_hessian_also_when_the_search_stops_at_maxit():
    res = quasi_newton(_vg(_smooth), jnp.array([2.0, 2.0, 2.0]), maxit=2, final_hessian=True)
    assert not bool(res["converged"]) and int(res["it"]) == 2
    np.testing.assert_allclose(res["hessian"], jax.hessian(_smooth)(res["x"]), rtol=1e-7, atol=1e-9)


def test_final_hessian_under_jit_and_vmap():
    run = jax.jit(jax.vmap(lambda x0: quasi_newton(_vg(_smooth), x0, final_hessian=True)["hessian"]))
    X0 = jnp.array([[0.3, -0.2, 0.1], [1.0, 0.5, -1.0]])
    H = run(X0)
    for k in range(2):
        xk = quasi_newton(_vg(_smooth), X0[k])["x"]
        np.testing.assert_allclose(H[k], jax.hessian(_smooth)(xk), rtol=1e-6, atol=1e-8)
