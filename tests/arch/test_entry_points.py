"""The public surface that deployments and scripts rely on stays where it is."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_python_entry_points_resolve() -> None:
    from clinvk.server import create_app

    assert callable(create_app)
    assert callable(importlib.import_module("clinvk.cli").main)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"clinvk": "clinvk.cli:main"}


def test_wsgi_module_exposes_app(tmp_path: Path) -> None:
    code = "import wsgi; print(type(wsgi.app).__name__)"
    env = {"CLINVK_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Flask"


def test_python_dash_m_runs_the_cli() -> None:
    for module in ("clinvk", "clinvk.cli"):
        out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "0.1.0" in out.stdout
