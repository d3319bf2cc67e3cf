"""The tree is the architecture: the engine (clinvk.core) at the bottom, the edges above it.

Read from the imports of every module (an AST walk, function-local imports included):

* nothing in ``clinvk.core`` imports an edge or an edge's framework;
* the edges (``clinvk.server``, ``clinvk.cli``, ``clinvk.mcp``) do not import each other,
  except the CLI commands that start another edge (``serve``, ``mcp``), and only there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clinvk"
EDGES = ("clinvk.server", "clinvk.cli", "clinvk.mcp")
FRAMEWORKS = ("flask", "flask_smorest", "flask_cors", "flask_limiter", "werkzeug", "click",
              "rich", "gunicorn", "prometheus_flask_exporter", "marshmallow", "mcp")
# A CLI command that starts another edge may import that edge (and nothing else may).
EDGE_STARTERS = {
    "clinvk.cli.commands.serve": ("clinvk.server",),
    "clinvk.cli.commands.mcp": ("clinvk.mcp",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _edge_of(module: str) -> str | None:
    return next((edge for edge in EDGES if _under(module, edge)), None)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, "clinvk.core")))
def test_the_engine_imports_no_edge_and_no_edge_framework(module: str) -> None:
    bad = sorted(name for name in MODULES[module]
                 if any(_under(name, top) for top in (*EDGES, *FRAMEWORKS)))
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _edge_of(m)))
def test_edges_do_not_import_each_other(module: str) -> None:
    own = _edge_of(module)
    allowed = EDGE_STARTERS.get(module, ())
    bad = sorted(name for name in MODULES[module]
                 if _edge_of(name) not in (None, own)
                 and not any(_under(name, edge) for edge in allowed))
    assert not bad, f"{module} imports another edge: {bad}"


def test_top_level_modules_are_only_the_package_entry_points() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"]


# Celery is opt-in (execution.mode celery): only the remote-execution package imports it,
# and only the seam (lazily, when the config asks for it) and `clinvk worker` reach that.
TASK_QUEUE = ("celery", "kombu")
REMOTE = "clinvk.core.remote"
REMOTE_ENTRANCES = ("clinvk.core.execution", "clinvk.cli.commands.worker")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _under(m, REMOTE)))
def test_only_the_remote_package_imports_celery(module: str) -> None:
    bad = sorted(name for name in MODULES[module]
                 if any(_under(name, top) for top in TASK_QUEUE)
                 or (_under(name, REMOTE) and module not in REMOTE_ENTRANCES))
    assert not bad, f"{module} imports {bad}"


def test_the_embedded_server_loads_no_celery(tmp_path: Path) -> None:
    import subprocess
    import sys

    probe = ("import sys; from clinvk.core.config import load_config; "
             "from clinvk.server import create_app; create_app(load_config()); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu') "
             "or m.startswith('clinvk.core.remote')))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CLINVK_HOME": str(tmp_path),
           "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
