"""Sharding the group axis of the statistics across devices (``jax.sharding``).

The per-level statistics of the first grouping factor (``A_ZtZ (qA, qA, J)``,
``A_ZtXy (qA, p+1, J)``, :mod:`jaxhlm._src.suffstats`) carry the bulk of the data and all of the
per-level work of the deviance: the ``J`` small Cholesky factors are independent, and the only
cross-level operations are sums over levels. Splitting the level axis over devices therefore
splits the work; XLA inserts the all-reduces for the sums. The level count is padded to a
multiple of the number of devices (zero-padded levels add exactly nothing). Everything else
(the fixed-effects blocks, other grouping factors) is replicated.

Results equal the single-device fit up to the order of floating-point summation.
"""
from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..base.errors import ArgumentError

__all__ = ["group_mesh", "shard_stats", "padded_structure", "lmer_sharded"]

GROUP_AXIS = "groups"
_SHARDED = ("A_ZtZ", "A_ZtXy")


def group_mesh(devices=None) -> Mesh:
    """A one-dimensional mesh over ``devices`` (default: all of JAX's devices) named ``"groups"``."""
    if isinstance(devices, Mesh):
        return devices
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int):
        if devices < 1 or devices > len(jax.devices()):
            raise ArgumentError(f"devices={devices}: JAX sees {len(jax.devices())} device(s)")
        devices = jax.devices()[:devices]
    devices = list(devices)
    if not devices:
        raise ArgumentError("no devices to shard over")
    return Mesh(np.array(devices), (GROUP_AXIS,))


def padded_structure(struct, ndev: int):
    """``struct`` with the level count of the first factor rounded up to a multiple of ``ndev``."""
    J = struct.nlev[0]
    Jp = int(math.ceil(J / ndev) * ndev)
    if Jp == J:
        return struct
    return dataclasses.replace(struct, nlev=(Jp,) + tuple(struct.nlev[1:]))


def shard_stats(stats: dict, mesh: Mesh) -> dict:
    """Put the statistics on the mesh: the level axis (last) of the A blocks split, the rest replicated."""
    out = {}
    rep = NamedSharding(mesh, PartitionSpec())
    for k, v in stats.items():
        if k in _SHARDED:
            spec = PartitionSpec(*([None] * (np.ndim(v) - 1) + [GROUP_AXIS]))
            out[k] = jax.device_put(v, NamedSharding(mesh, spec))
        else:
            out[k] = jax.device_put(v, rep)
    return out


def lmer_sharded(formula, data, reml: bool = True, *, devices=None, name=None, start=None):
    """:func:`jaxhlm.lmer` with the group axis of the computation sharded over ``devices``.

    Parameters
    ----------
    formula, data, reml, name, start
        As for :func:`jaxhlm.lmer` (``data`` may also be a Dask DataFrame or files).
    devices : int or sequence of jax devices, optional
        Default: all devices JAX sees. On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
        (set before JAX is imported) makes N host devices.

    Returns
    -------
    LinearMixedModel
        Its statistics stay sharded, so later computations on it (Satterthwaite df, profiles,
        refits) run sharded too.
    """
    from ..design.outofcore import is_out_of_core, lmer_out_of_core
    from ..design.build import build_design
    from ..model.lmm import _fit_design
    from ._legacy import build_structure, compute_stats

    if not isinstance(reml, (bool, np.bool_)):
        raise ArgumentError(f"reml must be True or False, got {reml!r}")
    mesh = group_mesh(devices)
    ndev = mesh.devices.size
    if is_out_of_core(data):
        return lmer_out_of_core(formula, data, reml=reml, name=name, start=start, devices=mesh)
    t0 = time.perf_counter()
    design = build_design(formula, data)
    struct = padded_structure(build_structure(design), ndev)
    t1 = time.perf_counter()
    stats = compute_stats(design, struct)
    t_design, t_stats = t1 - t0, time.perf_counter() - t1
    stats = shard_stats(stats, mesh)
    model = _fit_design(design, struct, stats, bool(reml), start=start, name=name, t_design=t_design, t_stats=t_stats)
    model.timings["devices"] = int(ndev)
    return model
