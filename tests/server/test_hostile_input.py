"""Hostile input on every route that can start a backend: a clear 4xx in the route's own
error format, never a 5xx, no backend process left behind and no run slot left taken.

Runs in-process (Flask test client) over the real fake CLIs, so each case is cheap and the
engine's slot count can be read directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from support.http import error_style
from support.procs import fakes_alive

SURROGATE = "hi \ud800 there"


def _native(prompt: Any, **extra: Any) -> tuple[str, dict[str, Any]]:
    return "/api/v1/prompt", {"backend": "claude", "prompt": prompt, **extra}


def _routes(text: Any, workdir: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """One body per route, with ``text`` where a prompt goes and ``workdir`` where one goes."""
    wd = {"workdir": workdir} if workdir is not None else {}
    message = [{"role": "user", "content": text}]
    return [
        _native(text, **wd),
        _native(text, output_format="stream-json", **wd),
        ("/api/v1/parallel", {"tasks": [{"backend": "claude", "prompt": text, **wd}]}),
        ("/api/v1/chain", {"steps": [{"backend": "claude", "prompt": text, **wd}]}),
        ("/api/v1/compare", {"backends": ["claude", "codex"], "prompt": text, **wd}),
        ("/openai/v1/chat/completions", {"model": "claude", "messages": message}),
        ("/openai/v1/chat/completions", {"model": "claude", "messages": message,
                                         "stream": True}),
        ("/anthropic/v1/messages", {"model": "claude", "max_tokens": 16, "messages": message}),
        ("/anthropic/v1/messages", {"model": "claude", "max_tokens": 16, "messages": message,
                                    "stream": True}),
    ]


def _expected_style(path: str) -> str:
    return "openai" if path.startswith("/openai/") else \
        "anthropic" if path.startswith("/anthropic/") else "native"


def _send(client, path: str, body: bytes | str, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if path.startswith("/anthropic/"):
        headers["anthropic-version"] = "2023-06-01"
    return client.post(path, data=body, headers=headers)


ORCHESTRATION = ("/api/v1/parallel", "/api/v1/chain", "/api/v1/compare")


def _task_errors(body: dict[str, Any]) -> list[str]:
    data = body.get("data", body)
    tasks = data.get("results") or data.get("steps") or []
    return [task.get("error") or "" for task in tasks]


def _assert_refused_cleanly(app, resp, path: str) -> dict[str, Any]:
    body = json.loads(resp.data)
    if path in ORCHESTRATION and resp.status_code == 200:
        # A task that cannot start is reported as that task's result, in input order.
        errors = _task_errors(body)
        assert errors and all(errors), body
    else:
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.data[:300])
        assert error_style(body) == _expected_style(path), body
    assert app.extensions["clinvk"].engine.slots.in_use == 0
    assert fakes_alive(os.environ["HOME"]) == []
    return body


def _ids(cases: list[tuple[str, dict[str, Any]]]) -> list[str]:
    streamed = ("stream", "output_format")
    return [f"{path}{'-stream' if any(body.get(k) for k in streamed) else ''}"
            for path, body in cases]


ROUTES = _routes("x")


@pytest.mark.parametrize(("path", "body"), _routes(SURROGATE), ids=_ids(ROUTES))
def test_a_lone_surrogate_is_a_400_and_starts_nothing(app, client, path, body) -> None:
    for _ in range(100):
        resp = _send(client, path, json.dumps(body))  # json.dumps writes "\ud800"
        assert resp.status_code == 400, resp.data[:300]
    error = _assert_refused_cleanly(app, resp, path)
    assert "surrogate" in json.dumps(error)


@pytest.mark.parametrize(("path", "body"), _routes("a\x00b"), ids=_ids(ROUTES))
def test_a_nul_in_the_prompt_is_a_400(app, client, path, body) -> None:
    error = _assert_refused_cleanly(app, _send(client, path, json.dumps(body)), path)
    assert "NUL" in json.dumps(error)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
@pytest.mark.parametrize(("path", "body"), ROUTES, ids=_ids(ROUTES))
def test_deep_nesting_is_a_400_naming_the_limit(app, client, path, body, depth) -> None:
    nested = "[" * depth + "]" * depth
    raw = json.dumps(body)[:-1] + f', "metadata": {nested}}}'
    error = _assert_refused_cleanly(app, _send(client, path, raw), path)
    assert "nested deeper than 64" in json.dumps(error)


def test_the_depth_limit_is_configurable(app_factory) -> None:
    app = app_factory({"server.max_json_depth": 200})
    client = app.test_client()
    nested = "[" * 150 + "]" * 150
    resp = _send(client, "/api/v1/prompt", '{"prompt": "x", "metadata": ' + nested + "}")
    assert "nested deeper" not in resp.get_data(as_text=True)
    nested = "[" * 250 + "]" * 250
    resp = _send(client, "/api/v1/prompt", '{"prompt": "x", "metadata": ' + nested + "}")
    assert resp.status_code == 400 and "nested deeper than 200" in resp.get_data(as_text=True)


@pytest.mark.parametrize(("path", "body"), ROUTES, ids=_ids(ROUTES))
def test_a_surrogate_in_a_key_is_a_400(app, client, path, body) -> None:
    raw = json.dumps(body)[:-1] + ', "metadata": {"\\udfff": 1}}'
    _assert_refused_cleanly(app, _send(client, path, raw), path)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "utf-32"])
@pytest.mark.parametrize(("path", "body"), ROUTES, ids=_ids(ROUTES))
def test_bodies_in_other_encodings_are_refused(app, client, path, body, encoding) -> None:
    raw = json.dumps({**body, "note": "caf\u00e9"}, ensure_ascii=False).encode(encoding)
    _assert_refused_cleanly(app, _send(client, path, raw), path)


@pytest.mark.parametrize(("path", "body"), ROUTES, ids=_ids(ROUTES))
def test_huge_numbers_never_give_a_5xx(app, client, path, body) -> None:
    for number in ("1e400", "-1e400", "1" * 5000, "1.5e-400"):
        raw = json.dumps(body)[:-1] + f', "max_tokens": {number}, "timeout": {number}}}'
        resp = _send(client, path, raw)
        assert resp.status_code < 500, (number, resp.data[:300])
    assert app.extensions["clinvk"].engine.slots.in_use == 0
    assert fakes_alive(os.environ["HOME"]) == []


@pytest.fixture
def loop_dir(tmp_path: Path) -> str:
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    return str(tmp_path / "a")


NATIVE_WITH_WORKDIR = [case for case in _routes("x", "/") if case[0].startswith("/api/")]


@pytest.mark.parametrize(("path", "body"), NATIVE_WITH_WORKDIR,
                         ids=_ids(NATIVE_WITH_WORKDIR))
@pytest.mark.parametrize("workdir", ["/proc/1/cwd", "loop", "/", "/usr", "/tmp", "missing",
                                     "/proc/self/root"])
def test_workdirs_that_cannot_be_used_are_refused_with_the_reason(
        app, client, path, body, workdir, loop_dir, tmp_path) -> None:
    wd = {"loop": loop_dir, "missing": str(tmp_path / "no" / "such" / "dir")}.get(workdir,
                                                                             workdir)
    raw = json.dumps(body).replace('"workdir": "/"', json.dumps({"workdir": wd})[1:-1])
    error = _assert_refused_cleanly(app, _send(client, path, raw), path)
    text = json.dumps(error)
    assert "workdir" in text


def test_a_system_root_can_be_allowed_explicitly(app_factory) -> None:
    app = app_factory({"server.allow_system_root_workdirs": True})
    resp = _send(app.test_client(), "/api/v1/prompt",
                 json.dumps({"prompt": "hi", "backend": "claude", "workdir": "/tmp",
                             "dry_run": True}))
    assert resp.status_code == 200, resp.data[:300]
