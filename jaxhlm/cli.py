"""The ``jaxhlm`` command line.

::

    jaxhlm fit DATA "y ~ x + (x | g)" [--ml] [--json]   # fit a model, print its summary (or JSON)
    jaxhlm example [--outdir DIR] [--no-plots]         # the README walk-through on bundled data
    jaxhlm datasets [NAME]                             # list the bundled datasets, or describe one

``DATA`` is a CSV file or the name of a bundled dataset (``jaxhlm datasets``). Errors in the
input (a missing file, an unknown column, a bad formula) print one line on stderr and exit with
status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

__all__ = ["main", "fit_to_dict"]

EXIT_USAGE = 2


def _num(v):
    """A JSON-safe number: float, or None for NaN / infinity / missing."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _label(v):
    """A JSON-safe label: str, or None for a missing value."""
    return None if v is None or (isinstance(v, float) and v != v) else str(v)


def _series(s) -> dict:
    return {str(k): _num(v) for k, v in s.items()}


def fit_to_dict(fit) -> dict:
    """The numbers of a fitted model as plain JSON-serialisable Python objects.

    Parameters
    ----------
    fit : LinearMixedModel

    Returns
    -------
    dict
        ``formula``, ``reml``, ``nobs``, ``ngroups``; ``fixef``, ``se``, ``df`` (Satterthwaite),
        ``t_value``, ``p_value`` keyed by coefficient; ``varcorr`` (rows of R's
        ``as.data.frame(VarCorr(m))``); ``theta`` (lme4 names); ``sigma``; ``logLik``, ``AIC``
        (``-2 logLik + 2 npar``), ``BIC`` (``-2 logLik + log(n) npar``), ``deviance``,
        ``REMLcrit`` (None for ML fits), ``objective``, ``npar``, ``df_resid``, ``converged``,
        ``singular``, ``messages``. NaN becomes ``null``.
    """
    ct = fit.coef_table
    vc = fit.varcorr
    return {
        "formula": fit.formula,
        "reml": fit.reml,
        "nobs": int(fit.nobs),
        "ngroups": {k: int(v) for k, v in fit.ngroups.items()},
        "fixef": _series(fit.fixef),
        "se": _series(fit.se),
        "df": _series(ct["df"]),
        "t_value": _series(ct["t value"]),
        "p_value": _series(ct["Pr(>|t|)"]),
        "varcorr": [
            {
                "grp": r.grp,
                "var1": _label(r.var1),
                "var2": _label(r.var2),
                "vcov": _num(r.vcov),
                "sdcor": _num(r.sdcor),
            }
            for r in vc.itertuples(index=False)
        ],
        "theta": _series(fit.theta),
        "sigma": _num(fit.sigma),
        "logLik": _num(fit.loglik),
        "AIC": _num(fit.aic),
        "BIC": _num(fit.bic),
        "deviance": _num(fit.deviance),
        "REMLcrit": _num(fit.reml_criterion),
        "objective": _num(fit.objective),
        "npar": int(fit.npar),
        "df_resid": int(fit.df_resid),
        "converged": bool(fit.converged),
        "singular": bool(fit.is_singular),
        "messages": list(fit.optinfo["messages"]),
    }


class _UsageError(Exception):
    """Bad command-line input that is not a jaxhlm error (e.g. an unreadable file)."""


def _read_data(spec: str):
    import pandas as pd

    from . import datasets

    if os.path.exists(spec):
        try:
            return pd.read_csv(spec)
        except Exception as exc:  # pandas raises several types for unreadable files
            raise _UsageError(f"cannot read {spec!r} as CSV: {exc}") from None
    if spec in datasets.names() or spec.lower() in {n.lower() for n in datasets.names()}:
        return datasets.load(spec)
    raise _UsageError(f"no such file: {spec!r} (nor a bundled dataset: {', '.join(datasets.names())})")


def _cmd_fit(args) -> int:
    import jaxhlm

    data = _read_data(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = jaxhlm.lmer(args.formula, data, reml=not args.ml)
    shown = set() if args.json else set(fit.optinfo["messages"])  # the summary prints these
    for w in caught:
        if str(w.message) not in shown:
            print(f"jaxhlm: warning: {w.message}", file=sys.stderr)
    if args.json:
        json.dump(fit_to_dict(fit), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(fit.summary())  # the summary lists the jaxhlm warnings itself
    return 0


def _cmd_datasets(args) -> int:
    from . import datasets

    if args.name:
        print(datasets.describe(args.name))
        return 0
    table = datasets.list()
    width = max(len(n) for n in table.index)
    for name, row in table.iterrows():
        print(f"{name.ljust(width)}  {row['rows']:>6} rows  {row['description']}")
    print("\njaxhlm.datasets.load(name) returns a DataFrame; jaxhlm datasets NAME describes one.")
    return 0


def _cmd_example(args) -> int:
    from ._src import example

    return example.run(outdir=args.outdir, plots=not args.no_plots)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="jaxhlm",
        description="Linear mixed models with lme4 formulas on a JAX engine.",
    )
    p.add_argument("--version", action="version", version=f"jaxhlm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    f = sub.add_parser("fit", help="fit a model and print its summary",
                       description="Fit a linear mixed model; print lmerTest's summary or JSON.")
    f.add_argument("data", metavar="DATA", help="a CSV file, or the name of a bundled dataset")
    f.add_argument("formula", metavar="FORMULA", help='lme4 formula, e.g. "y ~ x + (x | g)"')
    f.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    f.add_argument("--json", action="store_true", help="print the estimates as JSON")
    f.set_defaults(func=_cmd_fit)

    e = sub.add_parser("example", help="run the students-in-schools walk-through on bundled data",
                       description="Run the README walk-through: each step's code, then its output.")
    e.add_argument("--outdir", default="jaxhlm-example", help="folder for the plots (default: %(default)s)")
    e.add_argument("--no-plots", action="store_true", help="skip the plots")
    e.set_defaults(func=_cmd_example)

    d = sub.add_parser("datasets", help="list the bundled datasets (or describe one)")
    d.add_argument("name", nargs="?", metavar="NAME", help="describe this dataset")
    d.set_defaults(func=_cmd_datasets)
    return p


def main(argv=None) -> int:
    """Entry point of the ``jaxhlm`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for bad input (message on stderr, no traceback).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from ._src.base.errors import JaxhlmError

    try:
        return args.func(args)
    except (JaxhlmError, _UsageError) as exc:
        print(f"jaxhlm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `jaxhlm example | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
