"""The package's shape: subpackages in pipeline order, imports only pointing down, no cycles.

Every ``import`` in every module is read with :mod:`ast`, also those inside functions (a
function-level import is an arrow like any other; it only runs later).
"""
from __future__ import annotations

import ast
import pathlib

import jaxhlm

ROOT = pathlib.Path(jaxhlm.__file__).parent
# pipeline order: a module may import from its own layer's package or from layers before it
LAYERS = ["base", "formula", "design", "stats", "engine", "optim", "model", "infer", "sim", "plots", "facade"]
MAX_LINES = 450


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set:
    name = _module_name(path)
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("jaxhlm")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("jaxhlm"):
                continue
            for a in node.names:  # "from pkg import module" names a module
                sub = f"{mod}.{a.name}"
                out.add(sub if _exists(sub) else mod)
    return out


def _exists(mod: str) -> bool:
    p = ROOT.parent.joinpath(*mod.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def graph() -> dict:
    return {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def layer(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) >= 3 and parts[1] == "_src" and parts[2] in LAYERS:
        return LAYERS.index(parts[2])
    if len(parts) >= 2 and parts[1] == "_src":
        return len(LAYERS) - 1  # _src's own top modules (example.py) sit with the facade
    return len(LAYERS)  # jaxhlm's public modules sit above everything


def test_imports_point_down_the_pipeline():
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer(dep) > layer(mod):
                bad.append(f"{mod} -> {dep}")
    assert bad == []


def test_no_import_cycles():
    g = graph()
    # package __init__ files re-export their modules: the arrow pkg -> pkg.module is not a dependency
    edges = {m: {d for d in ds if d in g and not d.startswith(m + ".")} for m, ds in g.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert cycles == []


def test_no_private_fields_of_the_model_read_from_outside():
    """Inference and simulation read the fitted state through its typed fields, never ``m._x``."""
    bad = []
    for p in (ROOT / "_src").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("_design", "_struct", "_stats", "_fit", "_layout"):
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert bad == []


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_package_docstring_lists_the_pipeline():
    import jaxhlm._src as src

    doc = src.__doc__ or ""
    pos = [doc.find(f"{name}/") for name in LAYERS if name != "plots"]
    assert all(p >= 0 for p in pos) and pos == sorted(pos), doc
