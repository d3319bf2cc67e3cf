"""Fuzzing every route of ``/openapi.json`` with schemathesis, plus hostile-input strategies.

A real ``clinvk serve`` with the fake CLIs and ``unified_flags.dry_run: true`` (every run
a request asks for resolves everything and returns the argv without starting a CLI, so
thousands of requests cost no agent time) is fuzzed operation by operation from its own
OpenAPI document: valid and invalid bodies, query strings and path parameters.

Every response must:

* never be a 5xx (``not_a_server_error``);
* have a status code the document lists for that operation (``status_code_conformance``);
* have a documented content type (``content_type_conformance``) and headers
  (``response_headers_conformance``);
* match the documented schema of that status and content type
  (``response_schema_conformance``).

The run is bounded and deterministic (a fixed schemathesis seed, derandomized
hypothesis, no example database, no deadline, no shrinking). schemathesis runs its
default phases per operation: *coverage* (deterministic cases derived from the schema:
boundary values, missing required fields, wrong types, undocumented methods; most of
the roughly 1,300 requests) and *fuzzing* (``MAX_EXAMPLES`` hypothesis examples, valid and
invalid data).

Random bodies almost never pass validation (a random ``backend`` is unknown, a random
``workdir`` does not exist), so most generated requests test the error paths. The
success path of every operation is checked too, with one hand-written valid request per
operation (JSON and streamed variants) validated by the same checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 10
SEED = 20261128
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server(server_factory) -> Iterator[Any]:
    server = server_factory({
        "unified_flags": {"dry_run": True},
        # generous, so nothing the fuzzer sends is refused for volume
        "server": {"max_request_body_bytes": 1024 * 1024},
    }, args=("--port", "0"))
    yield server
    server.stop(timeout=10)


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Any) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url("/openapi.json"), timeout=30,
                                         config=schemathesis.Config(seed=SEED))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          phases=[Phase.explicit, Phase.generate], print_blob=False,
          suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_documented(case: Any) -> None:
    case.call_and_validate(checks=CHECKS, timeout=30)


ANTHROPIC = {"anthropic-version": "2023-06-01"}
CHAT = [{"role": "user", "content": "hello"}]
# (path, method, Case arguments) of a valid request per operation; {session_id} is filled
# in from the session the first prompt creates.
VALID = [
    ("/health", "GET", {}),
    ("/openapi.json", "GET", {}),
    ("/docs", "GET", {}),
    ("/api/v1/backends", "GET", {}),
    ("/api/v1/prompt", "POST", {"body": {"backend": "claude", "prompt": "hi", "model": "fast"}}),
    ("/api/v1/prompt", "POST", {"body": {"backend": "gemini", "prompt": "hi",
                                         "output_format": "stream-json"}}),
    ("/api/v1/sessions", "GET", {"query": {"backend": "claude", "limit": 5}}),
    ("/api/v1/sessions/{session_id}", "GET", {}),
    ("/api/v1/sessions/{session_id}", "DELETE", {}),
    ("/api/v1/parallel", "POST", {"body": {"tasks": [{"backend": "claude", "prompt": "a"},
                                                     {"backend": "codex", "prompt": "b"}]}}),
    ("/api/v1/chain", "POST", {"body": {"steps": [
        {"name": "one", "backend": "codex", "prompt": "a"},
        {"backend": "gemini", "prompt": "b: {{previous}}"}]}}),
    ("/api/v1/compare", "POST", {"body": {"backends": ["claude", "gemini"], "prompt": "x"}}),
    ("/api/v1/chain", "POST", {"body": {"background": True, "steps": [
        {"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "{{previous}}"}]}}),
    ("/api/v1/jobs", "POST", {"body": {"kind": "parallel", "tasks": [
        {"backend": "gemini", "prompt": "a"}], "max_parallel": 1}}),
    ("/api/v1/jobs", "POST", {"body": {"backend": "claude", "prompt": "job", "kind": "prompt"}}),
    ("/api/v1/jobs", "GET", {"query": {"status": "queued", "limit": 5}}),
    ("/api/v1/jobs/{job_id}/events", "GET", {}),  # follows the job to its end
    ("/api/v1/jobs/{job_id}", "GET", {}),
    ("/api/v1/usage", "GET", {"query": {"since": "7d", "group_by": "backend,model"}}),
    ("/api/v1/jobs/{job_id}/cancel", "POST", {}),  # finished: answers it as it is
    ("/api/v1/jobs/{job_id}", "DELETE", {}),
    ("/openai/v1/models", "GET", {}),
    ("/openai/v1/models/{model_id}", "GET", {"path_parameters": {"model_id": "claude"}}),
    ("/openai/v1/chat/completions", "POST", {"body": {"model": "codex", "messages": CHAT}}),
    ("/openai/v1/chat/completions", "POST", {"body": {
        "model": "claude", "messages": CHAT, "stream": True,
        "stream_options": {"include_usage": True}}}),
    ("/openai/v1/responses", "POST", {"body": {"model": "codex", "input": "hi"}}),
    ("/openai/v1/responses", "POST", {"body": {"model": "codex", "input": "bg",
                                               "background": True}}),
    ("/openai/v1/responses/{response_id}", "GET", {}),
    ("/openai/v1/responses/{response_id}/input_items", "GET", {"query": {"limit": 5}}),
    ("/openai/v1/responses/{response_id}/cancel", "POST", {}),  # the background one
    ("/openai/v1/responses/{response_id}", "DELETE", {}),  # cancelled, so finished
    ("/anthropic/v1/models", "GET", {"headers": ANTHROPIC}),
    ("/anthropic/v1/models/{model_id}", "GET", {"headers": ANTHROPIC,
                                                "path_parameters": {"model_id": "gemini"}}),
    ("/anthropic/v1/messages", "POST", {"headers": ANTHROPIC, "body": {
        "model": "claude", "max_tokens": 16, "messages": CHAT}}),
    ("/anthropic/v1/messages", "POST", {"headers": ANTHROPIC, "body": {
        "model": "gemini", "max_tokens": 16, "messages": CHAT, "stream": True}}),
]


def test_every_operation_succeeds_as_documented(api_schema: Any) -> None:
    documented = {(path, method.upper()) for path, item in api_schema.raw_schema["paths"].items()
                  for method in item if method != "parameters"}
    covered = {(path, method) for path, method, _ in VALID}
    # Every documented operation has a valid request here (/metrics is off in this server).
    assert documented - covered == set(), documented - covered
    session_id = job_id = response_id = None
    for path, method, kwargs in VALID:
        kwargs = dict(kwargs)
        if "{response_id}" in path:
            assert response_id
            kwargs["path_parameters"] = {"response_id": response_id}
        if "{session_id}" in path:
            assert session_id
            kwargs["path_parameters"] = {"session_id": session_id}
        if "{job_id}" in path:
            assert job_id
            kwargs["path_parameters"] = {"job_id": job_id}
        case = api_schema[path][method].Case(**kwargs)
        resp = case.call_and_validate(checks=CHECKS, timeout=30)
        background = path.startswith("/api/v1/") and kwargs.get("body", {}).get("background")
        expected = 202 if (path, method) == ("/api/v1/jobs", "POST") or background else 200
        assert resp.status_code == expected, (path, method, resp.status_code, resp.text[:300])
        if path == "/api/v1/prompt" and session_id is None:
            session_id = resp.json()["data"]["session_id"]
        if expected == 202:
            job_id = resp.json()["data"]["id"]
        if path == "/openai/v1/responses":
            response_id = resp.json()["id"]


# --------------------------------------------------------------------------- hostile input
# Custom strategies on top of the documented operations: a valid request per operation
# (from VALID) with one string leaf replaced by text that no CLI or store can take, or with a
# deeply nested value added. Every answer must be a documented 4xx, never a 5xx.

HOSTILE_TEXT = st.sampled_from([
    "\ud800", "lone \udfff surrogate", "\udbff\udbff", "a\x00b", "\x00", "\ud83d",
    "ok \U0001f600 then \ud800",
])


def _string_leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_leaves(v, (*path, i))]
    return []


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


def _nested_json(depth: int, shape: str) -> str:
    """A JSON value nested ``depth`` levels deep, as text (too deep for a Python repr)."""
    kinds = ["[" if shape == "list" or (shape == "mixed" and i % 2) else "{" for i in
             range(depth)]
    opening = "".join('{"k":' if k == "{" else "[" for k in kinds)
    closing = "".join("}" if k == "{" else "]" for k in reversed(kinds))
    return opening + '"x"' + closing


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], str]:
    """(path, method, Case arguments, raw JSON body) of a valid request made hostile."""
    path, method, kwargs = draw(st.sampled_from([v for v in VALID if "body" in v[2]]))
    body = kwargs["body"]
    if draw(st.booleans()):
        leaf = draw(st.sampled_from(_string_leaves(body)))
        raw = json.dumps(_replace(body, leaf, draw(HOSTILE_TEXT)))  # surrogates as \ud800
    else:
        depth = draw(st.integers(min_value=65, max_value=5000))
        shape = draw(st.sampled_from(["list", "object", "mixed"]))
        raw = json.dumps(body)[:-1] + ', "metadata": ' + _nested_json(depth, shape) + "}"
    return path, method, kwargs, raw


@given(request=hostile_requests())
@settings(max_examples=40, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck), print_blob=False)
def test_hostile_text_and_nesting_are_documented_4xx(api_schema: Any, request: Any) -> None:
    path, method, kwargs, raw = request
    headers = {**kwargs.get("headers", {}), "Content-Type": "application/json"}
    resp = requests.request(method, api_schema.get_base_url() + path, data=raw.encode(),
                            headers=headers, timeout=30)
    assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text[:300])
    documented = api_schema.raw_schema["paths"][path][method.lower()]["responses"]
    assert str(resp.status_code) in documented, (path, resp.status_code)
