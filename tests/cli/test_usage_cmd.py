"""``clinvk usage``: the local ledger after real fake-CLI runs, and a real server over --url."""

from __future__ import annotations

import time

import pytest
import requests
from support.fakes import fake

from clinvk.core.keys import key_id
from clinvk.core.usage import UsageRow

KEY = "sk-usage-cli-0123456789abcdef"
OTHER = "sk-usage-cli-other-987654321"


def _ledger_row(key: str | None, backend: str, tokens: int) -> UsageRow:
    return UsageRow(at=time.time(), key_id=key, backend=backend, model="m", origin="api",
                    status="ok", exit_code=0, duration_ms=1500, input_tokens=tokens,
                    output_tokens=1, cost_usd=0.25)


def test_local_ledger_as_json_and_as_a_table(cli) -> None:
    for backend in ("claude", "codex"):
        proc = cli("-b", backend, fake("hi", reply="ok"))
        assert proc.returncode == 0, proc.stderr
    store = cli.store()
    store.usage.insert(_ledger_row("c" * 24, "gemini", 10**6))
    store.close()
    report = cli.json("usage", "--json", "-g", "backend,origin", "--recent", "5")
    by_backend = {g["backend"]: g for g in report["groups"]}
    assert set(by_backend) == {"claude", "codex", "gemini"}
    assert by_backend["claude"]["origin"] == "cli" and by_backend["claude"]["runs"] == 1
    assert by_backend["claude"]["input_tokens"] > 0 and by_backend["claude"]["cost_usd"]
    assert by_backend["codex"]["cost_usd"] is None  # codex reports no cost
    assert report["groups"][0]["backend"] == "gemini"  # most tokens first
    assert [r["backend"] for r in report["recent"]][0] == "gemini"  # newest first
    assert report["sees_all"] is True

    only = cli.json("usage", "--json", "--key", "c" * 24)
    assert [(g["runs"], g["input_tokens"]) for g in only["groups"]] == [(1, 10**6)]

    table = cli("usage", "--group-by", "backend", "--recent", "2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["BACKEND", "RUNS", "FAILED"]
    assert any(line.split()[:2] == ["gemini", "1"] and "0.2500" in line for line in lines)
    assert "recent runs" in table.stdout and "c" * 24 in table.stdout


def test_an_empty_range_and_bad_questions(cli) -> None:
    empty = cli("usage", "--since", "2d", "--until", "1d")
    assert empty.returncode == 0 and "No runs" in empty.stdout
    for args, field in ((("-g", "key,colour"), "group_by"), (("--since", "yesterday"), "since"),
                        (("--since", "1d", "--until", "2d"), "until")):
        proc = cli("usage", *args)
        assert proc.returncode == 2, (args, proc.stdout)
        assert field in proc.stderr and "Traceback" not in proc.stderr
    pasted = cli("usage", "--key", KEY)  # the key itself, not its id
    assert pasted.returncode == 2 and "key id" in pasted.stderr and KEY not in pasted.stderr
    both = cli("usage", "--url", "http://127.0.0.1:9", "--key", "a" * 24)
    assert both.returncode == 2 and "--key" in both.stderr
    down = cli("usage", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach" in down.stderr


@pytest.fixture(scope="module")
def keyed_server(server_factory):
    server = server_factory({"server": {"admin_key_ids": [key_id(OTHER)]}},
                            extra_env={"CLINVK_API_KEYS": f"{KEY},{OTHER}"})
    for key in (KEY, KEY, OTHER):
        resp = requests.post(server.url("/api/v1/prompt"), timeout=30,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"backend": "claude", "prompt": fake("hi", reply="ok")})
        assert resp.status_code == 200, resp.text
    return server


def test_url_asks_the_server_as_the_key_in_the_environment(cli, keyed_server) -> None:
    url = keyed_server.base_url
    cli.env["CLINVK_API_KEY"] = KEY
    mine = cli.json("usage", "--url", url, "--json", "-g", "key")
    assert [(g["key"], g["runs"]) for g in mine["groups"]] == [(key_id(KEY), 2)]
    assert mine["sees_all"] is False

    cli.env["CLINVK_API_KEY"] = OTHER  # an admin key sees every key
    everyone = cli.json("usage", "--url", url, "--json", "-g", "key", "--since", "1h")
    assert {g["key"]: g["runs"] for g in everyone["groups"]} == {key_id(KEY): 2,
                                                                  key_id(OTHER): 1}
    table = cli("usage", "--url", url, "-g", "key")
    assert table.returncode == 0 and key_id(KEY) in table.stdout
    assert KEY not in table.stdout

    cli.env["CLINVK_API_KEY"] = "sk-not-a-key-of-this-server"
    refused = cli("usage", "--url", url)
    assert refused.returncode == 1 and "401" in refused.stderr
    bad = cli("usage", "--url", url, "-g", "colour")  # refused before asking
    assert bad.returncode == 2 and "group_by" in bad.stderr
