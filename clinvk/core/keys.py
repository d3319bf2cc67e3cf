"""API keys: where they come from, how a presented key is checked, and key ids.

Keys come from ``CLINVK_API_KEYS`` (comma-separated) or a gopass entry; the store keeps only
their SHA-256 digests and compares a presented key against every digest in constant time.
Every edge that takes keys (the HTTP gateway, the MCP server over HTTP) uses this module.

A key id names a key wherever the key itself must not appear: rate-limit buckets, log
lines, the owner of a session, ``server.admin_key_ids`` in a config file. It is the first
24 hex digits of a domain-separated SHA-256 of the key, so the same key always has the same
id and an id gives nothing away about its key. ``clinvk keys id`` prints a key's id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

from clinvk.core.config import Config

log = logging.getLogger("clinvk.core.keys")

API_KEYS_ENV = "CLINVK_API_KEYS"
GOPASS_PATH_ENV = "CLINVK_API_KEYS_GOPASS_PATH"
GOPASS_PATH_RE = re.compile(r"[A-Za-z0-9/_.\-]+")
GOPASS_TIMEOUT_SECS = 5.0
#: How long keys read from gopass are used before gopass is asked again.
KEY_CACHE_SECS = 300.0
#: After a gopass failure, requests are refused (503) and gopass is retried after this.
GOPASS_RETRY_SECS = 10.0


_DOMAIN = b"clinvk-api-key\0"


def key_id(key: str) -> str:
    """The id of ``key`` (24 lowercase hex digits)."""
    return hashlib.sha256(_DOMAIN + key.encode("utf-8", "surrogateescape")).hexdigest()[:24]


class KeysUnavailable(Exception):
    """gopass is configured but did not produce keys (the message is safe to log)."""


def parse_keys(text: str) -> list[str]:
    """Comma- (or newline-) separated keys, trimmed, empties dropped."""
    return [k.strip() for k in re.split(r"[,\r\n]", text or "") if k.strip()]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def fingerprint(key: str) -> str:
    """A stable, non-reversible name for a key (rate-limit bucket, logs): never the key."""
    return key_id(key)


def gopass_path(config: Config, environ: Mapping[str, str]) -> str:
    return (environ.get(GOPASS_PATH_ENV) or "").strip() or config.server.api_keys_gopass_path


def keys_configured(config: Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether requests will need a key: env keys, or a gopass path (which fails closed)."""
    environ = os.environ if environ is None else environ
    return bool(parse_keys(environ.get(API_KEYS_ENV, "")) or gopass_path(config, environ))


def _scrubbed_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith("CLINVK_")}


def run_gopass(path: str, environ: Mapping[str, str]) -> list[str]:
    """``gopass show --password PATH`` -> keys. Raises :class:`KeysUnavailable`."""
    if not GOPASS_PATH_RE.fullmatch(path):
        raise KeysUnavailable("the gopass path may only contain letters, digits and / _ . -")
    try:
        proc = subprocess.run(
            ["gopass", "show", "--password", path], stdin=subprocess.DEVNULL,
            capture_output=True, timeout=GOPASS_TIMEOUT_SECS, env=_scrubbed_env(environ),
            check=False)
    except FileNotFoundError:
        raise KeysUnavailable("gopass is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise KeysUnavailable(f"gopass did not answer within {GOPASS_TIMEOUT_SECS:g} s"
                              ) from None
    except OSError as exc:
        raise KeysUnavailable(f"gopass could not be started: {exc.strerror}") from None
    if proc.returncode != 0:
        # stderr only: stdout would be the secret.
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise KeysUnavailable(f"gopass exited with code {proc.returncode}"
                              + (f": {reason[-1][:200]}" if reason else ""))
    keys = parse_keys(proc.stdout.decode("utf-8", "replace"))
    if not keys:
        raise KeysUnavailable(f"gopass entry {path!r} holds no keys")
    return keys


class KeyStore:
    """The configured keys as SHA-256 digests; gopass results cached, failures fail closed."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None, *,
                 gopass: Callable[[str, Mapping[str, str]], list[str]] = run_gopass,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._gopass = gopass
        self._clock = clock
        self._lock = threading.Lock()
        env_keys = parse_keys(self._environ.get(API_KEYS_ENV, ""))
        self.gopass_path = "" if env_keys else gopass_path(config, self._environ)
        self._digests: tuple[bytes, ...] = tuple(_digest(k) for k in env_keys)
        self._expires = float("inf")
        self._failure: str | None = None
        if self.gopass_path:
            self._expires = 0.0  # read on first use, in the worker that needs them
        elif API_KEYS_ENV in self._environ and not env_keys:
            log.warning("%s is set but holds no keys: authentication is off", API_KEYS_ENV)

    @property
    def enabled(self) -> bool:
        return bool(self._digests) or bool(self.gopass_path)

    def _current(self) -> tuple[bytes, ...]:
        if self._clock() < self._expires:
            if self._failure is not None:
                raise KeysUnavailable(self._failure)
            return self._digests
        with self._lock:
            now = self._clock()
            if now >= self._expires:  # nobody refreshed while we waited for the lock
                try:
                    keys = self._gopass(self.gopass_path, self._environ)
                except KeysUnavailable as exc:
                    log.error("API keys unavailable, refusing protected requests: %s", exc)
                    self._digests, self._failure = (), str(exc)
                    self._expires = now + GOPASS_RETRY_SECS
                else:
                    if self._failure is not None or not self._digests:
                        log.info("loaded %d API key(s) from gopass", len(keys))
                    self._digests = tuple(_digest(k) for k in keys)
                    self._failure = None
                    self._expires = now + KEY_CACHE_SECS
            if self._failure is not None:
                raise KeysUnavailable(self._failure)
            return self._digests

    def matches(self, presented: str) -> bool:
        """Constant time: the presented key is hashed and compared with every digest."""
        digests = self._current()
        candidate = _digest(presented)
        found = False
        for digest in digests:
            found |= hmac.compare_digest(candidate, digest)
        return found
