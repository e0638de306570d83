"""One quasi-Newton core (BFGS with exact gradients) for every search in jaxhlm, traceable.

:func:`quasi_newton` runs as one ``lax.while_loop`` with a single gradient call site per
iteration, so a compiled program holds one copy of the gradient. Its configurations: the fit
(moment start, inverse Hessian seeded by forward differences of the gradient), refits of
simulated responses (inverse Hessian given: the original fit's), and profiles (plain start).
Theta is searched without bounds (the criterion is even in every column of ``T_f``; signs are
normalised afterwards, ENGINE-NOTES pitfall 2).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["quasi_newton", "minimize"]


def quasi_newton(vg, x0, maxit=500, dec_tol=1e-9, ftol=1e-14, max_step=0.5, seed_hessian=False, aux_shapes=None,
                 Hinv0=None, warm=False, aux0=None, final_hessian=False, hess_step=1e-4, use_hinv0=None):
    """BFGS with one gradient call site per iteration (a compact compiled program).

    ``vg(x) -> ((f, aux), g)`` (``jax.value_and_grad(..., has_aux=True)``). Each iteration of the
    ``lax.while_loop`` makes exactly one call of ``vg``: first at ``x0``, then line-search trials
    (Armijo) along ``-H_inv g``; a failed trial shrinks the step five-fold.

    Starting inverse Hessian: with ``seed_hessian``, the next ``m = len(x0)`` calls evaluate the
    gradient at ``x0 + h_i e_i`` and, when the forward-difference Hessian is positive definite,
    its inverse seeds BFGS and the first step is the Newton step (capped at ``max(1, |x0|)`` in
    the max norm). From a good start (:func:`start_theta`) this halves or quarters the number of
    gradient calls. Otherwise (or when the seed is not positive definite) the first step is
    ``-g`` capped at ``max_step`` and ``H_inv`` is then seeded with the Shanno-Phua scale
    ``s'y / y'y``.

    Stops when the predicted decrease ``g' H_inv g`` is below ``dec_tol`` (deviance units, so the
    test does not loosen as n grows), when an accepted step changes ``f`` by at most
    ``ftol (1 + |f|)`` with a small predicted decrease, or when the line search fails (converged
    only if the predicted decrease is small).

    ``Hinv0`` (optional): a starting inverse Hessian (e.g. the original fit's for refits of
    simulated responses, whose optima lie close by); the first step is then the quasi-Newton
    step ``-Hinv0 g`` capped at ``max(1, |x0|)``. ``aux_shapes`` (a pytree of arrays or shapes
    like ``vg``'s auxiliary output) saves a trace.

    ``seed_hessian`` and ``use_hinv0`` (whether ``Hinv0`` is used; default: when given) may be
    traced booleans: one compiled program then serves a fit (seeded or plain start) and refits
    from a given inverse Hessian (the GLMM search program, :mod:`~jaxhlm._src.optim.glmm_fit`).

    ``warm`` (GLMM fits, whose every evaluation solves an inner problem): ``vg`` is called as
    ``vg(x, aux)`` with the auxiliary output of the best point so far (``aux0`` before the first
    evaluation; default zeros), so the inner iteration starts where the last accepted one ended.

    ``final_hessian`` (GLMM fits and refits): when the search ends (converged, failed or at
    ``maxit``; with ``maxit = 0`` right after the evaluation at ``x0``), the same call site evaluates the gradient at ``x +- h_i e_i``
    (``h_i = hess_step max(1, |x_i|)``, ``2 m`` more calls, not counted in ``maxit``) and the
    result holds their central-difference Hessian ``hessian`` (symmetrised): exact gradients
    differenced, ``O(h^2)`` accurate, without a second compiled copy of the gradient.

    Returns
    -------
    dict with ``x, f, g, aux`` (at the best point), ``it`` (gradient calls of the search),
    ``converged``, ``Hinv`` (the final BFGS inverse Hessian) and, with ``final_hessian``,
    ``hessian``.
    """
    m = x0.shape[0]
    dtype = x0.dtype
    eye = jnp.eye(m, dtype=dtype)
    if aux_shapes is None:  # shapes only: traces vg once more (pass them to save the trace)
        aux_shapes = jax.eval_shape(lambda x: vg(x)[0][1], x0)
    call = (lambda s: vg(s["xt"], s["aux"])) if warm else (lambda s: vg(s["xt"]))
    if isinstance(seed_hessian, bool):
        nseed = m if seed_hessian else 0
        can_seed = bool(nseed)
    else:  # traced: decided when the program runs
        nseed = jnp.where(seed_hessian, m, 0)
        can_seed = True
    given = (Hinv0 is not None) if use_hinv0 is None else (jnp.asarray(use_hinv0) & (Hinv0 is not None))
    hstep = 1e-4 * jnp.maximum(1.0, jnp.abs(x0))

    def cond(s):
        if final_hessian:  # at least the evaluation at x0 (maxit = 0: value and Hessian there)
            return (~s["done"]) & ((s["it"] < jnp.maximum(maxit, 1)) | (s["hp"] > 0))
        return (~s["done"]) & (s["it"] < maxit)

    def body(s):
        res = call(s)  # the one call site of vg
        if final_hessian:  # once the search is over: one probe of the final Hessian per call
            return jax.lax.cond(s["hp"] > 0, hess_probe, search, s, res)
        return search(s, res)

    def hess_probe(s, res):
        ge = res[1]
        k = s["hp"] - 1  # 0..2m-1: +h e_k for k < m, then -h e_{k-m}
        G = s["G"].at[k].set(ge)
        last = k == 2 * m - 1
        h = hess_step * jnp.maximum(1.0, jnp.abs(s["x"]))
        kn = jnp.minimum(k + 1, 2 * m - 1)
        xt = s["x"] + jnp.where(kn < m, 1.0, -1.0) * h * eye[kn % m]
        return {**s, "G": G, "hp": jnp.where(last, 0, s["hp"] + 1), "done": last, "xt": xt}

    def search(s, res):
        (fe, auxe), ge = res
        fin = jnp.isfinite(fe) & jnp.all(jnp.isfinite(ge))
        x, f, g, Hi, d, a = s["x"], s["f"], s["g"], s["Hi"], s["d"], s["a"]
        start = s["it"] == 0
        phase = s["phase"]  # 1..nseed: this call is a finite-difference probe for the seed
        probe = (phase >= 1) & (phase <= nseed)
        # seed Hessian: column phase-1 from this probe
        col = jnp.where(fin, (ge - g) / hstep[jnp.clip(phase - 1, 0, m - 1)], jnp.nan)
        Hc = jnp.where(probe, s["Hc"].at[:, jnp.clip(phase - 1, 0, m - 1)].set(col), s["Hc"])
        seed_now = probe & (phase == nseed)

        def invert_seed(Hc):
            # positive definite when its Cholesky factor exists with pivots above roundoff
            Hsym = 0.5 * (Hc + Hc.T)
            Hok = jnp.all(jnp.isfinite(Hsym))
            L = jax.lax.linalg.cholesky(jnp.where(Hok, Hsym, eye), symmetrize_input=False)
            piv = jnp.diagonal(L)
            ok = Hok & jnp.all(jnp.isfinite(L)) & (jnp.min(piv) ** 2 > 1e-8 * jnp.max(jnp.abs(jnp.diagonal(Hsym))))
            Li = jax.lax.linalg.triangular_solve(jnp.where(ok, L, eye), eye, left_side=True, lower=True)
            return ok, Li.T @ Li

        # (in a cond: the factorisation runs once, not in every iteration)
        if can_seed:
            spd, Hi_seed = jax.lax.cond(seed_now, invert_seed, lambda Hc: (jnp.asarray(False), eye), Hc)
            spd = seed_now & spd
        else:
            spd, Hi_seed = jnp.asarray(False), eye
        seeded = s["seeded"] | spd

        slope = jnp.dot(g, d)
        armijo = fin & (fe <= f + 1e-4 * a * slope)
        accept = jnp.where(start, fin, armijo & ~probe)
        # BFGS update of the inverse Hessian on an accepted step
        sv = s["xt"] - x
        yv = ge - g
        sy = jnp.dot(sv, yv)
        first = (s["nacc"] == 1) & ~seeded
        Hs = jnp.where(first, eye * jnp.where(sy > 0, sy / jnp.maximum(jnp.dot(yv, yv), 1e-300), 1.0), Hi)
        rho = 1.0 / jnp.where(sy > 0, sy, 1.0)
        Vb = eye - rho * jnp.outer(sv, yv)
        Hb = Vb @ Hs @ Vb.T + rho * jnp.outer(sv, sv)
        Hi_n = jnp.where(accept & ~start, jnp.where(sy > 1e-300, Hb, Hs), Hi)
        Hi_n = jnp.where(spd, Hi_seed, Hi_n)
        xn = jnp.where(accept, s["xt"], x)
        fn = jnp.where(accept, fe, f)
        gn = jnp.where(accept, ge, g)
        auxn = jax.tree_util.tree_map(lambda u, v: jnp.where(accept, u, v), auxe, s["aux"])
        # next trial point
        dn = -Hi_n @ gn
        bad = ~(jnp.dot(gn, dn) < 0) | (seed_now & ~spd)
        dn = jnp.where(bad, -gn, dn)
        nd = jnp.max(jnp.abs(dn))
        newton = (spd | (start & given)) & ~bad  # a Newton-like step from a seeded inverse Hessian
        cap = jnp.where(newton, jnp.maximum(1.0, jnp.max(jnp.abs(xn))), max_step)
        a_acc = jnp.where(start | bad | spd, jnp.minimum(1.0, cap / jnp.maximum(nd, 1e-300)), 1.0)
        d_next = jnp.where(accept | seed_now, dn, d)
        a_next = jnp.where(accept | seed_now, a_acc, 0.2 * a)
        next_phase = jnp.where(start & fin & (nseed > 0), 1, jnp.where(probe, phase + 1, phase))
        next_probe = (next_phase >= 1) & (next_phase <= nseed)
        e_next = eye[jnp.clip(next_phase - 1, 0, m - 1)] * hstep
        xt_next = jnp.where(next_probe, xn + e_next, xn + a_next * d_next)
        # convergence tests that do not scale with n: the predicted decrease g' H_inv g (in
        # deviance units) once H_inv has seen two steps (one after a seed), and a
        # relative-change test guarded by it
        scale = 1.0 + jnp.abs(fn)
        dec = jnp.abs(jnp.dot(gn, Hi_n @ gn))
        tol = dec_tol + 1e-13 * jnp.abs(fn)  # roundoff in f grows with its size
        nacc = s["nacc"] + accept.astype(jnp.int32)
        seen = nacc >= jnp.where(seeded, 2, 3)
        small_dec = accept & seen & (dec <= tol)
        small_step = ~start & armijo & ~probe & (f - fe <= ftol * scale) & seen & (dec <= 1e4 * tol)
        zero_grad = accept & (jnp.max(jnp.abs(gn)) <= 1e-12 * scale)
        ls_fail = ~accept & ~probe & (a_next < 1e-7)
        done = small_dec | small_step | zero_grad | ls_fail | (start & ~fin)
        conv = small_dec | small_step | zero_grad | (ls_fail & (dec <= 1e4 * tol))
        out = {"x": xn, "f": fn, "g": gn, "aux": auxn, "Hi": Hi_n, "d": d_next, "a": a_next,
               "xt": xt_next, "it": s["it"] + 1, "nacc": nacc, "done": done, "conv": conv,
               "phase": next_phase, "Hc": Hc, "seeded": seeded}
        if final_hessian:  # the search ends here: probe the Hessian at the best point next
            over = (done | (s["it"] + 1 >= maxit)) & jnp.isfinite(fn)
            h = hess_step * jnp.maximum(1.0, jnp.abs(xn))
            out.update(G=s["G"], hp=jnp.where(over, 1, 0), done=done & ~over,
                       xt=jnp.where(over, xn + h * eye[0], xt_next))
        return out

    zero_aux = jax.tree_util.tree_map(lambda u: jnp.zeros(u.shape, u.dtype), aux_shapes) if aux0 is None else aux0
    Hi_init = eye if Hinv0 is None else (jnp.asarray(Hinv0, dtype) if use_hinv0 is None
                                         else jnp.where(given, jnp.asarray(Hinv0, dtype), eye))
    s0 = {"x": x0, "f": jnp.asarray(jnp.inf, dtype), "g": jnp.zeros_like(x0), "aux": zero_aux, "Hi": Hi_init,
          "d": jnp.zeros_like(x0), "a": jnp.asarray(1.0, dtype), "xt": x0, "it": jnp.asarray(0),
          "nacc": jnp.asarray(0, jnp.int32), "done": jnp.asarray(False), "conv": jnp.asarray(False),
          "phase": jnp.asarray(0), "Hc": jnp.zeros((m, m), dtype), "seeded": jnp.asarray(given)}
    if final_hessian:
        s0.update(G=jnp.full((2 * m, m), jnp.nan, dtype), hp=jnp.asarray(0))
    s = jax.lax.while_loop(cond, body, s0)
    out = {"x": s["x"], "f": s["f"], "g": s["g"], "aux": s["aux"], "it": s["it"], "converged": s["conv"],
           "Hinv": s["Hi"]}
    if final_hessian:
        h = hess_step * jnp.maximum(1.0, jnp.abs(s["x"]))
        H = (s["G"][:m] - s["G"][m:]) / (2.0 * h[:, None])
        out["hessian"] = 0.5 * (H + H.T)
    return out


def minimize(f, x0, maxit=500, dec_tol=1e-10, max_step=0.5):
    """Minimise a plain traceable ``f`` with :func:`quasi_newton` (profiles): ``(x, f(x), g, converged)``."""
    vg = jax.value_and_grad(lambda x: (f(x), ()), has_aux=True)
    res = quasi_newton(vg, x0, maxit=maxit, dec_tol=dec_tol, max_step=max_step, aux_shapes=())
    return res["x"], res["f"], res["g"], res["converged"]
