"""The process boundary, read from the source: what compute/ imports, and who hops across.

Each checker is also run on a synthetic violation, so a checker that finds nothing
is known to be able to find something.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ingest"
COMPUTE = PACKAGE / "compute"
FORBIDDEN_IN_COMPUTE = ("asyncio", "aiofiles", "watchfiles", "ingest.aio")
ONE_DOOR = PACKAGE / "aio" / "to_compute.py"


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    """ingest/compute/task.py -> ingest.compute.task; a package's __init__ names the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(folder: Path) -> list[Path]:
    found = sorted(folder.rglob("*.py"))
    assert found, f"no modules under {folder}"
    return found


# --- imports ----------------------------------------------------------------------------


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module name `source` imports, relative imports made absolute.

    `from a import b` yields both "a" and "a.b", since b may be a submodule.
    `importlib.import_module("x")` with a literal counts as importing "x".
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and _called_name(node) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def forbidden(names: set[str], banned: tuple[str, ...] = FORBIDDEN_IN_COMPUTE) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


def imports_of(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    return imports(path.read_text(), module_name(path, root), path.name == "__init__.py")


def _source_of(name: str, root: Path) -> Path | None:
    """The file of a module under `root`, or None if `name` is an attribute, not a module."""
    relative = Path(*name.split("."))
    for candidate in (root / f"{relative}.py", root / relative / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def import_closure(start: list[Path], root: Path = PACKAGE.parent) -> set[Path]:
    """The package's modules that importing `start` loads: their imports and parent packages."""
    top = start[0].relative_to(root).parts[0]
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = module_name(path, root)
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for imported in imports_of(path, root) | parents:
            if imported.split(".")[0] == top and (found := _source_of(imported, root)):
                todo.append(found)
    return seen


def compute_offenders(compute: Path, root: Path = PACKAGE.parent) -> dict[str, list[str]]:
    """Forbidden imports in compute/ and in every module it loads, by file."""
    return {
        path.relative_to(root).as_posix(): bad
        for path in sorted(import_closure(modules(compute), root))
        if (bad := forbidden(imports_of(path, root)))
    }


@pytest.mark.parametrize("path", modules(COMPUTE), ids=lambda p: p.name)
def test_compute_module_imports_nothing_async_or_from_aio(path: Path) -> None:
    assert forbidden(imports_of(path)) == []


def test_nothing_compute_loads_imports_anything_async_or_from_aio() -> None:
    assert PACKAGE / "jobs.py" in import_closure(modules(COMPUTE))  # follows relative imports
    assert compute_offenders(COMPUTE) == {}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_closure_checker_finds_an_async_import_one_hop_away(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "ingest/__init__.py": "",
        "ingest/compute/__init__.py": "",
        "ingest/compute/task.py": "from ..jobs import Job\nimport numpy\n",
        "ingest/jobs.py": "from .helpers import later\n",
        "ingest/helpers.py": "import asyncio\n",
        "ingest/aio/__init__.py": "",
        "ingest/aio/service.py": "import asyncio\n",  # not loaded by compute
    })
    assert compute_offenders(root / "ingest" / "compute", root) == {
        "ingest/helpers.py": ["asyncio"],
    }


def test_closure_checker_finds_an_async_import_in_a_parent_package(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "ingest/__init__.py": "from .aio import service\n",
        "ingest/compute/__init__.py": "",
        "ingest/compute/task.py": "",
        "ingest/aio/__init__.py": "",
        "ingest/aio/service.py": "",
    })
    assert compute_offenders(root / "ingest" / "compute", root) == {
        "ingest/__init__.py": ["ingest.aio", "ingest.aio.service"],
    }


def test_importing_compute_in_a_fresh_interpreter_loads_no_async_module() -> None:
    code = (
        "import sys, ingest.compute.task, ingest.compute.decode, ingest.compute.features\n"
        f"banned = {FORBIDDEN_IN_COMPUTE!r}\n"
        "print(sorted(m for m in sys.modules if any(m == b or m.startswith(b + '.')"
        " for b in banned)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        cwd=PACKAGE.parent, check=True,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("import asyncio", "ingest.compute.x", False, ["asyncio"]),
        ("import asyncio.events as ev", "ingest.compute.x", False, ["asyncio.events"]),
        ("from asyncio import run", "ingest.compute.x", False, ["asyncio", "asyncio.run"]),
        ("import aiofiles.os", "ingest.compute.x", False, ["aiofiles.os"]),
        ("from watchfiles import awatch", "ingest.compute.x", False,
         ["watchfiles", "watchfiles.awatch"]),
        ("from ingest.aio import service", "ingest.compute.x", False,
         ["ingest.aio", "ingest.aio.service"]),
        ("from ..aio.read import read", "ingest.compute.x", False,
         ["ingest.aio.read", "ingest.aio.read.read"]),
        ("from .. import aio", "ingest.compute.x", False, ["ingest.aio"]),
        ("from ..aio import to_compute", "ingest.compute", True,
         ["ingest.aio", "ingest.aio.to_compute"]),
        ("def f():\n    import asyncio\n", "ingest.compute.x", False, ["asyncio"]),
        ("import importlib\nimportlib.import_module('asyncio')", "ingest.compute.x", False,
         ["asyncio"]),
    ],
)
def test_import_checker_finds_a_forbidden_import(
    source: str, module: str, is_package: bool, expected: list[str]
) -> None:
    assert forbidden(imports(source, module, is_package)) == expected


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nimport pyarrow.compute as pc",
        "from ..jobs import Job\nfrom . import features",
        "import asyncio_helpers",  # a different top-level name
        "from ingest.aiohttp_shim import x",  # not ingest.aio
        '"""Nothing here imports asyncio."""',
    ],
)
def test_import_checker_passes_clean_imports(source: str) -> None:
    assert forbidden(imports(source, "ingest.compute.x")) == []


# --- one door: run_in_executor ----------------------------------------------------------


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def calls_named(source: str, name: str) -> list[int]:
    """Line numbers of calls to `name`, as a method or a bare function; not in strings."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and _called_name(node) == name
    ]


def run_in_executor_callers(package: Path) -> list[str]:
    return [
        path.relative_to(package.parent).as_posix()
        for path in modules(package)
        if calls_named(path.read_text(), "run_in_executor")
    ]


def test_to_compute_is_the_only_module_that_calls_run_in_executor() -> None:
    assert run_in_executor_callers(PACKAGE) == [ONE_DOOR.relative_to(PACKAGE.parent).as_posix()]


def test_caller_checker_finds_a_second_door(tmp_path: Path) -> None:
    package = _tree(tmp_path, {
        "ingest/aio/to_compute.py": "async def run(loop, p):\n    await loop.run_in_executor(p, f)",
        "ingest/aio/service.py": "async def go(loop):\n    await loop.run_in_executor(None, g)",
        "ingest/aio/__init__.py": '"""Only to_compute calls loop.run_in_executor(...)."""',
    }) / "ingest"
    assert run_in_executor_callers(package) == ["ingest/aio/service.py", "ingest/aio/to_compute.py"]


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("await loop.run_in_executor(pool, fn, job)", 1),
        ("asyncio.get_running_loop().run_in_executor(None, fn)", 1),
        ("from x import run_in_executor\nrun_in_executor(fn)", 1),
        ("f = lambda: loop.run_in_executor(p, g)\ng = loop.run_in_executor(p, h)", 2),
        ('"""The only caller of `loop.run_in_executor(pool, fn)`."""', 0),
        ("# loop.run_in_executor(pool, fn)\nx = 'run_in_executor('", 0),
        ("method = loop.run_in_executor", 0),
    ],
)
def test_run_in_executor_checker_counts_calls_not_mentions(source: str, count: int) -> None:
    assert len(calls_named(source, "run_in_executor")) == count


# --- no executor.submit from a coroutine ------------------------------------------------


class _SubmitInCoroutine(ast.NodeVisitor):
    """Collects `.submit(...)` calls whose nearest enclosing function is an `async def`.

    A plain `def` nested in a coroutine resets the context: it may run in a thread.
    A lambda does not, since a coroutine usually calls it on the loop.
    """

    def __init__(self) -> None:
        self.found: list[str] = []
        self._stack: list[ast.FunctionDef | ast.AsyncFunctionDef] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._stack.append(node)
        self.generic_visit(node)
        self._stack.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "submit"
            and self._stack
            and isinstance(self._stack[-1], ast.AsyncFunctionDef)
        ):
            self.found.append(f"{self._stack[-1].name}:{node.lineno}")
        self.generic_visit(node)


def submits_in_coroutines(source: str) -> list[str]:
    visitor = _SubmitInCoroutine()
    visitor.visit(ast.parse(source))
    return visitor.found


def coroutine_submits(package: Path) -> dict[str, list[str]]:
    return {
        path.relative_to(package.parent).as_posix(): found
        for path in modules(package)
        if (found := submits_in_coroutines(path.read_text()))
    }


def test_no_coroutine_in_ingest_calls_submit() -> None:
    assert coroutine_submits(PACKAGE) == {}


def test_submit_checker_walks_every_module_of_a_package(tmp_path: Path) -> None:
    package = _tree(tmp_path, {
        "ingest/aio/to_compute.py": "def start(pool):\n    pool.submit(warm)\n",
        "ingest/aio/deep/sneaky.py": "async def hop(pool):\n    await wrap(pool.submit(f))\n",
    }) / "ingest"
    assert coroutine_submits(package) == {"ingest/aio/deep/sneaky.py": ["hop:2"]}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("async def run(pool, job):\n    return await asyncio.wrap_future(pool.submit(f, job))",
         ["run:2"]),
        ("async def run(self):\n    fut = self.executor.submit(f)\n    return fut.result()",
         ["run:2"]),
        ("class C:\n    async def go(self):\n        cb = lambda: self.pool.submit(f)\n",
         ["go:3"]),
        ("def outer():\n    async def inner(p):\n        p.submit(f)\n", ["inner:3"]),
        ("async def a(p):\n    [p.submit(f, x) for x in xs]\n", ["a:2"]),
    ],
    ids=["awaited", "attribute", "lambda", "nested-coroutine", "comprehension"],
)
def test_submit_checker_finds_submit_in_a_coroutine(source: str, expected: list[str]) -> None:
    assert submits_in_coroutines(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "def start(pool):\n    for f in [pool.submit(warm) for _ in range(4)]:\n        f.result()",
        "async def run(loop, pool):\n    def blocking():\n        return pool.submit(f).result()\n"
        "    return await asyncio.to_thread(blocking)",
        "async def run(loop, pool, job):\n    return await loop.run_in_executor(pool, f, job)",
        'async def doc():\n    """Never call pool.submit( here."""',
    ],
    ids=["sync-def", "sync-def-in-coroutine", "run-in-executor", "docstring"],
)
def test_submit_checker_passes_submit_outside_coroutines(source: str) -> None:
    assert submits_in_coroutines(source) == []
