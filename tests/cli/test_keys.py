"""``clinvk keys id``: the id an operator writes into server.admin_key_ids."""

from __future__ import annotations

import subprocess
import sys

from clinvk.core.keys import fingerprint, key_id


def _keys_id(*args: str, stdin: str = "", env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clinvk", "keys", "id", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_ids_of_keys_on_stdin_are_the_servers_key_ids() -> None:
    out = _keys_id(stdin="sk-one\n\n  sk-two  \n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [key_id("sk-one"), key_id("sk-two")]
    assert key_id("sk-one") == fingerprint("sk-one")
    assert "sk-one" not in out.stdout + out.stderr


def test_a_key_from_an_environment_variable(monkeypatch) -> None:
    import os

    out = _keys_id("--key-env", "ADMIN_KEY", env={**os.environ, "ADMIN_KEY": "sk-three"})
    assert out.returncode == 0 and out.stdout.strip() == key_id("sk-three")
    out = _keys_id("--key-env", "NOPE_UNSET", env={**os.environ})
    assert out.returncode == 2 and "NOPE_UNSET" in out.stderr


def test_no_key_is_a_usage_error() -> None:
    out = _keys_id(stdin="")
    assert out.returncode == 2 and "no key" in out.stderr


def test_the_config_refuses_a_key_where_an_id_belongs(tmp_path) -> None:
    from clinvk.core.config import load_config
    from clinvk.core.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("server:\n  admin_key_ids: [sk-this-is-a-key]\n")
    try:
        load_config(path=path, env={})
    except ConfigError as exc:
        assert "key id" in str(exc) and "never the key" in str(exc)
    else:
        raise AssertionError("a key in admin_key_ids was accepted")
