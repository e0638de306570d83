"""lmerTest's hypothesis matrices of the type I, II and III F tests of the fixed-effects terms.

Each term gets a matrix ``L`` (rows: the term's tests, columns: the coefficients); its F test
(:mod:`~jaxhlm._src.infer.ftests`) is of ``L beta = 0``. The definitions are lmerTest's
(Kuznetsova, Brockhoff & Christensen 2017, sect. 3.4 and the package's ``contrast_utils``):

Type I (sequential). With ``X'X = L D L'`` (Doolittle: ``L`` unit lower triangular), the rows
of ``L'`` that belong to a term: each term adjusted for the terms before it.

Type II. A term contained in no other term (containment as in
:meth:`~jaxhlm._src.infer.fixed_terms.FixedStructure.contained_in`) is tested by the rows of
the identity for its coefficients. For any other term ``T``, the columns of ``X`` are reordered
as ``[unrelated to T, T, terms containing T]`` and the type I rows of ``T`` in that order are
taken: ``T`` adjusted for everything except the terms that contain it.

Type III. Coding independent: with ``rdX`` the full-dummy matrix (every categorical factor coded
by the indicators of all its levels) and ``Xt`` the treatment-coded ``X``,
``M = (Xt^+ rdX)'`` expresses every cell parameter in the treatment parameters; for each term
(highest order first) that is contained in others, its columns of ``M`` are replaced by their
least-squares residuals on the columns of the terms containing it; the rows of ``M`` that are
the cells named by ``Xt``'s columns, transposed per term, give the hypotheses in treatment
coding, mapped to the model's coding by ``Xt^+ X``. Numbers below ~1e-7 of the largest are
zeroed on the way, as R's ``zapsmall``.
"""
from __future__ import annotations

import numpy as np

from ..base.errors import ArgumentError, InferenceError
from .fixed_terms import dummy_matrices, fixed_structure, model_frame

__all__ = ["doolittle_upper", "hypotheses"]

DOOLITTLE_EPS = 1e-6  # lmerTest's doolittle() zeroes |L| < 1e-6 and pivots < 1e-6


def doolittle_upper(S: np.ndarray, eps: float = DOOLITTLE_EPS) -> np.ndarray:
    """``L'`` of the Doolittle factorisation ``S = L D L'`` (``L`` unit lower triangular).

    Row ``i`` of the result is the type I contrast of column ``i`` adjusted for columns
    ``0..i-1``. As lmerTest, a pivot below ``eps`` gives a zero column and entries of ``L``
    below ``eps`` in absolute value are set to 0.
    """
    S = np.asarray(S, dtype=np.float64)
    n = S.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = S[i, :] - L[i, :i] @ U[:i, :]
        if i + 1 < n:
            col = S[i + 1:, i] - L[i + 1:, :i] @ U[:i, i]
            L[i + 1:, i] = 0.0 if abs(U[i, i]) < eps else col / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L.T


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    x = np.asarray(x, dtype=np.float64)
    mx = np.max(np.abs(x)) if x.size else 0.0
    if not (mx > 0 and np.isfinite(mx)):
        return x.copy()
    return np.round(x, max(0, digits - int(np.ceil(np.log10(mx)))))


def _type1(model, fs, X) -> dict:
    U = doolittle_upper(X.T @ X)
    return {t.label: U[list(t.cols), :] for t in fs.terms}


def _marginal(fs, p) -> dict:
    eye = np.eye(p)
    return {t.label: eye[list(t.cols), :] for t in fs.terms}


def _type2(model, fs, X) -> dict:
    p = X.shape[1]
    out = {}
    marg = _marginal(fs, p)
    for t in fs.terms:
        cont = fs.contained_in(t)
        if not cont:
            out[t.label] = marg[t.label]
            continue
        related = list(t.cols) + [c for u in cont for c in u.cols]
        order = [c for c in range(p) if c not in set(related)] + related
        Uo = doolittle_upper(X[:, order].T @ X[:, order])
        rows = [order.index(c) for c in t.cols]
        Lr = Uo[rows, :]
        L = np.zeros((len(rows), p))
        L[:, order] = Lr
        out[t.label] = L
    return out


def _type3(model, fs, X, frame) -> dict:
    rdX, Xt, match, term_cols = dummy_matrices(model, frame)
    # the treatment coding must span the model's columns (same fitted values)
    B, *_ = np.linalg.lstsq(Xt, X, rcond=None)
    if np.max(np.abs(Xt @ B - X)) > 1e-6 * max(1.0, np.max(np.abs(X))):
        raise InferenceError(
            "type III hypotheses: the model's coding of the fixed effects does not span the same space as "
            "R's treatment coding of the same terms; use type=1 or 2, or test contrasts with contest()"
        )
    pinv = np.linalg.pinv(Xt)
    M = zapsmall((pinv @ rdX).T)  # rows: cells of rdX; columns: treatment coefficients
    order = sorted(range(len(fs.terms)), key=lambda i: -fs.terms[i].order)  # stable: ties in term order
    for i in order:
        t = fs.terms[i]
        cont = fs.contained_in(t)
        if not cont:
            continue
        ci = term_cols[i]
        cc = [c for u in cont for c in term_cols[fs.terms.index(u)]]
        if not ci:
            continue
        if cc:
            coef, *_ = np.linalg.lstsq(M[:, cc], M[:, ci], rcond=None)
            M[:, ci] = zapsmall(M[:, ci] - M[:, cc] @ coef)
    Lsq = M[match, :]  # rows: the cells named by Xt's columns
    mapping = zapsmall(pinv @ X)
    out = {}
    for i, t in enumerate(fs.terms):
        Lt = Lsq[:, term_cols[i]].T
        Lt = Lt[np.sum(np.abs(Lt), axis=1) > 1e-8, :]
        out[t.label] = Lt @ mapping
    return out


def hypotheses(model, type=3, data=None) -> dict:
    """lmerTest's hypothesis matrix of each fixed-effects term.

    Parameters
    ----------
    model : LinearMixedModel
    type : {1, 2, 3, "I", "II", "III", "marginal"}
    data : pandas.DataFrame, optional
        The data of the fit (type III needs it); default the data kept by :func:`jaxhlm.lmer`.

    Returns
    -------
    dict
        Term label -> array of shape (k, p). With at most one term or one coefficient every
        type gives the type I matrices (as lmerTest).
    """
    key = str(type).strip().upper()
    aliases = {"1": "1", "I": "1", "2": "2", "II": "2", "3": "3", "III": "3", "MARGINAL": "marginal"}
    if key not in aliases:
        raise ArgumentError(f"type must be 1, 2, 3 (or 'I', 'II', 'III', 'marginal'), got {type!r}")
    kind = aliases[key]
    fs = fixed_structure(model)
    X = model.design.X
    p = X.shape[1]
    if kind == "marginal":
        return _marginal(fs, p)
    if kind == "1" or p <= 1 or len(fs.terms) <= 1:
        return _type1(model, fs, X)
    if kind == "2":
        return _type2(model, fs, X)
    return _type3(model, fs, X, model_frame(model, data))
