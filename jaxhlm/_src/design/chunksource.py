"""Where the chunks of out-of-core data come from: Dask partitions, or chunks of Parquet/CSV files.

A *source* has ``columns`` (the names in the data) and ``map_reduce(fn, combine, meta, columns)``:
``fn(chunk, meta)`` on every chunk (a pandas DataFrame of the given columns), the results reduced
pairwise by ``combine``. :class:`DaskSource` builds one Dask graph (one ``compute``);
:class:`FileSource` reads files sequentially, ``chunk_rows`` rows at a time. The functions mapped
over the chunks are in :mod:`jaxhlm._src.design.chunkmoments`; the design is assembled in
:mod:`jaxhlm._src.design.outofcore`.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, DataError

__all__ = ["is_out_of_core", "DaskSource", "FileSource", "DEFAULT_CHUNK_ROWS"]

DEFAULT_CHUNK_ROWS = 500_000


def _is_dask_frame(data) -> bool:
    mod = type(data).__module__ or ""
    return mod.startswith("dask") and hasattr(data, "to_delayed") and hasattr(data, "columns")


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def is_out_of_core(data) -> bool:
    """True for a Dask DataFrame, a path, or a list/tuple of paths."""
    if _is_dask_frame(data):
        return True
    if _is_path(data):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(_is_path(p) for p in data)


class DaskSource:
    """Chunks = partitions of a Dask DataFrame; map over partitions, tree-reduce, one ``compute``.

    Runs on whatever scheduler is active (a ``distributed.Client`` if one was created).
    """

    def __init__(self, ddf):
        self.ddf = ddf
        self.columns = list(ddf.columns)

    def map_reduce(self, fn, combine, meta, columns):
        import dask

        parts = self.ddf[list(columns)].to_delayed()
        meta_d = dask.delayed(meta, pure=True, traverse=False)
        mapped = [dask.delayed(fn, pure=True)(p, meta_d) for p in parts]
        comb = dask.delayed(combine, pure=True)
        while len(mapped) > 1:  # pairwise, keeping partition order
            nxt = [comb(mapped[i], mapped[i + 1]) for i in range(0, len(mapped) - 1, 2)]
            if len(mapped) % 2:
                nxt.append(mapped[-1])
            mapped = nxt
        return dask.compute(mapped[0])[0]


class FileSource:
    """Chunks of Parquet (``pyarrow``) or CSV (``pandas``) files, read ``chunk_rows`` rows at a time."""

    def __init__(self, paths, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        if _is_path(paths):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        for p in self.paths:
            if not os.path.isfile(p):
                raise ArgumentError(f"data file {p!r} does not exist")
        self.kinds = [self._kind(p) for p in self.paths]
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
            raise ArgumentError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk_rows = int(chunk_rows)
        self.columns = self._columns()

    @staticmethod
    def _kind(p: str) -> str:
        low = p.lower()
        if low.endswith((".parquet", ".pq", ".parq")):
            return "parquet"
        if low.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".txt")):
            return "csv"
        raise ArgumentError(f"cannot tell the format of {p!r}: use .parquet or .csv files")

    def _columns(self) -> list:
        cols = None
        for p, k in zip(self.paths, self.kinds):
            if k == "parquet":
                import pyarrow.parquet as pq

                c = list(pq.read_schema(p).names)
            else:
                c = list(pd.read_csv(p, nrows=0).columns)
            if cols is None:
                cols = c
            elif set(c) != set(cols):
                missing = sorted(set(cols) ^ set(c), key=str)
                raise DataError(f"the files do not all have the same columns: {p!r} differs in {missing[:5]}")
        return cols

    def chunks(self, columns):
        for p, k in zip(self.paths, self.kinds):
            if k == "parquet":
                import pyarrow.parquet as pq

                f = pq.ParquetFile(p)
                for batch in f.iter_batches(batch_size=self.chunk_rows, columns=list(columns)):
                    yield batch.to_pandas()
            else:
                for df in pd.read_csv(p, usecols=list(columns), chunksize=self.chunk_rows):
                    yield df

    def map_reduce(self, fn, combine, meta, columns):
        acc = None
        for df in self.chunks(columns):
            r = fn(df, meta)
            acc = r if acc is None else combine(acc, r)
        return acc
