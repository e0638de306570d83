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
from ..base.lazy import scipy
from ..infer.satterthwaite import df_from_parts, positive_inverse
from ..optim.batch import RefitSpec, refit_batches
from ..stats.layout import theta_names

__all__ = ["spec_of", "refit_design_many", "tidy"]


def spec_of(model) -> RefitSpec:
    """The :class:`RefitSpec` of a fitted model (cached on the model)."""
    spec = model.cache.get("refit_spec")
    if spec is None:
        spec = RefitSpec(design=model.design, layout=model.layout, stats=model.stats, reml=model.reml,
                         theta0=model.layout.lifted(model.opt.theta), fixef_names=list(model.design.fixef_names),
                         theta_names=theta_names(model.design))
        model.cache["refit_spec"] = spec
    return spec


def refit_design_many(spec: RefitSpec, Y_chunks, nrep: int, *, satterthwaite: bool = True, batch_size=None,
                      chunk_size=None, progress=None, label: str = "refit") -> pd.DataFrame:
    """Refit ``spec`` to ``nrep`` responses yielded by ``Y_chunks(size)``; the table of :func:`tidy`."""
    show = (nrep >= 64 and sys.stderr.isatty()) if progress is None else bool(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=nrep, desc=label, unit="fit")
    try:
        res = refit_batches(spec, Y_chunks, nrep, satterthwaite=satterthwaite, batch_size=batch_size,
                            chunk_size=chunk_size, on_chunk=bar.update if bar is not None else None)
    finally:
        if bar is not None:
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
    """One row per replicate: estimates, SEs, Satterthwaite df and p-values, flags."""
    layout = spec.layout
    p, n, reml = layout.p, spec.n, bool(spec.reml)
    B = res["theta"].shape[0]
    TH = layout.rectify(res["theta"]) if B else res["theta"]
    Lxx = res["Lxx"]
    r2 = Lxx[:, p, p] ** 2
    sigma = np.sqrt(r2 / ((n - p) if reml else n))
    with np.errstate(all="ignore"):
        beta, W = _beta_W(Lxx, p)
        C = sigma[:, None, None] ** 2 * W
        se = np.sqrt(np.einsum("bkk->bk", C))
        t = beta / se
        s2 = sigma**2
        logw = float(spec.stats.logw)
        dev = res["ldL2"] - logw + r2 / s2 + n * np.log(2.0 * np.pi * s2) if reml else res["objective"]
    finite = np.isfinite(res["objective"]) & np.all(np.isfinite(beta), axis=1) & np.isfinite(sigma)
    conv = np.asarray(res["converged"], bool) & finite
    TH = np.where(np.isfinite(res["objective"])[:, None], TH, np.nan)
    cols = {"objective": res["objective"], "deviance": dev, "sigma": sigma}
    for j, nm in enumerate(spec.theta_names):
        cols[f"theta.{nm}"] = TH[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"beta.{nm}"] = beta[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"se.{nm}"] = se[:, j]
    if satterthwaite:
        with np.errstate(all="ignore"):
            H = np.where(np.isfinite(res["H"]), res["H"], 0.0)
            A, _ = positive_inverse(H)
            df = df_from_parts(A, res["J"], res["C"], np.eye(p))
        df = np.where(res["sat_ok"][:, None], df, np.nan)
        for j, nm in enumerate(spec.fixef_names):
            cols[f"df.{nm}"] = df[:, j]
    for j, nm in enumerate(spec.fixef_names):
        cols[f"t.{nm}"] = t[:, j]
    if satterthwaite:
        pv = 2.0 * scipy.stats.t.sf(np.abs(t), df)
        for j, nm in enumerate(spec.fixef_names):
            cols[f"p.{nm}"] = pv[:, j]
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
