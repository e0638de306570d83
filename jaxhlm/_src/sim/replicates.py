"""Many refits of one design, as a tidy table: the host side of :mod:`jaxhlm._src.optim.batch`.

:func:`refit_design_many` runs the batched program chunk by chunk (with a progress bar) and
:func:`tidy` turns its arrays into one row per replicate: estimates, standard errors,
Satterthwaite df and p-values (the formula of :mod:`jaxhlm._src.infer.satterthwaite`, fed by
the exact derivatives each replicate computed), convergence and singularity flags.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from ..base.errors import ConvergenceWarning, warn
from ..infer.satterthwaite import centred_contrasts, df_from_parts, positive_inverse
from ..optim.batch import RefitSpec, default_chunk, refit_batches
from ..stats.layout import theta_names
from ..stats.xform import original_objective, xform_of
from ..base import dist

__all__ = ["spec_of", "on_spec", "refit_design_many", "tidy", "progress_bar", "chunk_count"]


def spec_of(model, centred: bool = True) -> RefitSpec:
    """The :class:`RefitSpec` of a fitted model (cached on the model).

    A fit whose random-effect columns were searched centred (:mod:`jaxhlm._src.optim.recentre`)
    is refitted on its centred twin (well-conditioned statistics, the same estimates) and the
    replicates' theta mapped back (:func:`tidy`); ``centred=False``: on the user's columns (for
    callers that simulate from the spec's design with the user's theta).
    """
    key = "refit_spec" if centred else "refit_spec_user"
    spec = model.cache.get(key)
    if spec is None:
        twin = model.centred_twin() if centred and hasattr(model, "centred_twin") else None
        base = model if twin is None else twin
        spec = RefitSpec(design=base.design, layout=model.layout, stats=base.stats, reml=model.reml,
                         theta0=model.layout.lifted(base.opt.theta), fixef_names=list(model.design.fixef_names),
                         theta_names=theta_names(model.design),
                         user_design=None if twin is None else model.design,
                         shifts=() if twin is None else tuple(model.opt.search.shifts))
        model.cache[key] = spec
    return spec


def on_spec(params: dict, spec: RefitSpec) -> dict:
    """Simulation parameters (the user's theta) for ``spec``'s design: for a centred twin, theta
    of the centred terms (``Z_c b_c`` has the distribution of ``Z b``). Simulating and refitting
    the twin is what keeps power() working there: in the user's columns sleepstudy's
    ``(Days + 1e4 | Subject)`` lost all of its replicates."""
    if not spec.shifts:
        return params
    from ..optim.recentre import theta_from_centred

    theta = theta_from_centred(params["theta"], spec.layout, spec.user_design, list(spec.shifts), inverse=True)
    return dict(params, theta=theta)


def _user_theta(TH, spec: RefitSpec):
    """The replicates' theta in the user's columns (rows of a centred twin's mapped back)."""
    if not spec.shifts or TH.shape[0] == 0:
        return TH
    from ..optim.recentre import theta_from_centred

    out = np.full_like(TH, np.nan)
    for b in range(TH.shape[0]):
        if np.all(np.isfinite(TH[b])):
            out[b] = theta_from_centred(TH[b], spec.layout, spec.user_design, list(spec.shifts))
    return out


def _in_notebook() -> bool:
    """Running in a Jupyter kernel (output goes to a notebook, not a terminal)."""
    ipy = sys.modules.get("IPython")
    try:
        shell = ipy.get_ipython() if ipy is not None else None
    except Exception:  # pragma: no cover
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _tqdm_class():
    """tqdm's notebook widget in Jupyter when ipywidgets is installed, else the text bar
    (``tqdm.auto`` without ipywidgets warns and falls back to the text bar anyway)."""
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm


def chunk_count(n: int, nrep: int, chunk_size=None) -> int:
    """Number of compiled calls :func:`refit_design_many` makes for ``nrep`` refits of ``n`` rows."""
    cs = default_chunk(n) if chunk_size is None else chunk_size
    try:
        return -(-int(nrep) // max(1, int(min(cs, nrep))))
    except (TypeError, ValueError):  # a bad chunk_size: refit_batches will say so
        return 1


def progress_bar(progress, total: int, label: str, chunks: int = 4):
    """A tqdm bar for ``total`` refits labelled ``label``, or None.

    Parameters
    ----------
    progress : bool, str or None
        None (default): a bar when the work takes 4 or more compiled calls (``chunks``) and
        the output is a terminal or a Jupyter notebook. True / False: always / never. A
        string: always, with that label instead of ``label``.
    total : int
        Number of refits the bar counts.
    label : str
        The task, e.g. ``"bootstrap"``, ``"power"``, ``"refit m0"``.
    chunks : int
        Number of compiled calls the work takes.

    Returns
    -------
    tqdm.tqdm or None
        The bar is opened at once (before anything is compiled) and shows "compiling" until
        the first refits are done; the caller closes it.
    """
    if isinstance(progress, str):
        show, label = True, progress
    elif progress is None:
        show = chunks >= 4 and (sys.stderr.isatty() or _in_notebook())
    else:
        show = bool(progress)
    if not show:
        return None
    return _tqdm_class()(total=int(total), desc=label, unit="fit", dynamic_ncols=True)


def refit_design_many(spec: RefitSpec, Y_chunks, nrep: int, *, satterthwaite: bool = True, batch_size=None,
                      chunk_size=None, progress=None, label: str = "refit", bar=None) -> pd.DataFrame:
    """Refit ``spec`` to ``nrep`` responses yielded by ``Y_chunks(size)``; the table of :func:`tidy`.

    ``progress`` and ``label`` are those of :func:`progress_bar`; ``bar``, a bar opened by the
    caller for several runs, is advanced and left open instead.
    """
    own = bar is None  # (the bar is opened before the first compiled call: compiling shows)
    if own:
        bar = progress_bar(progress, nrep, label, chunks=chunk_count(spec.design.n, nrep, chunk_size))
    first = [True]

    def advance(k):
        if bar is not None:
            if first[0]:
                bar.set_postfix_str("", refresh=False)
                first[0] = False
            bar.update(k)

    try:
        if bar is not None:
            bar.set_postfix_str("compiling", refresh=True)
        res = refit_batches(spec, Y_chunks, nrep, satterthwaite=satterthwaite, batch_size=batch_size,
                            chunk_size=chunk_size, on_chunk=advance)
    finally:
        if bar is not None and own:
            bar.close()
    return tidy(res, spec, satterthwaite)


def _beta_W(Lxx, p):
    """``beta`` and ``(L_X L_X')^{-1}`` from ``L_xx (B, p+1, p+1)``; NaN where ``L_X`` is unusable."""
    Lx = Lxx[:, :p, :p]
    ok = np.all(np.isfinite(Lxx), axis=(1, 2)) & np.all(np.diagonal(Lx, axis1=1, axis2=2) != 0, axis=1)
    safe = np.where(ok[:, None, None], Lx, np.eye(p))
    beta = np.linalg.solve(np.swapaxes(safe, 1, 2), Lxx[:, p, :p][..., None])[..., 0] if p else np.zeros((len(Lxx), 0))
    Li = np.linalg.inv(safe)
    W = np.einsum("bki,bkj->bij", Li, Li)
    return np.where(ok[:, None], beta, np.nan), np.where(ok[:, None, None], W, np.nan)


def tidy(res: dict, spec: RefitSpec, satterthwaite: bool) -> pd.DataFrame:
    """One row per replicate: estimates, SEs, Satterthwaite df and p-values, flags.

    The arrays of :func:`refit_batches` are those of the preconditioned statistics
    (``X_c = X A``, ``y_c = (y - X g) / s``); every column is in the original units:
    ``beta = s A beta_c + g``, ``C = s^2 A C_c A'``, ``sigma = s sigma_c``, the criterion
    shifted as :func:`~jaxhlm._src.stats.xform.original_objective`, the Satterthwaite df
    of ``beta_j`` as those of the contrast ``e_j' A`` of the centred coefficients (invariant).
    """
    layout = spec.layout
    p, n, reml = layout.p, spec.n, bool(spec.reml)
    xf = xform_of(spec.stats, p)
    s_y = float(xf.s)
    B = res["theta"].shape[0]
    TH = _user_theta(layout.rectify(res["theta"]) if B else res["theta"], spec)
    Lxx = res["Lxx"]
    r2 = Lxx[:, p, p] ** 2 * s_y**2
    sigma = np.sqrt(r2 / ((n - p) if reml else n))
    with np.errstate(all="ignore"):
        beta_c, W = _beta_W(Lxx, p)
        beta = s_y * beta_c @ xf.A.T + xf.g
        C = sigma[:, None, None] ** 2 * np.einsum("ij,bjk,lk->bil", xf.A, W, xf.A)
        se = np.sqrt(np.einsum("bkk->bk", C))
        t = beta / se
        s2 = sigma**2
        logw = float(spec.stats.logw)
        objective = np.array([original_objective(o, xf, n, p, reml) if np.isfinite(o) else np.nan
                              for o in res["objective"]])
        dev = res["ldL2"] - logw + r2 / s2 + n * np.log(2.0 * np.pi * s2) if reml else objective
    finite = np.isfinite(res["objective"]) & np.all(np.isfinite(beta), axis=1) & np.isfinite(sigma)
    conv = np.asarray(res["converged"], bool) & finite
    TH = np.where(np.isfinite(res["objective"])[:, None], TH, np.nan)
    cols = {"objective": objective, "deviance": dev, "sigma": sigma}
    for j, nm in enumerate(spec.theta_names):
        cols[f"theta.{nm}"] = TH[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"beta.{nm}"] = beta[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"se.{nm}"] = se[:, j]
    if satterthwaite:
        with np.errstate(all="ignore"):
            H = np.where(np.isfinite(res["H"]), res["H"], 0.0)
            A_c, _ = positive_inverse(H)  # the df of beta_j are those of row j of A (centred)
            df = df_from_parts(A_c, res["J"], res["C"], centred_contrasts(np.eye(p), xf.A))
        df = np.where(res["sat_ok"][:, None], df, np.nan)
        for j, nm in enumerate(spec.fixef_names):
            cols[f"df.{nm}"] = df[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"t.{nm}"] = t[:, j]
    if satterthwaite:
        pv = 2.0 * dist.t_sf(np.abs(t), df)
        for j, nm in enumerate(spec.fixef_names):
            cols[f"p.{nm}"] = pv[:, j]
    failed = ~np.isfinite(res["objective"])  # no criterion at all: no estimates either
    if failed.any():
        for k in list(cols):
            cols[k] = np.where(failed, np.nan, np.asarray(cols[k], dtype=np.float64))
    diag = layout.is_diag()
    cols["converged"] = conv
    cols["singular"] = np.any(np.abs(TH[:, diag]) < 1e-4, axis=1) if diag.any() else np.zeros(B, bool)
    cols["iterations"] = np.asarray(res["iterations"], np.int64)
    cols["max_abs_grad"] = np.max(np.abs(res["grad"]), axis=1) if res["grad"].shape[1] else np.zeros(B)
    out = pd.DataFrame(cols, index=pd.RangeIndex(B, name="replicate"))
    out.attrs["fixef_names"] = list(spec.fixef_names)
    out.attrs["theta_names"] = list(spec.theta_names)
    out.attrs["reml"] = reml
    nbad = int((~conv).sum())
    if nbad:
        warn(f"{nbad} of {B} refits did not converge; they are kept and flagged (column 'converged')",
             ConvergenceWarning)
    return out
