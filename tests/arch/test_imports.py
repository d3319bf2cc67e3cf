"""Every module imports on its own, first: no import cycle hides behind an import order.

Each module is imported first in a fresh child process (forked from one that has loaded
only third-party frameworks), so a cycle that only works when some other module happens to
be imported before it fails here.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clinvk"
# Loaded once in the parent so that each child only pays for clinvk's own modules.
FRAMEWORKS = ("flask", "flask_smorest", "flask_cors", "flask_limiter", "marshmallow", "werkzeug",
              "click", "rich", "yaml", "prometheus_flask_exporter", "mcp.server.mcpserver",
              "pydantic")
# Imported only when their optional extra is installed and configured.
OPTIONAL = ("clinvk.core.remote", "clinvk.core.store.postgresql")


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(OPTIONAL):
            names.append(name)
    return names


def _import_first(name: str) -> str | None:
    """Import ``name`` in a forked child that has no clinvk module yet; the error, if any."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        os.close(read_end)
        code = 0
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - everything is reported to the parent
            os.write(write_end, traceback.format_exc(limit=6).encode()[-4000:])
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return None if os.waitstatus_to_exitcode(status) == 0 else report or "exit without report"


@pytest.fixture(scope="module", autouse=True)
def _frameworks_loaded() -> None:
    for framework in FRAMEWORKS:
        importlib.import_module(framework)


def test_every_module_imports_first() -> None:
    loaded = sorted(m for m in sys.modules if m == "clinvk" or m.startswith("clinvk."))
    failures = {}
    for name in _module_names():
        error = _import_first_clean(name, loaded)
        if error:
            failures[name] = error
    assert not failures, "\n\n".join(f"{name}:\n{error}" for name, error in failures.items())


def _import_first_clean(name: str, loaded: list[str]) -> str | None:
    """:func:`_import_first`, with the clinvk modules this test process already holds set
    aside for the fork, so that the child starts with none of them."""
    saved = {m: sys.modules.pop(m) for m in loaded if m in sys.modules}
    try:
        return _import_first(name)
    finally:
        sys.modules.update(saved)


def test_a_cycle_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cyc_a.py").write_text("from cyc_b import B\nA = 1\n")
    (tmp_path / "cyc_b.py").write_text("from cyc_a import A\nB = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    error = _import_first("cyc_a")
    assert error is not None and "ImportError" in error
