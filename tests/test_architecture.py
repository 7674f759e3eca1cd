"""The shape of the house (DESIGN.md, issue 10): imports flow one way, nothing imports names from
the package root, no module reaches into another's private names, exactly one place looks at a
command's ``kind``, and modules and functions stay readable. Read from the source with ``ast``.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "workbench"
KIND_NAMES = {"baseline", "maml", "fomaml", "metasgd", "protonet", "finetune"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (PKG.parent / Path(*name.split(".")) / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Every workbench module this one imports (top-level and inside functions)."""
    base = name if _is_package(name) else name.rsplit(".", 1)[0]
    found: set[str] = set()
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for n in ast.walk(node)}  # `if TYPE_CHECKING:` imports never run
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("workbench")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                mod = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("workbench"):
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in MODULES else mod)
    return {m for m in found if m != name}


GRAPH = {name: _imports(name, tree) for name, tree in MODULES.items()}


def _package(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle_between_modules():
    # A package's __init__ re-exporting its own modules is no cycle of the house.
    graph = {n: {m for m in deps if not (_is_package(m) and n.startswith(m + "."))} for n, deps in GRAPH.items()}
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for n, deps in GRAPH.items():
        graph.setdefault(_package(n), set()).update(_package(m) for m in deps if _package(m) != _package(n))
    graph.pop("workbench", None)  # the root only re-exports (checked below)
    for deps in graph.values():
        deps.discard("workbench")
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_nothing_imports_names_from_the_package_root():
    bad = []
    for name, tree in MODULES.items():
        if name == "workbench":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                depth = len(name.split(".")) - (0 if _is_package(name) else 1)
                root = (node.level and node.level == depth and not node.module) or (not node.level and node.module == "workbench")
                if root:
                    bad += [f"{name}: {a.name}" for a in node.names if f"workbench.{a.name}" not in MODULES]
    assert bad == [], bad


#: Private names of other libraries used on purpose (argparse has no public hook for these).
THIRD_PARTY_PRIVATE = {"_SubParsersAction", "_action_max_length", "_current_indent", "_indent_increment",
                       "_actions", "_choices_actions"}


def _defined_here(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_no_module_reaches_into_another_modules_private_names():
    bad = []
    for name, tree in MODULES.items():
        own = _defined_here(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr not in own and node.attr not in THIRD_PARTY_PRIVATE:
                    bad.append(f"{name}:{node.lineno}: ._{node.attr.lstrip('_')}")
    assert bad == [], bad


def test_only_the_command_language_looks_at_kind_names():
    """``kind`` decides the command family once (commands.parse); nothing else compares kinds."""
    bad = []
    for name, tree in MODULES.items():
        if name.startswith("workbench.commands"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                consts = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
                names = {getattr(n, "id", getattr(n, "attr", "")) for n in ast.walk(node)}
                if consts & KIND_NAMES or any(re.search(r"KINDS$", x or "") for x in names):
                    bad.append(f"{name}:{node.lineno}")
    assert bad == [], bad
    lookups = [n for n in ast.walk(MODULES["workbench.commands"]) if isinstance(n, ast.Call)
               and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
               and getattr(n.func.value, "id", "") == "FAMILIES"]
    assert len(lookups) == 1  # FAMILIES.get(kind) in parse(): the one dispatch


def test_jobs_only_schedules():
    code = re.sub(r'"""[\s\S]*?"""', "", (PKG / "jobs.py").read_text())  # without docstrings
    assert "kind" not in code and "pytorch_lightning" not in code and "Trainer" not in code


@pytest.mark.parametrize("name", list(MODULES))
def test_modules_and_functions_stay_readable(name):
    path = PKG.parent / Path(*name.split("."))
    path = path / "__init__.py" if _is_package(name) else path.with_suffix(".py")
    assert len(path.read_text().splitlines()) <= 450, f"{name} is over 450 lines"
    for node in ast.walk(MODULES[name]):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= 80, f"{name}.{node.name} is over 80 lines"
