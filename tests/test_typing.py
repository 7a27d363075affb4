"""Static checks as tests: the public API's inferred types, mypy --strict and ruff on the package.

``tests/typing/`` holds files mypy checks and pytest never collects (they are not named
``test_*``): ``assert_type`` lines pin the inferred types, ``# type: ignore[code]`` lines pin
the errors a wrong call must raise.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_public_api_types_are_inferred_as_documented() -> None:
    result = run_tool("mypy", "--strict", "tests/typing")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_passes_mypy_strict() -> None:
    result = run_tool("mypy", "--strict", "tasks_rq")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_passes_ruff() -> None:
    result = run_tool("ruff", "check", "tasks_rq")
    assert result.returncode == 0, result.stdout + result.stderr
