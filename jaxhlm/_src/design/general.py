"""The general path from formula and data to model matrices (R's ``model.frame`` + ``model.matrix``).

1. Every variable of the formula (response, fixed part, offsets, random terms) is evaluated on
   all rows of the data, as R's ``model.frame`` does (so ``scale(x)`` and ``poly(x, 2)`` learn
   from every row, also rows dropped later).
2. Rows with a missing value in any variable, grouping column or weight are dropped (``na.omit``);
   a value that an expression makes undefined (``log(-1)``) counts as missing, with a warning.
3. Factors lose the levels no kept row has (``drop.unused.levels``), and the model matrices are
   built (:mod:`~jaxhlm._src.design.modelmatrix`), the fixed part with the ``contrasts`` given.
"""
from __future__ import annotations

import numpy as np

from ..base.errors import ArgumentError, ColumnNotFoundError, DataError, FormulaError, warn
from ..formula.plan import formula_plan, referenced_names
from ..formula.rparse import Name, deparse
from ..formula.terms import ParsedFormula
from .contrasts import as_contrast
from .evaluate import Evaluator
from .modelmatrix import SideSpec, drop_unused_levels, encode_side, na_mask, take_rows
from .response import check_response_column, prior_weights, response_values
from .rvalues import DataWarning, Factor, Matrix

__all__ = ["required_columns", "general_parts"]

_CONSTANT_NAMES = {"T", "F", "TRUE", "FALSE", "pi", "Inf", "NaN", "NA", "NA_real_", "NA_integer_"}


def _sides(parsed: ParsedFormula):
    """``(nodes, where)`` per part of the formula: response, fixed, each random term, groups."""
    plan = formula_plan(parsed)
    fx = plan.fixed
    used = sorted({v for t in fx.terms for v in t})
    out = [([plan.response_node], "response"),
           ([fx.nodes[i] for i in used] + [fx.nodes[i] for i in fx.offsets], "fixed-effects part")]
    for t, terms in zip(parsed.random, plan.random):
        vars_ = sorted({v for tt in terms.terms for v in tt})
        out.append(([terms.nodes[i] for i in vars_], f"random-effect term {t}"))
    return plan, out


def required_columns(parsed: ParsedFormula, data) -> list:
    """The data columns a formula uses (response, predictors, grouping factors), in order.

    Raises
    ------
    ColumnNotFoundError
        Naming the missing column and where it is used.
    """
    cols = data.columns
    needed: list = []
    _, sides = _sides(parsed)
    for nodes, where in sides:
        for nm in referenced_names(nodes):
            if nm in cols:
                if nm not in needed:
                    needed.append(nm)
            elif nm not in _CONSTANT_NAMES:
                raise ColumnNotFoundError(nm, cols, where)
    for t in parsed.random:
        for g in t.group:
            if g not in cols:
                raise ColumnNotFoundError(g, cols, f"grouping factor of {t}")
            if g not in needed:
                needed.append(g)
    return needed


def _contrast_specs(contrasts, plan) -> dict:
    if contrasts is None:
        return {}
    if not isinstance(contrasts, dict):
        raise ArgumentError(f"contrasts must be a dict such as {{'f': 'sum'}}, got {type(contrasts).__name__}")
    labels = set(plan.fixed.variables)
    out = {}
    for k, v in contrasts.items():
        if k not in labels:
            raise ArgumentError(f"contrasts are given for {k!r}, which is not a variable of the fixed-effects part "
                                f"(variables: {sorted(labels - {plan.fixed.variables[plan.fixed.response]})})")
        out[k] = as_contrast(v, repr(k))
    return out


def _text_number_problem(v, node, where: str, random: bool):
    nat = getattr(v, "numbers_as_text", None)
    if not isinstance(v, Factor) or nat is None:
        return
    label = deparse(node)
    nnum, total = nat
    if random:
        raise DataError(
            f"column {label!r} in the {where} holds numbers stored as text ({nnum} of {total} values read as "
            f"numbers); as text it would be a categorical term with {v.nlevels} levels, i.e. {v.nlevels} random "
            f"effects per group. Convert it with pd.to_numeric(data[{label!r}]), or make it a pandas Categorical "
            "if it really is categorical"
        )
    warn(
        f"column {label!r} holds numbers stored as text ({nnum} of {total} values); it is used as a categorical "
        f"variable with {v.nlevels} levels. Convert it with pd.to_numeric if it is a numeric predictor",
        DataWarning)


def general_parts(parsed: ParsedFormula, data, contrasts=None, weights=None, family: str = "gaussian") -> dict:
    """Evaluate the formula on ``data``: the pieces of a :class:`~jaxhlm._src.design.Design`."""
    plan, sides = _sides(parsed)
    needed = required_columns(parsed, data)
    dup = [] if data.columns.is_unique else [c for c in needed if int(np.sum(data.columns == c)) > 1]
    if dup:
        raise DataError(f"column {dup[0]!r} appears more than once in the data")
    if family == "gaussian":
        check_response_column(parsed.response, data)
    contr = _contrast_specs(contrasts, plan)
    w = prior_weights(weights, data, family)
    for note in plan.fixed.notes + tuple(n for r in plan.random for n in r.notes):
        warn(note, DataWarning)

    ev = Evaluator(data, state={}, learn=True)
    values: dict = {}
    place: dict = {}  # label -> (node, where it is first used)

    def var(node, where):
        label = deparse(node)
        if label not in values:
            values[label] = ev.variable(node, where)
            place[label] = (node, where)
        return values[label]

    fx = plan.fixed
    var(plan.response_node, "response")
    fixed_used = sorted({v for t in fx.terms for v in t})
    fixed_vals = {i: var(fx.nodes[i], "fixed-effects part") for i in fixed_used}
    offsets = [var(fx.nodes[i], "fixed-effects part") for i in fx.offsets]
    rand_vals = []
    for t, terms in zip(parsed.random, plan.random):
        used = sorted({v for tt in terms.terms for v in tt})
        rand_vals.append({i: var(terms.nodes[i], f"random-effect term {t}") for i in used})
    for i, v in fixed_vals.items():
        _text_number_problem(v, fx.nodes[i], "fixed-effects part", random=False)
    for t, terms, vals in zip(parsed.random, plan.random, rand_vals):
        for i, v in vals.items():
            _text_number_problem(v, terms.nodes[i], f"random-effect term {t}", random=True)
    for v in offsets:
        if isinstance(v, (Factor, Matrix)) or getattr(v, "logical", False):
            raise DataError("an offset() must be numeric")

    # rows with missing values (R's na.omit), and values made undefined by an expression
    n = len(data)
    missing = np.zeros(n, bool)
    masks = {}
    for label, v in values.items():
        m = na_mask(v)
        masks[label] = m
        missing |= m
    for g in dict.fromkeys(g for t in parsed.random for g in t.group):
        m = data[g].isna().to_numpy()
        masks[g] = m
        missing |= m
    if w is not None:
        masks["(weights)"] = np.isnan(w)
        missing |= masks["(weights)"]
    for label, v in values.items():
        node = place[label][0]
        if isinstance(node, Name):
            continue
        cols = [c for c in referenced_names([node]) if c in ev.cache]
        raw = np.zeros(n, bool)
        for c in cols:
            raw |= na_mask(ev.cache[c])
        made = masks[label] & ~raw
        if made.any():
            warn(
                f"{label!r} is undefined (NaN) in {int(made.sum())} rows where its columns are not missing; as in R "
                "(na.omit), those rows are dropped", DataWarning)
    keep = ~missing
    n_dropped = int(missing.sum())
    if not keep.any():
        allna = [k for k, m in masks.items() if m.all()]
        which = f"column {allna[0]!r} has only missing values" if allna else (
            f"every row has a missing value in one of {needed}")
        raise DataError(f"no complete rows: {which}")
    rows = np.nonzero(keep)[0] if n_dropped else slice(None)

    def sub(v):
        v = take_rows(v, rows) if n_dropped else v
        return drop_unused_levels(v)

    values = {k: sub(v) for k, v in values.items()}
    for label, v in values.items():
        if not isinstance(v, Factor) and np.isinf(v.values).any():
            where = place[label][1].replace("fixed-effects part", "fixed-effects")
            k = int(np.isinf(v.values).any(axis=1).sum()) if v.values.ndim == 2 else int(np.isinf(v.values).sum())
            raise DataError(f"{where} column {label!r} has infinite or undefined values ({k} rows)")
    y, trials = response_values(values[deparse(plan.response_node)], parsed.response, family)
    fixed_vals = {i: values[fx.variables[i]] for i in fixed_used}
    X_full, names_full, infos, codes, assign = encode_side(fx, fixed_vals, contr, "fixed-effects part", len(y))
    state = ev.state
    fixed_spec = SideSpec(fx, "fixed-effects part", state, infos, codes, names_full,
                          set(c for c in referenced_names(sides[1][0]) if c in data.columns), assign)
    zmats, specs = [], []
    for t, terms, (nodes, where) in zip(parsed.random, plan.random, sides[2:]):
        used = sorted({v for tt in terms.terms for v in tt})
        Z, znames, zinfos, zcodes, zassign = encode_side(terms, {i: values[terms.variables[i]] for i in used}, {},
                                                         where, len(y))
        if Z.shape[1] == 0:
            raise FormulaError(f"random-effect term {t} has no columns")
        zmats.append((Z, znames))
        specs.append(SideSpec(terms, where, state, zinfos, zcodes, znames,
                              set(c for c in referenced_names(nodes) if c in data.columns), zassign))
    offset = None
    if offsets:
        offset = np.zeros(int(keep.sum()))
        for node_i in fx.offsets:
            offset = offset + values[fx.variables[node_i]].values
    wk = None if w is None else np.ascontiguousarray(w[keep])
    if wk is not None and family == "gaussian" and (wk == 0).any():
        raise DataError(
            f"the weights have {int((wk == 0).sum())} zero values; lme4 keeps such rows and its log-likelihood is "
            "-Inf. Drop those rows from the data (or give them a positive weight)")
    groups = {g: (data[g] if not n_dropped else data[g].iloc[rows]) for g in dict.fromkeys(
        g for t in parsed.random for g in t.group)}
    return {"y": y, "trials": trials, "X_full": X_full, "names_full": names_full, "Z": zmats, "groups": groups,
            "index": data.index[rows] if n_dropped else data.index, "n_dropped": n_dropped,
            "fixed_spec": fixed_spec, "term_specs": specs, "offset": offset, "weights": wk}

