"""The shape the architecture promises: one core, adapters around it, imports flowing inward.

Read from the source (every import statement, top-level or inside a function), so a lazy import
inside a function breaks the rule as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "src" / "pricebot"
ADAPTERS = (
    "pricebot_cli",
    "pricebot_exchange",
    "pricebot_local",
    "pricebot_monitor",
    "pricebot_service",
    "pricebot_training",
    "lambdas",
    "infra",
    "layers",
)
#: What only adapters may use: user interfaces, servers, process supervision, frameworks.
ADAPTER_ONLY = (
    "typer",
    "rich",
    "streamlit",
    "bentoml",
    "pulumi",
    "pulumi_aws",
    "subprocess",
    "uvicorn",
    "starlette",
    "playwright",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", sources(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_the_core_imports_no_adapter_and_no_adapter_library(path: Path) -> None:
    # Given a module of the core, When its imports are read
    tops = {top(m) for m in imported_modules(path)}
    # Then none is an adapter or a library only adapters may use
    assert not tops & set(ADAPTERS), f"{path.name} imports adapter(s) {tops & set(ADAPTERS)}"
    assert not tops & set(ADAPTER_ONLY), f"{path.name} imports {tops & set(ADAPTER_ONLY)}"


@pytest.mark.parametrize("path", sources(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_the_core_does_not_name_an_adapter_even_in_a_string(path: Path) -> None:
    # Given a module of the core, When its text is searched for an adapter's module name
    pattern = re.compile(
        r"\b(" + "|".join(a for a in ADAPTERS if a.startswith("pricebot_")) + r")\b"
    )
    found = sorted(set(pattern.findall(path.read_text())))
    # Then there is none: the core would otherwise reach an adapter by a string
    assert found == [], f"{path.name} names {found}"


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if (ROOT / a).is_dir()], ids=lambda a: a)
def test_adapters_do_not_import_each_other(adapter: str) -> None:
    # Given every module of one adapter
    others = set(ADAPTERS) - {adapter}
    for path in sources(ROOT / adapter):
        # When its imports are read, Then none is another adapter
        crossing = {top(m) for m in imported_modules(path)} & others
        assert not crossing, f"{path.relative_to(ROOT)} imports {crossing}"
