"""The documentation site: every public name has an API entry, every page of the nav exists.

``mkdocs build --strict`` itself runs in CI (.ci/run); these checks need no mkdocs: they call the page generators of
the build hook (docs/_hooks.py) directly.
"""

import ast
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import yaml

import pdeforge

REPO = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("pdeforge_docs_hooks", REPO / "docs" / "_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_packages() -> set[str]:
    """Every public subpackage, and every public top-level module that declares ``__all__``."""
    names = {
        m.name.removeprefix("pdeforge.")
        for m in pkgutil.walk_packages(pdeforge.__path__, "pdeforge.")
        if m.ispkg and not any(part.startswith("_") for part in m.name.split("."))
    }
    for path in REPO.glob("*.py"):
        tree = ast.parse(path.read_text())
        if not path.stem.startswith("_") and any(
            isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets) for n in tree.body
        ):
            names.add(path.stem)
    return names


def test_every_public_name_has_an_api_entry():
    hooks = _hooks()
    assert _public_packages() <= set(hooks.PACKAGES), "a public package has no API page: add it to docs/_hooks.py"
    for package in hooks.PACKAGES:
        page = hooks.api_page(package)
        entries = set(re.findall(r"^::: (\S+)$", page, flags=re.M))
        names = importlib.import_module(f"pdeforge.{package}").__all__
        assert names, package
        for name in names:
            assert any(e.rsplit(".", 1)[-1] == name for e in entries), f"pdeforge.{package}.{name} has no API entry"


def test_cli_page_has_every_subcommand():
    page = _hooks().cli_page()
    for command in ("inspect", "convert pdebench", "generate", "plot", "train", "evaluate"):
        assert f"## `pdeforge {command}`" in page
    assert "--optim.lr" in page and "--run.resume" in page  # the train options, from the config dataclasses


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_nav_page_exists():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    generated = {"cli.md", *(_hooks().api_path(p) for p in _hooks().PACKAGES)}
    pages = _nav_pages(config["nav"])
    assert len(pages) > 20
    missing = [p for p in pages if not (REPO / config["docs_dir"] / p).is_file() and p not in generated]
    assert not missing, f"pages in mkdocs.yml's nav that do not exist: {missing}"
    assert generated <= set(pages), f"generated pages missing from mkdocs.yml's nav: {generated - set(pages)}"
