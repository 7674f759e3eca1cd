"""Packaging stays consistent: environment.yml installs what pyproject.toml declares."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_package_with_dev_extra():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-e .[dev]"]], "environment.yml must pip-install the package itself (-e .[dev])"
    assert "pip" in deps
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    # the conda python range must equal requires-python
    assert python.replace("python", "").replace(" ", "") == _pyproject()["project"]["requires-python"].replace(" ", "")
    conda_only = [d for d in deps if isinstance(d, str) and not d.startswith(("python", "pip"))]
    assert conda_only == [], f"declare runtime dependencies in pyproject.toml, not environment.yml: {conda_only}"


def test_core_dependencies_declared_with_lower_bounds_only():
    project = _pyproject()["project"]
    names = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower(): d for d in project["dependencies"]}
    for core in ("jupyterlab", "ipywidgets", "pytorch-lightning", "torchvision", "torch", "tinydb", "requests",
                 "pillow", "matplotlib"):
        assert core in names, f"{core} missing from dependencies"
    for pinned in ("torch", "torchvision"):
        spec = names[pinned]
        assert "==" not in spec and "<" not in spec, f"{pinned} must have a lower bound only: {spec}"
    dev = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() for d in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval"} <= dev


def test_readme_quickstart_matches_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in readme and 'pip install -q -e ".[dev]"' in ci
    assert re.search(r"^pytest\b", readme, re.M) and "python -m pytest" in ci


def test_public_names_resolve():
    """Every lazily exported name resolves to the object its module defines."""
    import workbench
    import workbench.widgets as widgets

    for name in workbench.__all__:
        assert getattr(workbench, name) is not None, name
    for name in widgets.__all__:
        assert isinstance(getattr(widgets, name), type), name
