"""Install the pinned real CLIs from npm into a reusable cache directory.

Used by the real-CLI suite (``tests/realcli/conftest.py``) and runnable on its own::

    python3 tests/realcli/installer.py          # install (or reuse) and print the paths

The three packages go into a private npm prefix, ``<cache>/<hash of the pins>``, where
``<cache>`` is ``$CLINVK_REALCLI_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/clinvk-realcli``.
A finished install is marked by ``installed.json``; a later run with the same pins reuses it
without touching the network. Installs are built in a temporary directory and renamed into
place under a lock, so concurrent test runs never see a half-installed prefix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

# backend name -> (npm package, pinned version)
PINNED: dict[str, tuple[str, str]] = {
    "claude": ("@anthropic-ai/claude-code", "2.1.197"),
    "codex": ("@openai/codex", "0.171.0"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
}
MARKER = "installed.json"
INSTALL_TIMEOUT_SECS = 600
VERSION_TIMEOUT_SECS = 60

# npm failures that mean "the registry cannot be reached" (skip) rather than "broken" (fail).
NETWORK_ERROR = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"socket hang up|network|proxy|certificate|CERT_|E50[0-9]|E429|ERR_SOCKET",
    re.IGNORECASE,
)


class InstallError(Exception):
    """The CLIs could not be installed; ``unreachable`` says the registry was the cause.

    ``str()`` is a short reason; ``detail`` has the tail of npm's output.
    """

    def __init__(self, message: str, *, unreachable: bool, detail: str = "") -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.detail = detail


def pins_hash() -> str:
    text = json.dumps(sorted(PINNED.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("CLINVK_REALCLI_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "clinvk-realcli"


def prefix_dir(env: Mapping[str, str] | None = None) -> Path:
    return cache_root(env) / pins_hash()


def bin_paths(prefix: Path) -> dict[str, Path]:
    return {name: prefix / "node_modules" / ".bin" / name for name in PINNED}


def installed(prefix: Path | None = None) -> dict[str, Path] | None:
    """The binaries of a finished install with the current pins, or None."""
    prefix = prefix or prefix_dir()
    marker = prefix / MARKER
    if not marker.is_file():
        return None
    try:
        recorded = json.loads(marker.read_text())
    except ValueError:
        return None
    wanted = {name: f"{pkg}@{ver}" for name, (pkg, ver) in PINNED.items()}
    if recorded.get("packages") != wanted:
        return None
    paths = bin_paths(prefix)
    if not all(os.access(p, os.X_OK) for p in paths.values()):
        return None
    return paths


def _tail(text: str, lines: int = 25) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _npm_summary(output: str) -> str:
    """npm's error code and reason, e.g. "ECONNREFUSED: request to ... failed, reason: ..."."""
    code = re.search(r"npm error code (\S+)", output)
    reason = re.search(r"npm error (?:FetchError: )?(request to .*|.*(?:reason|failed).*)", output)
    parts = [m.group(1) for m in (code, reason) if m]
    return ": ".join(parts) if parts else (output.splitlines() or ["no output"])[-1]


def _check_versions(paths: dict[str, Path], env: dict[str, str]) -> dict[str, str]:
    versions = {}
    for name, path in paths.items():
        proc = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=VERSION_TIMEOUT_SECS,
            env=env,
            check=False,
        )
        want = PINNED[name][1]
        if proc.returncode != 0 or want not in proc.stdout:
            raise InstallError(
                f"{name} --version gave rc {proc.returncode}, stdout {proc.stdout.strip()!r}, "
                f"expected {want}; stderr: {_tail(proc.stderr, 5)}",
                unreachable=False,
            )
        versions[name] = proc.stdout.strip().splitlines()[-1]
    return versions


def install(*, log=None, env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Install (or reuse) the pinned CLIs; return backend name -> executable path.

    ``env`` is npm's environment (default: ours), so registry mirrors, proxies and
    ``npm_config_*`` settings of the machine apply.
    """
    env = dict(os.environ if env is None else env)
    prefix = prefix_dir(env)
    found = installed(prefix)
    if found:
        return found
    npm = shutil.which("npm", path=env.get("PATH"))
    if not npm:
        raise InstallError("npm is not on PATH (Node.js 20+ and npm are needed)",
                           unreachable=True)
    root = prefix.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = installed(prefix)  # another process may have finished meanwhile
        if found:
            return found
        staging = root / f"{prefix.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        specs = [f"{pkg}@{ver}" for pkg, ver in PINNED.values()]
        env["npm_config_update_notifier"] = "false"
        cmd = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
               "--no-save", "--loglevel=error", "--fetch-retries=1",
               "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000",
               "--fetch-timeout=30000", *specs]
        if log:
            log(f"installing {' '.join(specs)} into {prefix} ...")
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  stdin=subprocess.DEVNULL, timeout=INSTALL_TIMEOUT_SECS,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise InstallError(f"npm install timed out after {exc.timeout:g} s",
                               unreachable=True) from exc
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = _tail(proc.stderr + "\n" + proc.stdout)
            raise InstallError(
                f"`npm install {' '.join(specs)}` failed with rc {proc.returncode}: "
                f"{_npm_summary(output)}",
                unreachable=bool(NETWORK_ERROR.search(output)),
                detail=output,
            )
        try:
            versions = _check_versions(bin_paths(staging), env)
        except (InstallError, OSError, subprocess.SubprocessError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / MARKER).write_text(json.dumps({
            "packages": {name: f"{pkg}@{ver}" for name, (pkg, ver) in PINNED.items()},
            "versions": versions,
            "install_secs": round(time.monotonic() - started, 1),
        }, indent=2))
        # npm writes absolute paths nowhere that matters, so the prefix can be renamed.
        shutil.rmtree(prefix, ignore_errors=True)
        os.rename(staging, prefix)
        if log:
            log(f"installed in {time.monotonic() - started:.0f} s: {versions}")
    found = installed(prefix)
    if not found:
        raise InstallError(f"install into {prefix} finished but the binaries are missing",
                           unreachable=False)
    return found


def main() -> int:
    try:
        paths = install(log=lambda msg: print(msg, file=sys.stderr))
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
