"""What each process loads: the gunicorn master no web framework, a worker no unused layer.

The master of ``clinvk serve`` only parses the config, checks the bind, prints the banner
and watches workers; every worker builds the app. Libraries of layers that are off (the
rate limiter, budgets) are loaded only when configured. Memory per process is in
docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEB = ("flask", "werkzeug", "jinja2", "marshmallow", "flask_smorest", "flask_cors",
       "flask_limiter", "limits", "prometheus_client", "rich")

MASTER = """
import json, sys
from clinvk.cli.root import cli
from clinvk.cli.commands import serve
from clinvk.core.config import load_config
from clinvk.server.runtime import serve as runtime
config = load_config()
runtime.gunicorn_settings(config)
runtime.configure_logging(config)
runtime.banner("127.0.0.1", 8080)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {web})))
"""

WORKER = """
import json, sys
from clinvk.server import create_app
create_app()
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def _loaded(code: str, tmp_path: Path, config: str = "") -> list[str]:
    (tmp_path / "config.yaml").write_text(config)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CLINVK_HOME": str(tmp_path),
           "CLINVK_CONFIG": str(tmp_path / "config.yaml"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code.format(web=set(WEB))], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_the_gunicorn_master_loads_no_web_framework(tmp_path: Path) -> None:
    assert _loaded(MASTER, tmp_path) == []


# Engine parts the master never uses; a worker imports them itself (what a master holds is
# counted again in every worker's RSS: docs/performance.md, "Structural changes").
MASTER_FREE_OF = ("clinvk.core.store", "clinvk.core.usage.ledger", "clinvk.core.usage.budgets",
                  "clinvk.core.usage.rows", "clinvk.core.engine", "sqlite3")


def test_the_gunicorn_master_loads_no_store_and_no_usage_ledger(tmp_path: Path) -> None:
    code = MASTER.replace("m.split(\".\")[0] in {web}", f"m.startswith({MASTER_FREE_OF!r})")
    assert _loaded(code, tmp_path) == []


def test_a_worker_loads_the_rate_limiter_only_when_limits_are_on(tmp_path: Path) -> None:
    off = _loaded(WORKER, tmp_path)
    assert "flask" in off and "flask_limiter" not in off and "limits" not in off
    on = _loaded(WORKER, tmp_path, "server:\n  rate_limit_enabled: true\n")
    assert "flask_limiter" in on and "limits" in on


STORE_CHECK = """
import json, sys
from clinvk.core.config import load_config
from clinvk.server.runtime import serve as runtime
runtime.check_store(load_config())
print(json.dumps(sorted(m for m in sys.modules if m.startswith({web}))))
"""
ENGINE = ("sqlite3", "clinvk.core.store.sqlite", "clinvk.core.engine", "clinvk.core.jobs")


def test_the_master_checks_the_store_without_loading_it(tmp_path: Path) -> None:
    code = STORE_CHECK.replace("{web}", repr(ENGINE))
    assert _loaded(code, tmp_path) == []
    assert (tmp_path / "sessions.db").stat().st_size > 0  # the child created and migrated it
