"""The official JavaScript SDKs (`openai`, `@anthropic-ai/sdk` from npm) against clinvk serve.

The SDK versions pinned in ``tests/system/js/package.json`` are installed by this test into a
reusable cache directory, ``$CLINVK_JS_SDK_CACHE`` or
``${XDG_CACHE_HOME:-~/.cache}/clinvk-js-sdk``, one sub-directory per pin set (a later run
with the same pins does not touch the network). ``tests/system/js/smoke.mjs`` then makes one
plain and one streaming call with each SDK, plus one failing agent run each.

Without node/npm, or when the npm registry cannot be reached, the test is skipped with
the reason (shown in pytest's summary).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
SCRIPT = HERE / "smoke.mjs"
MARKER = "installed.json"
INSTALL_TIMEOUT_SECS = 150
REPLY = "Hello from stub (turn 1)"
# npm failures that mean "the registry cannot be reached" (skip) rather than "broken" (fail).
UNREACHABLE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"socket hang up|network|proxy|certificate|CERT_|E50[0-9]|E429|ERR_SOCKET",
    re.IGNORECASE)


def cache_root() -> Path:
    explicit = os.environ.get("CLINVK_JS_SDK_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "clinvk-js-sdk"


def install_sdks() -> Path:
    """The npm prefix holding the pinned SDKs (installed on first use); skips when it can't."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the JavaScript SDK smoke test needs node "
                        "and npm")
    manifest = PACKAGE_JSON.read_bytes()
    root = cache_root()
    prefix = root / hashlib.sha256(manifest).hexdigest()[:12]
    if (prefix / MARKER).is_file():
        return prefix
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs install once
        if (prefix / MARKER).is_file():
            return prefix
        work = Path(tempfile.mkdtemp(prefix=".install-", dir=root))
        try:
            (work / "package.json").write_bytes(manifest)
            try:
                proc = subprocess.run(
                    ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
                     "--loglevel=error"],
                    cwd=work, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECS,
                    stdin=subprocess.DEVNULL, check=False)
            except subprocess.TimeoutExpired:
                pytest.skip(f"npm install of the JavaScript SDKs did not finish within "
                            f"{INSTALL_TIMEOUT_SECS} s (registry slow or unreachable)")
            output = proc.stdout + proc.stderr
            if proc.returncode != 0:
                if UNREACHABLE.search(output):
                    errors = [line.strip() for line in output.splitlines() if "error" in line]
                    pytest.skip("the npm registry is unreachable, so the JavaScript SDKs "
                                f"cannot be installed: {' | '.join(errors[:3])[:400]}")
                pytest.fail(f"npm install failed (exit {proc.returncode}):\n{output[-2000:]}")
            (work / MARKER).write_text(json.dumps({"package.json": json.loads(manifest)}))
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(prefix)
            work.rename(prefix)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return prefix


@pytest.fixture(scope="module")
def sdk_prefix() -> Path:
    return install_sdks()


@pytest.fixture(scope="module")
def gateway(server_factory, tmp_path_factory) -> Any:
    log = tmp_path_factory.mktemp("js-fakes") / "fake.log"
    server = server_factory(extra_env={"FAKE_CLI_LOG": str(log)})
    server.fake_log = log
    yield server
    server.stop(timeout=10)


@pytest.mark.timeout(300)  # the first run installs the SDKs from npm
def test_js_sdks_plain_streaming_and_failures(sdk_prefix: Path, gateway: Any) -> None:
    # ESM resolves packages next to the script, so it runs from the install prefix.
    script = sdk_prefix / f"smoke-{uuid.uuid4().hex[:8]}.mjs"
    shutil.copyfile(SCRIPT, script)
    mark = f"js-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(CLINVK_BASE_URL=gateway.base_url, CLINVK_MARK=mark)
    try:
        proc = subprocess.run(["node", str(script)], capture_output=True, text=True, env=env,
                              timeout=90, stdin=subprocess.DEVNULL, check=False)
    finally:
        script.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    plain = report["openaiPlain"]
    assert plain["text"] == REPLY and plain["finish"] == "stop"
    assert plain["id"].startswith("chatcmpl-")
    assert plain["usage"]["prompt_tokens"] > 0 and plain["usage"]["completion_tokens"] > 0

    stream = report["openaiStream"]
    assert stream["role"] == "assistant" and stream["text"] == REPLY
    assert stream["finish"] == ["stop"] and len(stream["ids"]) == 1
    assert stream["usage"]["total_tokens"] > 0

    failure = report["openaiFailure"]
    assert failure["class"] == "InternalServerError" and failure["status"] == 502
    assert failure["body"]["code"] == "backend_failed"
    assert failure["shouldRetry"] == "false"

    message = report["anthropicPlain"]
    assert message["text"] == REPLY and message["stop"] == "end_turn"
    assert message["id"].startswith("msg_") and message["usage"]["output_tokens"] > 0

    mstream = report["anthropicStream"]
    assert mstream["text"] == REPLY and mstream["finalText"] == REPLY
    assert mstream["deltas"] > 1 and mstream["stop"] == "end_turn"
    assert mstream["usage"]["output_tokens"] > 0

    afailure = report["anthropicFailure"]
    assert afailure["class"] == "InternalServerError" and afailure["status"] == 502
    assert afailure["body"]["error"]["type"] == "api_error"
    assert "Internal error encountered" in afailure["body"]["error"]["message"]

    # Each call reached a backend exactly once: the failed runs were not retried.
    runs = [json.loads(line) for line in gateway.fake_log.read_text().splitlines() if line]
    mine = [r["cli"] for r in runs if mark in (r.get("stdin") or "")]
    assert sorted(mine) == sorted(["claude", "gemini", "codex", "codex", "claude", "gemini"])
