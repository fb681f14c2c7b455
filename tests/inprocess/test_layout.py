"""The layout's rules, checked: the tree is the architecture (README, Layout)."""

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.servers import BIN

TOP_LEVEL_MODULES = {"app.py", "schemas.py", "blocklist.py", "gunicorn.conf.py"}
# Top-level folders that hold no application code; every other package does.
NOT_APPLICATION = {
    "bench",
    "clients",
    "devtools",
    "docs",
    "migrations",
    "scripts",
    "tests",
}
# The floors, lowest first: a module imports from its own floor and those below.
FLOORS = [
    ("the plumbing", {"core"}),
    ("the models", {"models"}),
    ("the revocation stores", {"blocklist", "revocation"}),
    ("the token layer", {"auth"}),
    ("the resources", {"resources", "schemas"}),
    ("the factory", {"app"}),
]
FLOOR_OF = {name: level for level, (_, names) in enumerate(FLOORS) for name in names}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_TEST_FILE_LINES = 600


def _application_roots() -> list[str]:
    """The top-level modules and packages of the application (not gunicorn.conf.py,
    tests, tools or clients)."""
    packages = sorted(
        path.name
        for path in REPO.iterdir()
        if (path / "__init__.py").is_file() and path.name not in NOT_APPLICATION
    )
    return ["app.py", "blocklist.py", "schemas.py", *packages]


APPLICATION = _application_roots()


def _tracked(pattern: str) -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", pattern],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def _modules(*roots: str) -> list[Path]:
    paths: list[Path] = []
    for root in roots:
        path = REPO / root
        paths.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return paths


def test_the_top_level_holds_only_the_design_cards_modules():
    tracked = _tracked("*.py")
    if not tracked:
        pytest.skip("not a git checkout")
    assert {path for path in tracked if "/" not in path} == TOP_LEVEL_MODULES


@pytest.mark.parametrize(
    "source",
    [
        "from flask_jwt_extended import jwt_required\n",
        "import flask_jwt_extended\nflask_jwt_extended.jwt_required()\n",
        "from flask_jwt_extended import verify_jwt_in_request\n",
        "from flask_jwt_extended import current_user\n",
    ],
)
def test_resources_cannot_use_flask_jwt_extendeds_decorators(source):
    result = subprocess.run(
        [
            str(BIN / "ruff"),
            "check",
            "--select",
            "TID251",
            "--stdin-filename",
            "resources/example.py",
            "-",
        ],
        cwd=REPO,
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "TID251" in result.stdout and "is banned" in result.stdout


def test_resources_import_the_token_layer_through_its_package_only():
    for path in _modules("resources"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("auth."), (path.name, node.module)


def test_the_factors_import_nothing_else_of_the_token_layer():
    """auth/factors/ is the token layer's ground floor: what a user proves who they
    are with, known to logins and step-ups, knowing nothing of tokens."""
    for path in _modules("auth/factors"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert (
                    node.module == "auth.factors"
                    or not node.module.startswith("auth")
                    or node.module.startswith("auth.factors.")
                ), (path.name, node.module)


def _writes_config(node: ast.AST) -> bool:
    """`x.config[...] = ...`, `x.config.update(...)` or `x.config.setdefault(...)`."""
    if isinstance(node, ast.Assign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(
            isinstance(target, ast.Subscript) and _is_config(target.value)
            for target in targets
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("update", "setdefault", "from_object", "from_mapping")
        and _is_config(node.func.value)
    )


def _is_config(node: ast.AST) -> bool:
    """`app.config`, `current_app.config`, or a mapping passed around as `config`."""
    if isinstance(node, ast.Attribute):
        return node.attr == "config"
    return isinstance(node, ast.Name) and node.id == "config"


def test_only_the_settings_pipeline_decides_settings():
    """The factory copies the pipeline's result into app.config; nothing else
    writes it."""
    writers = {
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in _modules(*APPLICATION)
        for node in ast.walk(ast.parse(path.read_text()))
        if _writes_config(node)
    }
    assert len(writers) == 1 and next(iter(writers)).startswith("app.py:"), writers


def test_the_pre_commit_hooks_are_valid():
    result = subprocess.run(
        [str(BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readmes_layout_stays_true():
    """Every entry of the README's Layout tree exists, and every top-level module
    and folder of the project is in it."""
    readme = (REPO / "README.md").read_text()
    tree = readme.split("## Layout", 1)[1].split("```", 2)[1]
    listed = {line.split()[0] for line in tree.strip().splitlines()}
    for entry in listed:
        assert (REPO / entry).exists(), entry
    tracked = _tracked("*")
    if not tracked:
        pytest.skip("not a git checkout")
    top_level = {
        path.split("/")[0] + ("/" if "/" in path else "")
        for path in tracked
        if not path.startswith(".")
    }
    code = {
        entry for entry in top_level if entry.endswith("/") or entry.endswith(".py")
    }
    assert code <= listed, code - listed


def _root(path: Path) -> str:
    """The top-level module or package a file belongs to: `auth`, `blocklist`..."""
    return path.relative_to(REPO).parts[0].removesuffix(".py")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in a file, at any depth (in a
    function or under TYPE_CHECKING too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_every_application_package_has_a_floor():
    """A new package of application code is placed in FLOORS (and the README)."""
    assert {root.removesuffix(".py") for root in APPLICATION} <= set(FLOOR_OF)


def test_no_module_imports_from_a_higher_floor():
    """plumbing (core) < models < revocation stores (blocklist.py, revocation/) <
    token layer (auth) < resources (and schemas.py) < app.py."""
    offenders = []
    for path in _modules(*APPLICATION):
        floor = FLOOR_OF[_root(path)]
        for line, module in _imports(path):
            imported = FLOOR_OF.get(module.split(".")[0])
            if imported is not None and imported > floor:
                offenders.append(
                    f"{path.relative_to(REPO)}:{line} ({FLOORS[floor][0]}) imports "
                    f"{module} ({FLOORS[imported][0]})"
                )
    assert not offenders, "\n".join(["Arrows back up the layers:", *offenders])


def test_the_revocation_stores_are_used_through_blocklist_py():
    """blocklist.py is their face: nothing else imports revocation/ directly."""
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in _modules(*APPLICATION)
        if _root(path) not in ("blocklist", "revocation")
        for line, module in _imports(path)
        if module.split(".")[0] == "revocation"
    ]
    assert not offenders, offenders


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_application_file_over_400_lines():
    over = [
        f"{path.relative_to(REPO)}: {lines} lines"
        for path in _modules(*APPLICATION)
        if (lines := _line_count(path)) > MAX_FILE_LINES
    ]
    assert not over, "\n".join([f"Over {MAX_FILE_LINES} lines:", *over])


def test_no_application_function_over_60_lines():
    over = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines"
        for path in _modules(*APPLICATION)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert not over, "\n".join([f"Over {MAX_FUNCTION_LINES} lines:", *over])


def test_no_test_file_over_600_lines():
    over = [
        f"{path.relative_to(REPO)}: {lines} lines"
        for path in _modules("tests")
        if (lines := _line_count(path)) > MAX_TEST_FILE_LINES
    ]
    assert not over, "\n".join([f"Over {MAX_TEST_FILE_LINES} lines:", *over])
