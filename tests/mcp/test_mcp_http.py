"""``clinvk mcp --transport streamable-http``: the SDK's own HTTP client, behind the gateway's
API keys; sessions belong to the key that made them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from support.fakes import fake
from support.services import free_port

pytestmark = pytest.mark.anyio

KEY_A = "sk-mcp-a-0123456789abcdef"
KEY_B = "sk-mcp-b-0123456789abcdef"



@pytest.fixture
def http_server(mcp_env, tmp_path) -> Iterator[str]:
    port = free_port()
    env = {**mcp_env, "CLINVK_API_KEYS": f"{KEY_A},{KEY_B}"}
    log = open(tmp_path / "mcp-http.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "clinvk", "mcp", "--transport",
                             "streamable-http", "--port", str(port)], env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(tmp_path / "work"), start_new_session=True)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, Path(tmp_path / "mcp-http.log").read_text()
                assert time.monotonic() < deadline, "clinvk mcp did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def _call(url: str, key: str, tool: str, arguments: dict) -> object:
    async with httpx2.AsyncClient(headers={"X-Api-Key": key}, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool(tool, arguments)


def test_requests_without_a_valid_key_are_refused(http_server) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    assert requests.post(http_server, json=body, headers=headers, timeout=10).status_code == 401
    resp = requests.post(http_server, json=body, timeout=10,
                         headers={**headers, "Authorization": "Bearer wrong"})
    assert resp.status_code == 401 and "invalid API key" in resp.text


async def test_a_keyed_client_runs_and_sees_only_its_own_sessions(http_server, tmp_path) -> None:
    work = str(tmp_path / "work")
    first = await _call(http_server, KEY_A, "run", {"prompt": fake("hi", reply="over http"),
                                                    "backend": "codex", "workdir": work})
    assert not first.is_error and first.content[0].text == "over http"
    sid = first.structured_content["session_id"]
    mine = await _call(http_server, KEY_A, "sessions_list", {})
    theirs = await _call(http_server, KEY_B, "sessions_list", {})
    assert [s["id"] for s in mine.structured_content["sessions"]] == [sid]
    assert theirs.structured_content["sessions"] == []
    shown = await _call(http_server, KEY_B, "session_show", {"session_id": sid})
    assert shown.is_error and "not found" in shown.content[0].text
    cont = await _call(http_server, KEY_B, "run", {"prompt": "take it over", "session_id": sid})
    assert cont.is_error and "not found" in cont.content[0].text
