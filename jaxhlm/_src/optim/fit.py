"""Minimising the profiled deviance: quasi-Newton with exact autodiff gradients, in one jit.

Theta is optimised *without bounds*: the deviance depends on each ``T_f`` only through
``T_f T_f'``, so it is symmetric in the sign of every column of ``T_f`` and its gradient is 0
where a diagonal element is 0. A bounded method can stop on such a point (ENGINE-NOTES,
pitfall 2); an unbounded search moves through it, the signs are normalised afterwards
(:func:`rectify`, as MixedModels.jl's ``rectify!``), and a fit that still ends on a zero
diagonal element is checked for a lower criterion just off zero (``lmm._escape_zero_saddle``).

:func:`quasi_newton` (BFGS, Armijo line search) runs as one ``lax.while_loop`` with a single
gradient call per iteration, so the compiled program holds one copy of the gradient and a fit is
one compiled call (:func:`fit_theta`); its stopping test is the quasi-Newton decrement
``g' H^{-1} g`` in deviance units, which does not loosen as n grows. Fits start at the moment
estimate of :mod:`start` and, for up to ``SEED_MAX_THETA`` parameters, seed BFGS with a
forward-difference Hessian (``m`` extra gradient calls that typically save 2-4 times as many).

What is compiled, per model structure, is one program (:func:`run_fit`): the moment start, the
loop, and nothing after it. The start, the moment-start flag and the iteration limit are its
arguments, so fits, refits from a given start and single evaluations (:func:`criterion`) share
it; it returns one vector (one transfer), and beta and ``r^2`` follow on the host from the
optimum's ``L_XX`` (:func:`finish`). The conditional modes are a separate program
(:func:`random_effects`), compiled when first asked for. Cold-start costs on nels (2 cores):
tracing and lowering about 0.3 s, XLA compiling 0.8-1 s.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..base.config import jit
from ..engine._legacy_pls import conditional_modes

SEED_MAX_THETA = 12  # up to this many parameters the first m gradient calls seed BFGS's Hessian

__all__ = ["quasi_newton", "bfgs_minimize", "fit_theta", "rectify", "theta_start", "fd_hessian"]


def bfgs_minimize(f, x0, maxit=500, gtol=1e-6, ftol=1e-13, max_step=0.5):
    """BFGS with exact gradients and a backtracking (Armijo) line search; traceable.

    The first step is capped at ``max_step`` (theta units); the inverse Hessian is then seeded
    with the Shanno-Phua scaling ``s'y / y'y``. Stops when ``max|g| <= gtol (1 + |f|)`` gives a
    negligible objective change, when a step changes the objective by less than
    ``ftol (1 + |f|)``, or when the line search cannot decrease the objective.

    Returns
    -------
    x, f(x), grad, iterations, converged flag
    """
    vg = jax.value_and_grad(f)
    f0, g0 = vg(x0)
    m = x0.shape[0]
    eye = jnp.eye(m, dtype=x0.dtype)

    def cond(s):
        return (~s["done"]) & (s["it"] < maxit)

    def body(s):
        x, fx, g, Hi = s["x"], s["f"], s["g"], s["Hi"]
        d = -Hi @ g
        slope = jnp.dot(g, d)
        bad = ~(slope < 0)
        d = jnp.where(bad, -g, d)
        slope = jnp.where(bad, -jnp.dot(g, g), slope)
        nd = jnp.max(jnp.abs(d))
        a0 = jnp.where(s["it"] == 0, jnp.minimum(1.0, max_step / jnp.maximum(nd, 1e-300)), 1.0)

        def ls_cond(c):
            return (~c[3]) & (c[4] < 40)

        def ls_body(c):
            a = c[0]
            fn, gn = vg(x + a * d)
            ok = jnp.isfinite(fn) & (fn <= fx + 1e-4 * a * slope)
            return (jnp.where(ok, a, 0.5 * a), fn, gn, ok, c[4] + 1)

        a, fn, gn, ok, _ = jax.lax.while_loop(ls_cond, ls_body, (a0, fx, g, jnp.asarray(False), 0))
        sv = a * d
        yv = gn - g
        sy = jnp.dot(sv, yv)
        Hi_s = jnp.where(s["it"] == 0, eye * jnp.where(sy > 0, sy / jnp.dot(yv, yv), 1.0), Hi)
        rho = 1.0 / jnp.where(sy > 0, sy, 1.0)
        V = eye - rho * jnp.outer(sv, yv)
        Hn = V @ Hi_s @ V.T + rho * jnp.outer(sv, sv)
        Hn = jnp.where(ok & (sy > 1e-300), Hn, Hi_s)
        xn = jnp.where(ok, x + sv, x)
        fnn = jnp.where(ok, fn, fx)
        gnn = jnp.where(ok, gn, g)
        scale = 1.0 + jnp.abs(fnn)
        conv = ok & ((jnp.max(jnp.abs(gnn)) <= gtol * scale) | (fx - fnn <= ftol * scale))
        return {"x": xn, "f": fnn, "g": gnn, "Hi": Hn, "it": s["it"] + 1, "done": conv | ~ok, "ok": ok}

    s0 = {"x": x0, "f": f0, "g": g0, "Hi": eye, "it": jnp.asarray(0), "done": jnp.asarray(False),
          "ok": jnp.asarray(True)}
    s = jax.lax.while_loop(cond, body, s0)
    return s["x"], s["f"], s["g"], s["it"], s["done"]


def quasi_newton(vg, x0, maxit=500, dec_tol=1e-9, ftol=1e-14, max_step=0.5, seed_hessian=False, aux_shapes=None):
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

    ``aux_shapes`` (a pytree of arrays or shapes like ``vg``'s auxiliary output) saves a trace.

    Returns
    -------
    dict with ``x, f, g, aux`` (at the best point), ``it`` (gradient calls), ``converged``.
    """
    m = x0.shape[0]
    dtype = x0.dtype
    eye = jnp.eye(m, dtype=dtype)
    if aux_shapes is None:  # shapes only: traces vg once more (pass them to save the trace)
        aux_shapes = jax.eval_shape(lambda x: vg(x)[0][1], x0)
    nseed = m if seed_hessian else 0
    hstep = 1e-4 * jnp.maximum(1.0, jnp.abs(x0))

    def cond(s):
        return (~s["done"]) & (s["it"] < maxit)

    def body(s):
        (fe, auxe), ge = vg(s["xt"])
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
        if nseed:
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
        cap = jnp.where(spd, jnp.maximum(1.0, jnp.max(jnp.abs(xn))), max_step)
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
        return {"x": xn, "f": fn, "g": gn, "aux": auxn, "Hi": Hi_n, "d": d_next, "a": a_next,
                "xt": xt_next, "it": s["it"] + 1, "nacc": nacc, "done": done, "conv": conv,
                "phase": next_phase, "Hc": Hc, "seeded": seeded}

    zero_aux = jax.tree_util.tree_map(lambda u: jnp.zeros(u.shape, u.dtype), aux_shapes)
    s0 = {"x": x0, "f": jnp.asarray(jnp.inf, dtype), "g": jnp.zeros_like(x0), "aux": zero_aux, "Hi": eye,
          "d": jnp.zeros_like(x0), "a": jnp.asarray(1.0, dtype), "xt": x0, "it": jnp.asarray(0),
          "nacc": jnp.asarray(0, jnp.int32), "done": jnp.asarray(False), "conv": jnp.asarray(False),
          "phase": jnp.asarray(0), "Hc": jnp.zeros((m, m), dtype), "seeded": jnp.asarray(False)}
    s = jax.lax.while_loop(cond, body, s0)
    return {"x": s["x"], "f": s["f"], "g": s["g"], "aux": s["aux"], "it": s["it"], "converged": s["conv"],
            "Hinv": s["Hi"]}


def _logdet_and_lxx(theta, stats, struct):
    """``log|L|^2`` and ``L_XX`` at ``theta``, by the route the fit takes.

    One factor: per-level sums with a hand-derived reverse pass (onefactor.py; about 5x faster
    than autodiff at 100k levels); its ``[X y]`` block is unrolled, so only for few fixed
    effects (compile time grows as ``p^2 q``). Otherwise the blocked PLS of :mod:`deviance`.
    """
    from ..engine._legacy_pls import pls
    from ..engine.onefactor import level_sums

    if struct.nfactors == 1 and struct.p + 1 <= 16:
        ld, Ssub = level_sums(theta, stats["A_ZtZ"], stats["A_ZtXy"], struct)
        return ld, jax.lax.linalg.cholesky(stats["XytXy"] - Ssub, symmetrize_input=False)
    d = pls(theta, stats, struct)
    return d["ldL2"], d["Lxx"]


def criterion(theta, stats, struct, reml) -> float:
    """The (RE)ML criterion at ``theta`` by the fit's own route and program (one iteration of
    :func:`fit_theta`'s loop, which evaluates at its start), so checking a point compiles nothing."""
    return float(run_fit(theta, stats, struct, reml, maxit=1)["objective"])


def _fit_core(theta0, stats, struct, reml, moment=False, maxit=500):
    from ..engine._legacy_pls import _criterion

    if struct.nfactors == 1 and moment is not False:
        # start from the moment estimate (start.py), computed in the compiled program; ``moment``
        # is an argument of the program (not static), so a refit from a given theta (lmm's
        # zero-saddle check) runs the same program
        from .start import moment_start_one_factor

        theta0 = jnp.where(moment, moment_start_one_factor(stats, struct, theta0), theta0)

    def f_aux(th):
        ld, Lxx = _logdet_and_lxx(th, stats, struct)
        # L_XX and log|L|^2 at the best point travel through the loop: beta and r^2 follow
        # from them on the host (:func:`finish`), so no second forward pass is compiled
        return _criterion(ld, Lxx, stats["n"], struct.p, reml), {"Lxx": Lxx, "ldL2": ld}

    m = struct.p + 1
    aux_shapes = {"Lxx": jax.ShapeDtypeStruct((m, m), theta0.dtype), "ldL2": jax.ShapeDtypeStruct((), theta0.dtype)}
    res = quasi_newton(jax.value_and_grad(f_aux, has_aux=True), theta0, maxit=maxit,
                       seed_hessian=struct.ntheta <= SEED_MAX_THETA, aux_shapes=aux_shapes)
    return {"theta": res["x"], "objective": res["f"], "grad": res["g"], "iterations": res["it"],
            "converged": res["converged"], "Hinv": res["Hinv"], **res["aux"]}


def finish(fit: dict, p: int) -> dict:
    """``fit`` plus ``beta, r2, Lx, ldRX2`` (NumPy), from its ``Lxx``.

    ``L_XX = [[L_X, 0], [l', r]]`` is the Cholesky factor of the Schur complement of ``[X y]``
    (Bates et al. 2015, JSS 67(1), sec. 3.5): ``L_X' beta = l``, ``r^2`` is the penalised
    residual sum of squares and ``log|L_X|^2 = 2 sum log diag(L_X)`` (lme4's ``R_X``).
    """
    import scipy.linalg

    Lxx = np.asarray(fit["Lxx"], dtype=np.float64)
    Lx = Lxx[:p, :p]
    out = dict(fit)
    out["beta"] = scipy.linalg.solve_triangular(Lx.T, Lxx[p, :p], lower=False) if p else np.zeros(0)
    out["r2"] = Lxx[p, p] ** 2
    out["Lx"] = Lx
    out["ldRX2"] = 2.0 * np.sum(np.log(np.diagonal(Lx)))
    return out


def _modes(theta, stats, struct):
    if struct.nfactors == 1 and struct.p + 1 <= 16:
        from ..engine.onefactor import modes

        return {"bA": modes(theta, stats["A_ZtZ"], stats["A_ZtXy"], stats["XytXy"], struct)}
    cm = conditional_modes(theta, stats, struct)
    Ts = cm["Ts"]
    out = {"bA": Ts[0] @ cm["uA"]}
    if struct.nfactors > 1:
        offs = struct.b_offsets
        parts = []
        for f_ in range(1, struct.nfactors):
            qf, Lf, of = struct.q[f_], struct.nlev[f_], offs[f_]
            uf = cm["uB"][of:of + Lf * qf].reshape(Lf, qf)
            parts.append((uf @ Ts[f_].T).reshape(-1))
        out["bB"] = jnp.concatenate(parts)
    return out


_modes_jit = jit(_modes, static_argnames=("struct",))


def random_effects(theta, stats, struct) -> dict:
    """Conditional modes at ``theta`` (NumPy): ``bA (qA, J)`` and, with several factors, ``bB``
    (flat: factor by factor, level by level). A compiled program of its own, so fits whose
    random effects are never looked at do not compile it."""
    from ..base import programcache

    args = (np.asarray(theta, dtype=np.float64), stats)
    return jax.device_get(programcache.call(_modes_jit, "random_effects", args, {"struct": struct}))


_FIT_FIELDS = ("theta", "objective", "grad", "iterations", "converged", "Hinv", "Lxx", "ldL2")


def _fit_shapes(struct):
    m, k = struct.ntheta, struct.p + 1
    return {"theta": (m,), "objective": (), "grad": (m,), "iterations": (), "converged": (),
            "Hinv": (m, m), "Lxx": (k, k), "ldL2": ()}


@jit(static_argnames=("struct", "reml"))
def fit_theta(theta0, stats, moment, maxit, struct, reml):
    """Minimise the (RE)ML criterion over theta: the one compiled program per model structure.

    Returns one float64 vector (one transfer to the host; :func:`_unpack` names its parts):
    theta, the criterion, its gradient, the number of gradient calls, the convergence flag, the
    final inverse-Hessian estimate, and at the optimum ``Lxx`` (the Cholesky factor of the Schur
    complement of ``[X y]``) and ``ldL2 = log|L|^2``, from which :func:`finish` derives beta and
    ``r^2``. With ``moment`` true (one factor only) ``theta0`` is replaced by the moment estimate
    of :func:`jaxhlm._src.start.moment_start_one_factor` (``theta0`` is its fallback); ``maxit``
    bounds the gradient calls (1: just evaluate at ``theta0``). Both are arguments, not static,
    so fits, refits and single evaluations share the program.
    """
    out = _fit_core(theta0, stats, struct, reml, moment, maxit)
    return jnp.concatenate([jnp.ravel(out[k]).astype(jnp.float64) for k in _FIT_FIELDS])


def _unpack(flat: np.ndarray, struct) -> dict:
    out, o = {}, 0
    for k, shape in _fit_shapes(struct).items():
        size = int(np.prod(shape))
        out[k] = flat[o:o + size].reshape(shape)
        o += size
    out["iterations"] = int(out["iterations"])
    out["converged"] = bool(out["converged"])
    return out


def run_fit(theta0, stats, struct, reml, moment=False, maxit=500) -> dict:
    """:func:`fit_theta` with its results on the host (NumPy), named, plus :func:`finish`'s.

    Goes through :mod:`programcache`, so a new process reuses the traced program of an earlier one.
    """
    from ..base import programcache

    args = (np.asarray(theta0, dtype=np.float64), stats)
    args = args + (np.asarray(bool(moment) and struct.nfactors == 1), np.asarray(maxit, dtype=np.int64))
    static = {"struct": struct, "reml": bool(reml)}
    flat = np.asarray(programcache.call(fit_theta, "fit_theta", args, static))
    return finish(_unpack(flat, struct), struct.p)


def _criterion_by_fit_route(theta, stats, struct, reml):
    from ..engine._legacy_pls import _criterion

    ld, Lxx = _logdet_and_lxx(theta, stats, struct)
    return _criterion(ld, Lxx, stats["n"], struct.p, reml)


@jit(static_argnames=("struct", "reml"))
def value_and_grad_theta(theta, stats, struct, reml):
    """Criterion and exact gradient at ``theta``, by the route the fit takes (:func:`_logdet_and_lxx`)."""
    return jax.value_and_grad(_criterion_by_fit_route)(theta, stats, struct, reml)


def fd_hessian(theta, stats, struct, reml, h=1e-4):
    """Hessian of the criterion by central differences of the exact (compiled) gradient."""
    theta = np.asarray(theta, dtype=np.float64)
    m = theta.size
    H = np.zeros((m, m))
    for i in range(m):
        e = np.zeros(m)
        step = h * max(1.0, abs(theta[i]))
        e[i] = step
        gp = np.asarray(value_and_grad_theta(jnp.asarray(theta + e), stats, struct, reml)[1])
        gm = np.asarray(value_and_grad_theta(jnp.asarray(theta - e), stats, struct, reml)[1])
        H[:, i] = (gp - gm) / (2 * step)
    return 0.5 * (H + H.T)


def theta_start(struct) -> np.ndarray:
    """lme4's starting value: 1 on the diagonal of every T_f, 0 below (see also :mod:`start`)."""
    from .start import lme4_start

    return lme4_start(struct)


def rectify(theta: np.ndarray, struct) -> np.ndarray:
    """Flip the sign of every column of ``T_f`` whose diagonal element is negative."""
    theta = np.array(theta, dtype=np.float64)
    rows, cols, facs = map(np.asarray, (struct.theta_row, struct.theta_col, struct.theta_factor))
    for k in np.nonzero(rows == cols)[0]:
        if theta[k] < 0:
            sel = (facs == facs[k]) & (cols == cols[k])
            theta[sel] = -theta[sel]
    return theta
