"""``lmer``: the pipeline of :mod:`jaxhlm._src.model.pipeline` (``lFormula -> mkLmerDevfun ->
optimizeLmer -> mkMerMod``) on data in memory, out of core (Dask, files) or sharded over devices.
"""
from __future__ import annotations

import time

import numpy as np

from ..base import threads
from ..base.errors import ArgumentError
from ..model import pipeline
from .lmm import LinearMixedModel

__all__ = ["lmer", "lmer_sharded"]


def _check_reml(reml):
    if not isinstance(reml, (bool, np.bool_)):
        raise ArgumentError(f"reml must be True or False, got {reml!r} ({type(reml).__name__})")
    return bool(reml)


def _design_kwargs(weights, offset, contrasts) -> dict:
    kw = {}
    if weights is not None:
        kw["weights"] = weights
    if offset is not None:
        kw["offset"] = offset
    if contrasts is not None:
        kw["contrasts"] = contrasts
    return kw


def _refuse_arguments(kwargs: dict, what: str) -> None:
    if kwargs:
        raise ArgumentError(f"{', '.join(f'{k}=' for k in kwargs)} is not supported for {what}: "
                            "fit the data in memory (a pandas DataFrame), or write an offset in the formula "
                            "as offset(x) and a weighted model in memory")


@threads.one_blas_thread
def lmer(formula: str, data, reml: bool = True, *, name: str | None = None, start=None, weights=None, offset=None,
         contrasts=None) -> LinearMixedModel:
    """Fit a linear mixed model with an lme4 formula.

    Parameters
    ----------
    formula : str
        lme4 syntax as R users write it, e.g. ``"mathscore ~ family_inc + (family_inc | sch_id)"``;
        random terms ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)``.
    data : pandas.DataFrame (or polars and others), dask.dataframe.DataFrame, or path(s) of Parquet / CSV files
        Never modified. Rows with missing values in used columns are dropped. A Dask DataFrame
        or files are read in chunks and never gathered (see :mod:`jaxhlm._src.design.outofcore`).
    reml : bool, default True
        REML (lme4's default) or maximum likelihood (``reml=False``, needed for ``anova``).
    name : str, optional
        Label used in model comparisons.
    start : array-like, optional
        Starting theta (lme4 order); default a moment estimate (lme4 starts at 1 on the diagonals, 0 below).
    weights : str or array-like, optional
        Prior weights (a column name or one value per row): the residual variance of row i is
        ``sigma^2 / w_i``, as lme4's ``weights=``.
    offset : str or array-like, optional
        A known term added to the linear predictor (as ``offset(x)`` in the formula).
    contrasts : dict, optional
        Coding of factors, e.g. ``{"f": "sum"}`` (R's ``contrasts = list(f = "contr.sum")``).

    Returns
    -------
    LinearMixedModel

    Notes
    -----
    Minimises the profiled deviance (Bates et al. 2015, JSS 67(1), eqs. 34 and 41) over theta
    with BFGS on exact gradients, in float64, compiled once per model layout (and cached on
    disk, see :mod:`jaxhlm._src.base.programcache`). Without ``start`` the search begins at a
    moment estimate of theta (:mod:`jaxhlm._src.optim.start`); ``start`` gives lme4's
    behaviour (e.g. ``start=[1, 0, 1]``).
    """
    reml = _check_reml(reml)
    from ..design.chunksource import is_out_of_core

    kwargs = _design_kwargs(weights, offset, contrasts)
    if is_out_of_core(data):
        _refuse_arguments(kwargs, "an out-of-core fit (Dask DataFrame or files)")
        return _lmer_out_of_core(formula, data, reml, name=name, start=start)
    t0 = time.perf_counter()
    design = pipeline.lformula(formula, data, **kwargs)
    t1 = time.perf_counter()
    layout, stats = pipeline.mk_devfun(design)
    t2 = time.perf_counter()
    model = pipeline.fit_design(design, layout, stats, reml, start=start, name=name, cls=LinearMixedModel,
                                timings={"design": t1 - t0, "stats": t2 - t1})
    model.data, model.design_args = data, kwargs  # a reference to the user's frame, never modified
    return model


def _lmer_out_of_core(formula, data, reml, *, name=None, start=None, mesh=None, chunk_rows=None):
    from ..design.chunksource import DEFAULT_CHUNK_ROWS
    from ..design.outofcore import out_of_core_design
    from ..stats.layout import build_layout
    from ..stats.suffstats import compute_stats

    design, pseudo, t_design = out_of_core_design(formula, data, chunk_rows or DEFAULT_CHUNK_ROWS)
    t1 = time.perf_counter()
    layout = build_layout(pseudo)  # the pseudo-rows have the full data's level combinations
    if mesh is not None:
        from ..stats.sharding import padded_layout

        layout = padded_layout(layout, mesh.devices.size)
    stats = compute_stats(pseudo, layout)._replace(n=np.float64(design.n))
    if mesh is not None:
        from ..stats.sharding import shard_stats

        stats = shard_stats(stats, mesh)
    tm = {"design": t_design, "stats": time.perf_counter() - t1, "pseudo_rows": int(pseudo.n)}
    return pipeline.fit_design(design, layout, stats, reml, start=start, name=name, cls=LinearMixedModel, timings=tm)


@threads.one_blas_thread
def lmer_sharded(formula, data, reml: bool = True, *, devices=None, name=None, start=None, weights=None,
                 offset=None, contrasts=None) -> LinearMixedModel:
    """:func:`jaxhlm.lmer` with the group axis of the computation sharded over ``devices``.

    Parameters
    ----------
    formula, data, reml, name, start
        As for :func:`jaxhlm.lmer` (``data`` may also be a Dask DataFrame or files).
    weights, offset, contrasts
        As for :func:`jaxhlm.lmer`, for data in memory (refused for out-of-core data).
    devices : int or sequence of jax devices, optional
        Default: all devices JAX sees. On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
        (set before JAX is imported) makes N host devices.

    Returns
    -------
    LinearMixedModel
        Its statistics stay sharded, so later computations on it (Satterthwaite df, profiles,
        refits) run sharded too.
    """
    from ..design.chunksource import is_out_of_core
    from ..stats.sharding import group_mesh, padded_layout, shard_stats

    reml = _check_reml(reml)
    mesh = group_mesh(devices)
    kwargs = _design_kwargs(weights, offset, contrasts)
    if is_out_of_core(data):
        _refuse_arguments(kwargs, "an out-of-core fit (Dask DataFrame or files)")
        model = _lmer_out_of_core(formula, data, reml, name=name, start=start, mesh=mesh)
    else:
        t0 = time.perf_counter()
        design = pipeline.lformula(formula, data, **kwargs)
        from ..stats.layout import build_layout
        from ..stats.suffstats import compute_stats

        layout = padded_layout(build_layout(design), mesh.devices.size)
        t1 = time.perf_counter()

        stats = shard_stats(compute_stats(design, layout), mesh)
        tm = {"design": t1 - t0, "stats": time.perf_counter() - t1}
        model = pipeline.fit_design(design, layout, stats, reml, start=start, name=name, cls=LinearMixedModel,
                                    timings=tm)
        model.data, model.design_args = data, kwargs
    model.timings["devices"] = int(mesh.devices.size)
    return model
