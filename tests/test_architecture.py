"""The package's import structure, read from the source with ``ast`` (nothing is imported).

Data flows one way: source -> Checkpoint -> Comparison -> LoadPlan -> partial_load ->
LoadReport -> view. Each module imports only modules to its left, there are no import cycles,
and the core never imports the widget layer (ipywidgets, anywidget, traitlets).
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sd_widgets"


@dataclass(frozen=True)
class Import:
    target: str  # absolute module name ("sd_widgets.plan._plan", "torch", "ipywidgets")
    scope: str  # "module", "type-checking" or the enclosing function ("Comparison.plan")


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: pathlib.Path) -> list[Import]:
    """Every import statement of one file, resolved to absolute names, with its scope."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> list[str]:
        if node.level == 0:
            base = node.module or ""
        else:
            parts = package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        if node.module is None:  # from . import a, b: the submodules themselves
            return [f"{base}.{a.name}" for a in node.names]
        return [base]

    def visit(body: list[ast.stmt], scope: str) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(Import(a.name, scope) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.extend(Import(t, scope) for t in resolve(node))
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, "type-checking")
                visit(node.orelse, scope)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = (
                    node.name if scope in ("module", "type-checking") else f"{scope}.{node.name}"
                )
                visit(node.body, inner)
            elif isinstance(node, ast.ClassDef):
                visit(node.body, node.name if scope == "module" else f"{scope}.{node.name}")
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    child = getattr(node, field, None)
                    if isinstance(child, list) and child and isinstance(child[0], ast.AST):
                        visit(
                            [c for c in child if isinstance(c, ast.stmt)]
                            + [
                                s for h in child if isinstance(h, ast.ExceptHandler) for s in h.body
                            ],
                            scope,
                        )

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "module")
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def internal(target: str) -> str | None:
    """The sd_widgets module an import refers to (``from .checkpoint import X`` -> the package;
    ``from .checkpoint._core import Y`` -> that module), or None for third-party imports."""
    if not (target == "sd_widgets" or target.startswith("sd_widgets.")):
        return None
    while target not in MODULES and "." in target:
        target = target.rpartition(".")[0]  # "pkg.module.Name" -> "pkg.module"
    return target


def graph(scopes: tuple[str, ...] = ("module",)) -> dict[str, set[str]]:
    """Edges of run-time imports made at import time (``scopes``) between package modules."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, imports in IMPORTS.items():
        for imp in imports:
            target = internal(imp.target)
            if target is not None and target != name and imp.scope in scopes:
                edges[name].add(target)
    return edges


def importers(module: str) -> dict[str, list[str]]:
    """module -> scopes where each package module imports ``module`` (any scope)."""
    out: dict[str, list[str]] = {}
    for name, imports in IMPORTS.items():
        for imp in imports:
            if internal(imp.target) == module and name != module:
                out.setdefault(name, []).append(imp.scope)
    return out


def test_the_parser_sees_the_package():
    for expected in (
        "sd_widgets",
        "sd_widgets.compare._compare",
        "sd_widgets.plan._plan",
        "sd_widgets.plan._codegen",
        "sd_widgets.load._load",
        "sd_widgets.compare._metadata",
        "sd_widgets.compare._adapters",
        "sd_widgets.checkpoint",
    ):
        assert expected in MODULES
    edges = graph()
    assert "sd_widgets.compare._compare" in edges["sd_widgets.plan._plan"]
    assert "sd_widgets.plan._plan" in edges["sd_widgets.load._load"]
    assert "sd_widgets.compare._metadata" in edges["sd_widgets.plan._plan"]
    # lazy imports are seen too, with the function they are in
    assert "Comparison.plan" in importers("sd_widgets.plan._plan")["sd_widgets.compare._compare"]


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := walk(node)):
            return found
    return None


def _without_package_inits(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its submodules is not a cycle through them: drop
    the edges from a package to its own submodules."""
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}


def test_no_import_cycles():
    edges = _without_package_inits(graph())
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


# the pipeline, left to right, one package per stage: a stage never imports a stage to its right
PIPELINE = [
    "sd_widgets.checkpoint",
    "sd_widgets.compare",
    "sd_widgets.plan",
    "sd_widgets.load",
]
#: lazy imports of a later stage that are one-line conveniences, on purpose
CONVENIENCES = {
    ("sd_widgets.compare", "sd_widgets.plan"): {
        "Comparison.plan",
        "Comparison.select",
    }
}


def _stage(module: str) -> str | None:
    return next((s for s in PIPELINE if module == s or module.startswith(s + ".")), None)


def _importers_of_stage(stage: str) -> dict[str, list[str]]:
    """module -> scopes where it imports any module of ``stage`` (the package or its modules)."""
    out: dict[str, list[str]] = {}
    for module in MODULES:
        if module == stage or module.startswith(stage + "."):
            for name, scopes in importers(module).items():
                out.setdefault(name, []).extend(scopes)
    return out


@pytest.mark.parametrize("later", PIPELINE[1:])
def test_pipeline_stages_import_only_to_their_left(later):
    rank = PIPELINE.index(later)
    for name, scopes in _importers_of_stage(later).items():
        stage = _stage(name)
        if stage is None or PIPELINE.index(stage) >= rank:
            continue
        allowed = CONVENIENCES.get((stage, later), set()) | {"type-checking"}
        assert set(scopes) <= allowed, f"{name} imports {later} in {scopes}"


STAGES = (*PIPELINE, "sd_widgets.widget", "sd_widgets.cli")


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_a_package_with_a_small_public_face(stage):
    """One package per stage: its ``__init__`` names what users may use (a handful of names),
    and every module behind it is private (underscore), so nothing else looks public."""
    init = MODULES[stage]
    assert init.name == "__init__.py"
    modules = [m for m in MODULES if m.startswith(stage + ".")]
    assert modules, stage
    assert all(m.rpartition(".")[2].startswith("_") for m in modules), modules
    tree = ast.parse(init.read_text(encoding="utf-8"))
    exported = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "__all__" for t in node.targets)
    )
    assert isinstance(exported, ast.List) and 1 <= len(exported.elts) <= 8, stage


def test_only_public_packages_declare_all():
    """``__all__`` belongs to the faces users import from; a private module has none to show."""
    declared = [
        name
        for name, path in MODULES.items()
        if "__all__" in path.read_text(encoding="utf-8")
        and any(part.startswith("_") and part != "__init__" for part in name.split("."))
    ]
    assert declared == []


@pytest.mark.parametrize(
    "module",
    [
        "sd_widgets.plan._codegen",
        "sd_widgets.compare._metadata",
        "sd_widgets.compare._adapters",
        "sd_widgets.compare._lora",
        "sd_widgets.units",
    ],
)
def test_helpers_below_the_plan_never_import_it(module):
    """codegen takes a frozen LoadSpec, never a plan; the helpers plan, load and codegen share
    sit to their left."""
    later = {
        "sd_widgets.plan._plan",
        "sd_widgets.load",
        "sd_widgets.compare._compare",
        "sd_widgets.widget",
    }
    for imp in IMPORTS[module]:
        target = internal(imp.target)
        assert target is None or not any(
            target == m or target.startswith(m + ".") for m in later
        ), f"{module} imports {imp}"


def test_plan_reads_no_private_attribute_of_the_comparison():
    tree = ast.parse(MODULES["sd_widgets.plan._plan"].read_text(encoding="utf-8"))
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and isinstance(node.value, ast.Name)
        and node.value.id in ("cmp", "comparison")
    ]
    private += [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "comparison"
    ]
    assert private == []


WIDGET_LIBRARIES = ("ipywidgets", "anywidget", "traitlets")


def test_the_core_never_imports_the_widget_layer():
    for name, imports in IMPORTS.items():
        if name.startswith("sd_widgets.widget"):
            continue
        for imp in imports:
            top = imp.target.split(".")[0]
            bad = top in WIDGET_LIBRARIES or imp.target.startswith("sd_widgets.widget")
            # the package's lazy ``__getattr__("Explorer")`` is the one way in, on first use
            way_in = name == "sd_widgets" and imp.scope in ("__getattr__", "type-checking")
            # ``diff --format html`` writes the Explorer's own report (lazily, in one function)
            way_in = way_in or (name == "sd_widgets.cli._main" and imp.scope == "_write_html")
            if bad and not way_in:
                pytest.fail(f"{name} imports {imp.target} ({imp.scope})")


#: The private names of torch the package uses, each for a reason torch's public API cannot
#: serve (docs/internals.md, "Where sd_widgets reads torch's private names"). No ``torch._C``,
#: no private torch module, no other private function: a new name fails the test below until
#: it is argued for here and in the docs.
TORCH_PRIVATE_NAMES = {
    # a module's own tensor and child dicts: where a parameter or buffer object lives, read
    # and put back without firing torch's global registration hooks (``setattr`` and the
    # ``register_*`` calls fire them), and walked 2x faster than through the generators
    "_parameters": "read and restored",
    "_buffers": "read and restored",
    "_modules": "the comparison's walk over the model",
    # whether a module has load hooks (a reason to ask torch by a dry run): no public getter
    "_load_state_dict_pre_hooks": "read only",
    "_load_state_dict_post_hooks": "read only",
    # the documented override point of a module's own loading: compared, never called
    "_load_from_state_dict": "an override is loading code of the module's own",
    # the state-dict protocol's module versions (``state_dict()._metadata``), which
    # ``load_state_dict`` reads; copied so that a load never changes the caller's dict
    "_metadata": "module versions of a state dict",
    # what torch.distributed.checkpoint pickles into its ``.metadata`` file: the restricted
    # unpickler's allow-list must name them to read that file (and nothing else)
    "_StorageInfo": "DCP's metadata format",
    "_get_layout": "DCP's metadata format",
}


def _own_private_names() -> set[str]:
    """Underscore names the package itself defines: functions, classes, attributes it sets."""
    own: set[str] = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
    return {n for n in own if n.startswith("_")}


def test_torch_private_names_are_the_argued_few():
    own = _own_private_names() - set(TORCH_PRIVATE_NAMES)
    used: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
                parts = (node.module or "").split(".")
                for alias in node.names:
                    if alias.name.startswith("_") or any(p.startswith("_") for p in parts):
                        used.setdefault(alias.name, set()).add(name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("torch") and "._" in alias.name:
                        used.setdefault(alias.name, set()).add(name)
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                if node.attr.startswith("__") or node.attr in own:
                    continue
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                used.setdefault(node.attr, set()).add(name)
    unexplained = {n: sorted(where) for n, where in used.items() if n not in TORCH_PRIVATE_NAMES}
    assert unexplained == {}, unexplained
    # and the list names nothing the package no longer uses
    assert set(TORCH_PRIVATE_NAMES) <= set(used), set(TORCH_PRIVATE_NAMES) - set(used)
