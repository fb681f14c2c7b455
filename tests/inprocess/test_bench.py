"""bench/ stands alone: it runs as modules from the repository's root and imports
nothing of tests/ (its live servers come from devtools/, as the live tests' do)."""

import ast
import subprocess

import pytest

from tests.helpers import REPO
from tests.servers import BIN


def test_no_benchmark_module_imports_the_tests():
    imported = {
        f"{path.name}: {name}"
        for path in sorted((REPO / "bench").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
        if name == "tests" or name.startswith("tests.")
    }
    assert imported == set()


@pytest.mark.parametrize(
    ("module", "option"), [("bench.run", "--quick"), ("bench.profile", "--case")]
)
def test_the_benchmark_runs_as_a_module_from_the_root(module, option):
    result = subprocess.run(
        [str(BIN / "python"), "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout
    assert option in result.stdout
