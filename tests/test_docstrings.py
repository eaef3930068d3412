"""The examples in the docstrings of the public API run as written.

Public: the package ``pdeforge``, every module and package whose dotted name has no part starting with ``_``, and
in each the names of its ``__all__`` (functions, classes and their public methods). Their docstrings are collected
from the modules themselves, so a docstring added later is covered without being listed here:

- every ``>>>`` example sits in an ``Examples:`` section (the site renders it as code there; elsewhere Markdown
  reads ``>>>`` as nested quotes) and runs as a doctest (ELLIPSIS, NORMALIZE_WHITESPACE) with the globals of the
  module that defines it, in a fresh working folder holding ``configs/`` (the repository's) and ``data/burgers``
  (what ``pdeforge generate burgers_1d --out data/burgers --n-trajectories 20 --resolution 32`` writes), the preset
  cache in a temporary folder;
- Python in a code block that is not a ``>>>`` example (a literal block with a call or an import) is an error: a
  user would copy it, and nothing would run it;
- every command line in a code block (``pdeforge ...``, ``python train.py ...``, ``torchrun ...``) is accepted by
  the command's parser and, for ``train``, its config file exists and its ``--section.key value`` options load.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import io
import pkgutil
import re
import shlex
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import pdeforge

REPO = Path(__file__).resolve().parents[1]
NOT_PACKAGE = {"tests", "benchmarks", "docs", "examples", "build"}  # folders of the repository, not of the API


def public_modules() -> list[str]:
    """``pdeforge`` and every public module below it (no part of the dotted name starting with ``_``)."""
    names, todo = ["pdeforge"], [(pdeforge.__path__, "pdeforge.")]
    while todo:
        path, prefix = todo.pop()
        for info in pkgutil.iter_modules(path, prefix):
            last = info.name.rsplit(".", 1)[1]
            if last.startswith("_") or (prefix == "pdeforge." and last in NOT_PACKAGE):
                continue
            names.append(info.name)
            if info.ispkg:
                todo.append((importlib.import_module(info.name).__path__, info.name + "."))
    return sorted(names)


@dataclass(frozen=True)
class Docstring:
    name: str  # the dotted name it documents
    text: str
    module: ModuleType  # where it is defined: a doctest runs with its globals
    line: int  # its first line in the module's file (0 if unknown)


def _line(obj) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 0


def public_docstrings() -> list[Docstring]:
    """The docstrings of every public module, of the names in its ``__all__`` and of their public members."""
    found: dict[int, Docstring] = {}

    def add(name: str, obj, module: ModuleType) -> None:
        if obj.__doc__ and id(obj) not in found:
            found[id(obj)] = Docstring(name, obj.__doc__, module, _line(obj))

    for module_name in public_modules():
        module = importlib.import_module(module_name)
        add(module_name, module, module)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            home = sys.modules.get(obj.__module__, module)
            add(f"{module_name}.{name}", obj, home)
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    value = getattr(value, "__func__", getattr(value, "fget", value))  # class/static method, property
                    if not member.startswith("_") and inspect.isfunction(value):
                        add(f"{module_name}.{name}.{member}", value, home)
    return sorted(found.values(), key=lambda d: d.name)


DOCSTRINGS = public_docstrings()
PARSER = doctest.DocTestParser()


def doctest_of(doc: Docstring) -> doctest.DocTest:
    file = getattr(doc.module, "__file__", None)
    return PARSER.get_doctest(doc.text, dict(vars(doc.module)), doc.name, file, doc.line)


WITH_EXAMPLES = [doc for doc in DOCSTRINGS if doctest_of(doc).examples]


def code_blocks(text: str) -> list[str]:
    """The code blocks of a docstring: fenced (```) and indented ones (literal blocks, section bodies), ``>>>``
    examples and their output left out, each dedented."""
    lines = text.splitlines()
    for example in PARSER.get_examples(text):  # blank the examples: they run as doctests
        n = example.source.count("\n") + example.want.count("\n")
        for i in range(example.lineno, min(example.lineno + n, len(lines))):
            lines[i] = ""
    text = inspect.cleandoc("\n".join(lines))
    fences = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", flags=re.M | re.S)
    blocks = [textwrap.dedent(b).strip("\n") for b in fences.findall(text)]
    lines = fences.sub("", text).splitlines()
    block = []
    for line in [*lines, "-"]:  # "-": unindented text, ends the last block
        if line.strip() and line.startswith("    "):
            block.append(line)
        elif not line.strip() and block:  # a blank line inside a block, or after it
            block.append("")
        elif block:
            blocks.append(textwrap.dedent("\n".join(block)).strip("\n"))
            block = []
    return [b for b in blocks if b]


def python_in(block: str) -> str | None:
    """The first piece of ``block`` that is Python a user would run (a statement with a call or an import), else
    None. The whole block is tried, then each line: prose, math, YAML and command lines do not parse or call."""
    for piece in (block, *block.splitlines()):
        try:
            tree = ast.parse(piece.strip())
        except SyntaxError:
            continue
        if any(isinstance(n, (ast.Call, ast.Import, ast.ImportFrom)) for n in ast.walk(tree)):
            return piece.strip()
    return None


COMMAND = re.compile(r"^(pdeforge|python train\.py|torchrun)(\s|$)")


def command_lines(text: str) -> list[str]:
    """The command lines of a docstring's code blocks, cut at their comment (``#``, or two spaces before the
    description of a usage table), optional ``[...]`` parts dropped, the first of alternatives ``a|b`` kept; lines
    that stand for more (``...``) left out."""
    out = []
    for block in code_blocks(text):
        for line in block.splitlines():
            line = re.split(r"\s{2,}|\s#", line.strip())[0]
            if COMMAND.match(line) and "..." not in line:
                line = re.sub(r"\s*\[[^\]]*\]", "", line)
                out.append(" ".join(token.split("|")[0] for token in line.split()))
    return out


@pytest.fixture(scope="session")
def doc_world(tmp_path_factory) -> Path:
    """The working folder the doctests assume: ``configs/`` and a small ``data/burgers`` dataset root."""
    from pdeforge.solvers.generate import generate

    world = tmp_path_factory.mktemp("doc_world")
    (world / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    generate("burgers_1d", world / "data" / "burgers", n_trajectories=20, resolution=32, progress=False)
    return world


@pytest.mark.parametrize("doc", WITH_EXAMPLES, ids=lambda d: d.name)
def test_docstring_examples_run(doc: Docstring, doc_world: Path, tmp_path: Path, monkeypatch) -> None:
    for entry in ("configs", "data"):
        (tmp_path / entry).symlink_to(doc_world / entry, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PDEFORGE_CACHE", str(tmp_path / "cache"))
    test = doctest_of(doc)
    skipped = [e.source.strip() for e in test.examples if e.options.get(doctest.SKIP)]
    assert not skipped, f"{doc.name}: examples marked SKIP never run; make them runnable: {skipped}"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    result = runner.run(test, out=report.write)
    assert result.attempted and not result.failed, f"{doc.name}: a docstring example fails\n{report.getvalue()}"


def outside_examples_sections(text: str) -> list[str]:
    """The ``>>>`` lines of a docstring that are not in its ``Examples:`` section (Google style: the lines indented
    under a line ``Examples:``)."""
    lines = inspect.cleandoc(text).splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith(">>>"):
            indent = len(line) - len(line.lstrip())
            above = next((p for p in reversed(lines[:i]) if p.strip() and len(p) - len(p.lstrip()) < indent), "")
            if above.strip() != "Examples:":
                out.append(line.strip())
    return out


def test_docstring_examples_are_in_examples_sections() -> None:
    misplaced = {doc.name: lines[0] for doc in DOCSTRINGS if (lines := outside_examples_sections(doc.text))}
    assert not misplaced, "`>>>` examples outside an `Examples:` section (indent them under one):\n" + "\n".join(
        f"{name}: {line}" for name, line in misplaced.items()
    )


def test_every_python_example_in_a_docstring_is_a_doctest() -> None:
    loose = {doc.name: code for doc in DOCSTRINGS for code in map(python_in, code_blocks(doc.text)) if code}
    assert not loose, (
        "Python in a docstring that no test runs: write it as `>>>` examples (they run in tests/test_docstrings.py):\n"
        + "\n".join(f"{name}: {code}" for name, code in loose.items())
    )


def check_command(line: str) -> None:
    """``line`` (a command of a docstring) is accepted by its parser; a ``train`` config exists and loads."""
    from pdeforge.cli import build_parser
    from pdeforge.families import load_family_config
    from pdeforge.train import split_argv

    argv = shlex.split(line)
    if argv[0] == "torchrun":  # torchrun [its options] -m pdeforge.cli ARGS | train.py ARGS
        rest = argv[argv.index("-m") + 2 :] if "-m" in argv else argv[argv.index("train.py") + 1 :]
        argv = ["pdeforge", *rest] if "-m" in argv else ["python", "train.py", *rest]
    train = argv[:2] == ["python", "train.py"] or argv[1:2] == ["train"]
    args = argv[2:]
    if not train:
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as e:
            raise AssertionError(f"`{line}`: refused by pdeforge's parser") from e
        return
    path, overrides, _ = split_argv(args)
    if path is not None and re.fullmatch(r"[A-Z_]+", path):  # a placeholder: CONFIG
        path = None
    if path is not None:
        path = REPO / path
        assert path.is_file(), f"`{line}`: no config file {path.relative_to(REPO)}"
    try:
        load_family_config(path, overrides)
    except ValueError as e:
        raise AssertionError(f"`{line}`: the config does not load: {e}") from e


def test_every_command_in_a_docstring_is_accepted() -> None:
    commands = {line: doc.name for doc in DOCSTRINGS for line in command_lines(doc.text)}
    assert len(commands) > 10  # the collection finds them
    for line, name in commands.items():
        try:
            check_command(line)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
