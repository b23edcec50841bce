"""The architecture as a contract: which package may import which (objectives_cli/__init__.py).

    cli     -> render, train, data, model        (nothing imports cli)
    render  -> data
    train   -> model, data
    model, data -> neither each other nor anything above
    corruptions -> nothing of objectives_cli

Rich is imported only under render/, Typer only under cli/. Every import counts, those inside
functions included, so a lazy import cannot hide a wrong-way dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {  # package -> the packages of objectives_cli it may import (itself always)
    "cli": {"render", "train", "data", "model"},
    "render": {"data"},
    "train": {"model", "data"},
    "model": set(),
    "data": set(),
    "": {"cli"},  # objectives_cli/__init__.py and __main__.py: the entry point
}
ONLY_IN = {"rich": "render", "typer": "cli"}  # third-party packages confined to one package


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `path`, relative ones resolved."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None:  # `from . import x`: x is a module of that package
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def violations(path: Path, root: Path = ROOT) -> list[str]:
    """Every import of `path` that breaks the contract, as 'file:line: message'."""
    parts = path.relative_to(root).parts
    where = str(path.relative_to(root))
    if parts[0] == "corruptions":
        return [
            f"{where}:{line}: corruptions imports {module}"
            for line, module in imports(path, root)
            if module.split(".")[0] == "objectives_cli"
        ]
    mine = parts[1] if len(parts) > 2 else ""
    out = []
    for line, module in imports(path, root):
        top = module.split(".")
        confined = ONLY_IN.get(top[0])
        if confined is not None and confined != mine:
            out.append(f"{where}:{line}: {top[0]} is imported only under {confined}/")
        if top[0] != "objectives_cli" or len(top) < 2:
            continue
        target = top[1] if top[1] in ALLOWED else ""
        if target and target != mine and target not in ALLOWED[mine]:
            out.append(f"{where}:{line}: {mine or 'objectives_cli'} may not import {module}")
    return out


def sources() -> list[Path]:
    return sorted([*ROOT.glob("objectives_cli/**/*.py"), *ROOT.glob("corruptions/**/*.py")])


def test_every_import_goes_the_right_way() -> None:
    found = [v for path in sources() for v in violations(path)]
    assert found == []


def test_every_package_is_in_the_contract() -> None:
    packages = {p.parent.name for p in ROOT.glob("objectives_cli/*/__init__.py")}
    assert packages == set(ALLOWED) - {""}


@pytest.mark.parametrize(
    ("file", "source", "message"),
    [
        ("model/bad.py", "from objectives_cli.data import packing", "model may not import"),
        ("data/bad.py", "from ..train.config import TrainConfig", "data may not import"),
        ("train/bad.py", "def f():\n    from ..cli import app", "train may not import"),
        ("render/bad.py", "from objectives_cli.train import loop", "render may not import"),
        ("train/bad.py", "import rich.console", "rich is imported only under render/"),
        ("data/bad.py", "from typer import Option", "typer is imported only under cli/"),
    ],
)
def test_a_wrong_way_import_is_caught(tmp_path: Path, file: str, source: str, message: str) -> None:
    path = tmp_path / "objectives_cli" / file
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n")
    assert any(message in v for v in violations(path, tmp_path))


def test_corruptions_importing_the_cli_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "corruptions" / "bad.py"
    path.parent.mkdir(parents=True)
    path.write_text("from objectives_cli.data.tokenizer import load_tokenizer\n")
    assert violations(path, tmp_path) == [
        "corruptions/bad.py:1: corruptions imports objectives_cli.data.tokenizer"
    ]
