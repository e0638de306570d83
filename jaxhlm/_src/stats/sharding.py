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

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..base.errors import ArgumentError

__all__ = ["group_mesh", "shard_stats", "padded_layout"]

GROUP_AXIS = "groups"


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


def padded_layout(layout, ndev: int):
    """``layout`` with the level count of the first factor rounded up to a multiple of ``ndev``."""
    J = layout.nlev[0]
    Jp = int(math.ceil(J / ndev) * ndev)
    if Jp == J:
        return layout
    return dataclasses.replace(layout, nlev=(Jp,) + tuple(layout.nlev[1:]))


def shard_stats(stats, mesh: Mesh):
    """Put the statistics on the mesh: the level axis (last) of the first factor's blocks split,
    the rest replicated."""
    rep = NamedSharding(mesh, PartitionSpec())

    def split(v):
        return jax.device_put(v, NamedSharding(mesh, PartitionSpec(*([None] * (np.ndim(v) - 1) + [GROUP_AXIS]))))

    first = stats.levels[0]
    out = jax.tree_util.tree_map(lambda v: jax.device_put(v, rep), stats._replace(levels=stats.levels[1:]))
    return out._replace(levels=(type(first)(split(first.ZtZ), split(first.ZtXy)),) + tuple(out.levels))
