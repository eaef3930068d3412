"""mkdocs hook: the CLI reference and the API reference, generated at build time.

The CLI page is the help of every ``pdeforge`` subcommand (``pdeforge.cli.build_parser()``) plus the options of the
``train`` configs (``pdeforge.training.config.config_help``); the API pages list every name of each public package's
``__all__``, so a name added later cannot be missing; the examples page (docs/examples.md) gets the gallery of
examples/*.py, each script's docstring and code, where it says ``GALLERY``. ``generated_pages()`` and
``examples_gallery()`` need no mkdocs (tests call them); ``on_files`` and ``on_page_markdown`` are the hooks mkdocs
calls.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import tempfile
from pathlib import Path

# the public packages, one API page each, in the order of the nav
PACKAGES = (
    "datasets",
    "solvers",
    "training",
    "operators",
    "operators.field",
    "operators.tsm",
    "operators.noda",
    "operators.scot",
    "operators.mpp",
    "operators.dpot",
    "operators.well",
    "generative",
    "pinns",
    "metrics",
    "tasks",
    "families",
    "checkpoint",
    "plots",
)

# families whose options the CLI page lists: (family, a config of it, or None for train.py's embedded default)
TRAIN_CONFIGS = (
    ("operator", None),
    ("tsm", "configs/tsm_kolmogorov.yaml"),
    ("noda", "configs/noda_ks.yaml"),
    ("scot", "configs/scot_finetune.yaml"),
    ("pinn", "configs/pinn_burgers.yaml"),
    ("generative", "configs/diffusion_ks.yaml"),
)


REPO = Path(__file__).resolve().parents[1]
EXAMPLES_PAGE = "examples.md"
GALLERY = "<!-- the gallery: examples/*.py -->"  # where docs/examples.md gets it


def api_path(package: str) -> str:
    return f"api/{package}.md"


def _target(module, package: str, name: str) -> str:
    """The dotted path mkdocstrings renders for ``name``: a lazily exported name (PEP 562, ``_WHERE`` / ``_LAZY``)
    through the module that defines it, since static analysis cannot follow ``__getattr__``; any other through the
    package, whose import griffe follows."""
    lazy = {**getattr(module, "_WHERE", {}), **getattr(module, "_LAZY", {})}
    if name in lazy:
        return f"{importlib.util.resolve_name(lazy[name], package)}.{name}"
    return f"{package}.{name}"


def api_page(package: str) -> str:
    """The API page of ``pdeforge.<package>``: its docstring, then one entry per name of its ``__all__``."""
    full = f"pdeforge.{package}"
    module = importlib.import_module(full)
    lines = [
        f"# `{full}`",
        "",
        f"::: {full}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "",
    ]
    for name in module.__all__:
        lines += [
            f"::: {_target(module, full, name)}",
            "    options:",
            "      heading_level: 2",
            "      show_root_full_path: false",
            "",
        ]
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _subcommands(sub, f"{prefix} {name}")
    return out


def cli_page() -> str:
    """Every subcommand's ``--help``, and the options of ``pdeforge train CONFIG`` for each family."""
    from pdeforge.cli import build_parser
    from pdeforge.families import config_class
    from pdeforge.training.config import config_help

    lines = [
        "# Command line",
        "",
        "Generated from `pdeforge.cli.build_parser()` and the config dataclasses at "
        "build time. `pdeforge COMMAND --help` prints the same.",
        "",
    ]
    for prog, parser in _subcommands(build_parser(), "pdeforge"):
        parser.prog = prog
        lines += [f"## `{prog}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    lines += [
        "## `pdeforge train` options",
        "",
        "`pdeforge train CONFIG --help` (or `python train.py CONFIG --help`) lists the options of the config's "
        "family; any of them is set with `--section.key value`. The options of each family, at their "
        "defaults:",
        "",
    ]
    for family, example in TRAIN_CONFIGS:
        where = f"e.g. `{example}`" if example else "`python train.py`, configs/fno_*.yaml"
        lines += [f"### `{family}` ({where})", "", "```text", config_help(config_class(family)), "```", ""]
    return "\n".join(lines)


def example_scripts() -> list[Path]:
    """The scripts of the gallery, in the order of their numbers: ``examples/NN_name.py``."""
    return sorted((REPO / "examples").glob("[0-9][0-9]_*.py"))


def example_section(script: Path) -> str:
    """One script of the gallery: its docstring (Markdown: its first line as the lead), then its code."""
    text = script.read_text()
    tree = ast.parse(text)
    doc = ast.get_docstring(tree)
    if not doc:
        raise ValueError(f"{script}: expected a module docstring saying what the example shows")
    code = "\n".join(text.splitlines()[tree.body[0].end_lineno :]).strip("\n")
    lead, _, rest = doc.partition("\n")
    return "\n".join(
        [f"## `{script.name}`", "", f"**{lead.strip()}**", "", rest.strip(), "", "```python", code, "```", ""]
    )


def examples_gallery() -> str:
    """Every script of examples/, its docstring and code (what docs/examples.md shows where it says GALLERY)."""
    return "\n".join(example_section(script) for script in example_scripts())


def generated_pages() -> dict[str, str]:
    """Every page this hook writes: path under docs/ -> Markdown."""
    return {"cli.md": cli_page(), **{api_path(p): api_page(p) for p in PACKAGES}}


_LINK_PARENT: Path | None = None  # the temporary folder on_config makes, removed after the build


def _first(hook):
    """Run ``hook`` before the plugins' own hooks (mkdocstrings sets up its handlers in its ``on_config``)."""
    try:
        from mkdocs.plugins import event_priority
    except ImportError:  # the page generators need no mkdocs
        return hook
    return event_priority(100)(hook)


@_first
def on_config(config):
    # The repository root is the package (pyproject.toml maps ``pdeforge`` to "."), so no folder on disk is named
    # pdeforge for mkdocstrings' static analysis to find: give it one, a link to the root in a temporary folder.
    global _LINK_PARENT
    parent = _LINK_PARENT = Path(tempfile.mkdtemp(prefix="pdeforge-docs-"))
    (parent / "pdeforge").symlink_to(Path(config.config_file_path).resolve().parent, target_is_directory=True)
    config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})["paths"] = [str(parent)]
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != EXAMPLES_PAGE:
        return markdown
    if GALLERY not in markdown:
        raise ValueError(f"docs/{EXAMPLES_PAGE}: expected the line {GALLERY} where the gallery goes")
    return markdown.replace(GALLERY, examples_gallery())


def on_shutdown():
    if _LINK_PARENT is not None:
        (_LINK_PARENT / "pdeforge").unlink()
        _LINK_PARENT.rmdir()
