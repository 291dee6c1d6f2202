"""The layers import one way (tui -> net -> fl -> engine); engine/ and fl/ stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_PURE = {"trio", "asyncio", "textual", "libp2p"}
# What each layer may import from the project.
ALLOWED = {
    "engine": {"engine"},
    "fl": {"fl", "engine"},
    "net": {"net", "fl", "engine"},
    "p2pgo_tui": {"p2pgo_tui", "net", "fl", "engine"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", ["engine", "fl"])
def test_pure_layers_import_no_io_frameworks(layer: str) -> None:
    bad = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN_IN_PURE) for f in _files(layer)}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer: str) -> None:
    project = set(ALLOWED)
    bad = {}
    for f in _files(layer):
        wrong = (_imports(f) & project) - ALLOWED[layer]
        if wrong:
            bad[str(f.relative_to(ROOT))] = sorted(wrong)
    assert bad == {}


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import trio\nfrom textual.app import App\nfrom net import x\n")
    assert {"trio", "textual", "net"} <= _imports(probe)
