"""Every public function has a NumPy docstring and a real signature."""
from __future__ import annotations

import importlib
import inspect

import pytest

import jaxhlm

# functions whose variable arguments are the interface itself (R's anova(m1, m2, ...))
VARIADIC = {"anova", "lower", "executable"}  # arguments as those of the call they mirror
MODULES = ["jaxhlm.plotting", "jaxhlm._src.infer.summary", "jaxhlm._src.infer.rprint", "jaxhlm._src.infer.rformat",
           "jaxhlm._src.base.programcache", "jaxhlm._src.base.programstore", "jaxhlm._src.base.config"]
PENDING: set = set()  # every public method is documented now


def problems(fn) -> list:
    out = []
    doc = inspect.getdoc(fn) or ""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    if not doc:
        return ["no docstring"]
    if params and "Parameters\n----------" not in doc:
        out.append("no Parameters section")
    if "Returns\n-------" not in doc:
        out.append("no Returns section")
    if fn.__name__ not in VARIADIC:
        out += [f"*{p.name} in the signature" for p in params if p.kind == p.VAR_POSITIONAL]
    for p in params:  # each named parameter is described
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in doc:
            out.append(f"parameter {p.name} not documented")
    return out


def public_functions():
    items = []
    for name in jaxhlm.__all__:
        obj = getattr(jaxhlm, name)
        if inspect.isfunction(obj):
            items.append((name, obj))
        elif inspect.isclass(obj) and not issubclass(obj, BaseException):
            items += [(f"{name}.{m}", f) for m, f in vars(obj).items() if not m.startswith("_") and inspect.isfunction(f)]
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                items.append((f"{modname}.{name}", obj))
            elif inspect.isclass(obj):
                items += [(f"{modname}.{name}.{m}", f) for m, f in vars(obj).items()
                          if not m.startswith("_") and inspect.isfunction(f)]
    return items


ITEMS = public_functions()


@pytest.mark.parametrize("name,fn", [(n, f) for n, f in ITEMS if n not in PENDING], ids=lambda v: v if isinstance(v, str) else "")
def test_numpy_docstring_and_signature(name, fn):
    assert problems(fn) == [], name


def test_every_public_class_has_a_docstring():
    for name in jaxhlm.__all__:
        obj = getattr(jaxhlm, name)
        if inspect.isclass(obj) or inspect.ismodule(obj):
            assert (inspect.getdoc(obj) or "").strip(), name
