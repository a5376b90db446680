"""The layers' arrows point one way: each package imports only what lies beneath it.

Read from the source's own import statements, so a forbidden import fails here before
anyone has to notice it in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> modules it must never import (a prefix forbids its submodules too)
FORBIDDEN = {
    "app/eventlog": (
        "aiohttp",
        "app.http",
        "app.webhooks",
        "app.projection",
        "app.ops",
        "app.commands",
        "app.sync",
        "app.publish",
        "projections",
    ),
    "app/webhooks": (
        "aiohttp.web",
        "app.http",
        "app.projection",
        "app.ops",
        "app.commands",
        "app.sync",
        "app.publish",
    ),
    "app/projection": (
        "aiohttp.web",
        "app.http",
        "app.webhooks",
        "app.ops",
        "app.sync",
        "app.commands",
        "app.publish",
    ),
    "app/sync": ("aiohttp.web", "app.http", "app.projection", "app.ops", "app.commands"),
    "app/publish": ("aiohttp.web", "app.http", "app.ops", "app.commands", "app.sync"),
    "app/ops": ("app.http", "app.commands"),
    "app/http": ("app.commands",),
}
PACKAGES = tuple(
    f"app.{p.name}" for p in sorted((ROOT / "app").iterdir()) if (p / "__init__.py").exists()
)
# The leaves every layer may import; they import no package of `app` themselves.
LEAVES = (
    "app/settings.py",
    "app/sqlite.py",
    "app/files.py",
    "app/terminal.py",
    "app/instants.py",
    "app/logging_setup.py",
    "app/metrics.py",
    "app/children.py",
)
# The only module of `app` that the projections may import.
PROJECTIONS_MAY_IMPORT = ("app.instants",)


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` in `path` names, lazy imports included."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
            # `from app import http` imports the module app.http.
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _names(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """`file: module` for each forbidden import under `package`."""
    return [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if _names(module, forbidden)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(package: str) -> None:
    """No module of the package imports a layer above it (or beside it, where forbidden)."""
    assert violations(package, FORBIDDEN[package]) == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_no_package_of_app(leaf: str) -> None:
    """The leaves (settings, sqlite, files, terminal, ...) sit under every package."""
    found = [m for m in imported_modules(ROOT / leaf) if _names(m, PACKAGES)]
    assert found == []


PACKAGES = tuple(
    f"app.{path.name}"
    for path in sorted((ROOT / "app").iterdir())
    if (path / "__init__.py").exists()
)


def test_projections_know_only_the_instant_format_of_app() -> None:
    """`projections/*` imports nothing of `app` but the instant-format leaf."""
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "projections").rglob("*.py"))
        for module in sorted(imported_modules(path))
        if _names(module, ("app",)) and not _names(module, PROJECTIONS_MAY_IMPORT)
    ]
    assert found == []


def test_only_the_http_package_serves_http() -> None:
    """`aiohttp.web` is imported in `app/http` only."""
    found = [
        f"{path.relative_to(ROOT)}"
        for path in sorted((ROOT / "app").rglob("*.py"))
        if "aiohttp.web" in imported_modules(path) and path.parent.name != "http"
    ]
    assert found == []


def test_nothing_outside_projections_imports_its_private_modules() -> None:
    """The runtime and the tests use `projections`' public surface only."""
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for top in ("app", "tests", "bench")
        for path in sorted((ROOT / top).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module.startswith("projections._")
    ]
    assert found == []


def test_bench_imports_the_product_never_the_tests() -> None:
    """`bench/` scripts import `app`, `projections` and each other, never `tests`."""
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "bench").rglob("*.py"))
        for module in sorted(imported_modules(path))
        if _names(module, ("tests",))
    ]
    assert found == []


def test_tests_share_only_helpers_and_the_fake_api() -> None:
    """Tests import neither a conftest, another test module, nor a benchmark script."""
    # Helpers; the fake Open API; the hand-computed account of the views' tests (data, not
    # code); the PostgreSQL server the suite starts.
    shared = ("tests._helpers", "tests.fake_api", "tests._account", "tests._postgres")
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for module in sorted(imported_modules(path))
        # `from tests import _helpers` names `tests` too.
        if _names(module, ("tests", "bench")) and module != "tests" and not _names(module, shared)
    ]
    assert found == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """A module that imports upward is caught, lazily imported or not."""
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from app.http import views\n    import aiohttp\n")
    assert imported_modules(source) >= {"app.http", "app.http.views", "aiohttp"}
    assert _names("app.http.views", FORBIDDEN["app/eventlog"])


@pytest.mark.parametrize("module", ["lines", "tables", "url", "postgres", "follow"])
def test_the_postgresql_consumer_depends_on_no_other_part_of_app(module: str) -> None:
    """The consumer imports nothing of `app` but itself: the feed comes as arguments.

    Only runner.py (what `publish` runs) and supervisor.py (serve's child) know where the
    feed comes from.
    """
    path = ROOT / "app" / "publish" / f"{module}.py"
    found = [
        m
        for m in sorted(imported_modules(path))
        if _names(m, ("app",))
        and not _names(
            m, tuple(f"app.publish.{n}" for n in ("state", "lines", "tables", "url", "postgres"))
        )
    ]
    assert found == []
