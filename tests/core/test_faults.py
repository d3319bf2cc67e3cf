"""Misbehaving backends: each ends in a clear result, never a hang or a crash of ours."""

from __future__ import annotations

import time

import pytest
from support.engine import make_engine, request
from support.fakes import BACKENDS

from clinvk.core.types import RunStatus


@pytest.mark.parametrize("backend", BACKENDS)
def test_silent_backend_exiting_zero_is_a_failure(env, backend):
    result = make_engine(env).run(request(env, backend, 'FAKE{"silent": true} x'))
    assert result.status == RunStatus.FAILED
    assert "no parseable output" in result.error


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_dying_mid_stream(env, backend):
    engine = make_engine(env)
    handle = engine.start(engine.prepare(request(env, backend, 'FAKE{"die_midstream": true} x')))
    events = [e for e in handle.events() if e is not None]
    assert handle.result.status == RunStatus.FAILED
    assert handle.result.exit_code == 1
    assert events[-1].type == "error" and events[-1].content["message"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ten_megabyte_line_hits_the_line_cap(env, backend):
    engine = make_engine(env, **{"server.max_line_bytes": 1024 * 1024})
    started = time.monotonic()
    result = engine.run(request(env, backend, 'FAKE{"big_line": 10000000} x'))
    assert result.status == RunStatus.FAILED
    assert "max_line_bytes" in result.error
    assert time.monotonic() - started < 10


def test_three_megabyte_line_within_the_cap_is_parsed(env):
    result = make_engine(env).run(request(env, "claude", 'FAKE{"big_line": 3000000} x'))
    assert result.status == RunStatus.OK, result.error


def test_exit_code_without_result_is_the_backends(env):
    result = make_engine(env).run(request(env, "codex", 'FAKE{"exit_code": 7} x'))
    assert result.status == RunStatus.FAILED and result.exit_code == 7


def test_idle_watchdog_kills_a_silent_backend(env):
    engine = make_engine(env, **{"server.backend_idle_timeout_secs": 1})
    started = time.monotonic()
    result = engine.run(request(env, "gemini", 'FAKE{"hang": true} x'))
    assert result.status == RunStatus.TIMEOUT and "idle" in result.error
    assert time.monotonic() - started < 4
