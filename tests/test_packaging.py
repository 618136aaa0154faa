"""The package runs from what pyproject.toml declares: every module imports, and every third-party module it
imports belongs to a declared dependency.

The second test matters because a machine where packages were installed by hand imports them happily: only the
declaration makes a fresh virtual environment work.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        found.append(package)
        path = [str(REPO / package)]
        found += [m.name for m in pkgutil.walk_packages(path, prefix=f"{package}.")]
    return sorted(found)


def third_party_imports() -> dict[str, list[str]]:
    """Top-level module name -> the files that import it, for every absolute import in the packages."""
    local = set(PACKAGES) | set(sys.stdlib_module_names)
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in local:
                        found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("name", modules())
def test_every_module_imports(name):
    importlib.import_module(name)


def test_every_third_party_import_is_a_declared_dependency():
    declared = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    owners = packages_distributions()
    undeclared = {}
    for module, files in third_party_imports().items():
        distributions = {normalise(d) for d in owners.get(module, [])}
        if not distributions & declared:
            undeclared[module] = (sorted(distributions) or ["(not installed)"], sorted(set(files)))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_test_extras_are_bounded():
    """An unbounded test extra resolves to whatever is newest on the day, and new majors broke the suite before."""
    for requirement in PYPROJECT["project"]["optional-dependencies"]["test"]:
        assert "<" in requirement or "==" in requirement, f"give {requirement!r} an upper bound"
