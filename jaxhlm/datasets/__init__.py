"""Small datasets shipped with jaxhlm, for examples, tests and teaching.

>>> import jaxhlm
>>> jaxhlm.datasets.list()                    # doctest: +SKIP
>>> dat = jaxhlm.datasets.load("nels_like")   # doctest: +SKIP
>>> print(jaxhlm.datasets.describe("nels_like"))   # doctest: +SKIP

Each dataset is a CSV file inside this package. :func:`load` reads it into a new
:class:`pandas.DataFrame` and turns the grouping columns into categoricals whose categories are
the sorted distinct values, as R's ``factor()`` does; the other columns keep the types
:func:`pandas.read_csv` gives them (as R's ``read.csv``).
"""
from __future__ import annotations

import builtins
import dataclasses
from importlib import resources

import pandas as pd

from .._src.base.errors import DatasetNotFoundError

__all__ = ["load", "list", "describe", "names", "DatasetNotFoundError"]


@dataclasses.dataclass(frozen=True)
class _Dataset:
    name: str
    file: str
    description: str
    source: str
    factors: tuple
    columns: dict


_REGISTRY = {
    d.name: d
    for d in (
        _Dataset(
            name="nels_like",
            file="nels_like.csv",
            description=(
                "Students in schools: math scores of 8,378 students in 854 schools, with family "
                "income and an urban-school indicator (synthetic, shaped like the NELS-88 example "
                "of the classic HLM tutorial)."
            ),
            source=(
                "Simulated for jaxhlm to mimic the National Education Longitudinal Study of 1988 "
                "(NELS-88) extract used in HLM teaching material; not real student records."
            ),
            factors=("sch_id",),
            columns={
                "stu_id": "student identifier",
                "sch_id": "school identifier (grouping factor)",
                "mathscore": "math test score",
                "family_inc": "family income category, 1 (lowest) to 15 (highest)",
                "urban": "1 if the school is urban, 0 otherwise (a school-level predictor)",
                "ses": "socio-economic status, standardised",
            },
        ),
        _Dataset(
            name="sleepstudy",
            file="sleepstudy.csv",
            description=(
                "Reaction times in a sleep-deprivation study: 18 subjects, 10 days each of at "
                "most 3 hours' sleep a night (180 rows)."
            ),
            source=(
                "Belenky et al. (2003), J. Sleep Research 12, 1-12; as distributed with R's lme4 "
                "package (data set 'sleepstudy')."
            ),
            factors=("Subject",),
            columns={
                "Reaction": "average reaction time (ms)",
                "Days": "days of sleep deprivation (0 = baseline)",
                "Subject": "subject number (grouping factor)",
            },
        ),
        _Dataset(
            name="Dyestuff",
            file="Dyestuff.csv",
            description=(
                "Yield of dyestuff from 6 batches of an intermediate product, 5 preparations "
                "from each batch (30 rows): the one-way random-effects classic."
            ),
            source=(
                "Davies and Goldsmith (1972), Statistical Methods in Research and Production; as "
                "distributed with R's lme4 package (data set 'Dyestuff')."
            ),
            factors=("Batch",),
            columns={
                "Batch": "batch of intermediate product (grouping factor)",
                "Yield": "yield of dyestuff (grams of standard colour)",
            },
        ),
        _Dataset(
            name="Penicillin",
            file="Penicillin.csv",
            description=(
                "Potency of 6 penicillin samples measured on 24 plates (144 rows): fully "
                "crossed random effects."
            ),
            source=(
                "Davies and Goldsmith (1972), Statistical Methods in Research and Production; as "
                "distributed with R's lme4 package (data set 'Penicillin')."
            ),
            factors=("plate", "sample"),
            columns={
                "diameter": "diameter (mm) of the zone where the organism's growth is inhibited",
                "plate": "assay plate, a to x (grouping factor)",
                "sample": "penicillin sample, A to F (grouping factor)",
            },
        ),
        _Dataset(
            name="cbpp",
            file="cbpp.csv",
            description=(
                "Contagious bovine pleuropneumonia: new serological cases among the cattle of 15 "
                "herds in Ethiopia, 4 periods each (56 rows): binomial counts for glmer."
            ),
            source=(
                "Lesnoff et al. (2004), Preventive Veterinary Medicine 64, 27-40; as distributed "
                "with R's lme4 package (data set 'cbpp')."
            ),
            factors=("herd", "period"),
            columns={
                "herd": "herd, 1 to 15 (grouping factor)",
                "incidence": "number of new serological cases in the period",
                "size": "herd size at the start of the period",
                "period": "period, 1 to 4 (a factor in the model)",
            },
        ),
        _Dataset(
            name="Pastes",
            file="Pastes.csv",
            description=(
                "Strength of a chemical paste: 10 delivery batches, 3 casks from each batch, 2 "
                "assays from each cask (60 rows): nested random effects, (1 | batch/cask)."
            ),
            source=(
                "Davies and Goldsmith (1972), Statistical Methods in Research and Production; as "
                "distributed with R's lme4 package (data set 'Pastes')."
            ),
            factors=("batch", "cask", "sample"),
            columns={
                "strength": "paste strength",
                "batch": "delivery batch, A to J (grouping factor)",
                "cask": "cask within the batch, a to c (grouping factor, nested in batch)",
                "sample": "the batch:cask combination, e.g. 'A:a' (grouping factor)",
            },
        ),
    )
}


def names() -> builtins.list:
    """Names of the bundled datasets, in the order :func:`list` shows them.

    Returns
    -------
    list of str
    """
    return builtins.list(_REGISTRY)


def _get(name: str) -> _Dataset:
    if not isinstance(name, str):
        raise DatasetNotFoundError(f"dataset name must be a string, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    lower = {k.lower(): k for k in _REGISTRY}
    if name.lower() in lower:
        return _REGISTRY[lower[name.lower()]]
    raise DatasetNotFoundError(f"no bundled dataset named {name!r}; available: {', '.join(_REGISTRY)}")


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a new DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names` (case-insensitive), e.g. ``"nels_like"`` or ``"sleepstudy"``.

    Returns
    -------
    pandas.DataFrame
        A fresh copy each call. Grouping columns are categoricals with categories
        ``sorted(unique(column))`` (R's ``factor()``: numeric identifiers sort numerically),
        so they act as factors both as grouping factors and in fixed-effects terms.

    Raises
    ------
    DatasetNotFoundError
        For an unknown name (a :class:`~jaxhlm.JaxhlmError` and a ``KeyError``).
    """
    ds = _get(name)
    with resources.files(__name__).joinpath(ds.file).open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh)
    for col in ds.factors:
        df[col] = pd.Categorical(df[col], categories=sorted(df[col].unique()))
    return df


def describe(name: str) -> str:
    """A description of a bundled dataset: what it is, its source and its columns.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    str
        Several lines of plain text; ``print()`` it.
    """
    ds = _get(name)
    width = max(len(c) for c in ds.columns)
    lines = [f"{ds.name}: {ds.description}", f"Source: {ds.source}", "Columns:"]
    lines += [f"  {c.ljust(width)}  {text}" for c, text in ds.columns.items()]
    return "\n".join(lines)


def list() -> pd.DataFrame:  # noqa: A001  (the module's public name, as in jaxhlm.datasets.list())
    """The bundled datasets: name, number of rows and columns, grouping factors, description.

    Returns
    -------
    pandas.DataFrame
        One row per dataset, indexed by name, with columns ``rows``, ``columns``, ``factors``,
        ``description`` and ``source``.
    """
    rows = []
    for ds in _REGISTRY.values():
        with resources.files(__name__).joinpath(ds.file).open("r", encoding="utf-8") as fh:
            nrows = sum(1 for _ in fh) - 1
        rows.append({
            "name": ds.name,
            "rows": nrows,
            "columns": len(ds.columns),
            "factors": ", ".join(ds.factors),
            "description": ds.description,
            "source": ds.source,
        })
    return pd.DataFrame(rows).set_index("name")
