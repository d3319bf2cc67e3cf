"""Rate limiting against a real ``clinvk serve`` (docs/security.md).

One server, limit ``rate_limit_rps: 1, rate_limit_burst: 5`` (5 requests in any 5 s
window per client). Tests keep out of each other's buckets by using their own API key or
their own loopback source address (any 127.0.0.0/8 address reaches the server).
"""

from __future__ import annotations

import time

import pytest
import requests
from support.http import bound_session, error_style, expected_style

BURST = 5
KEYS = ["rl-key-one", "rl-key-two", "rl-key-three"]
TRUSTED_PROXY = "127.0.0.50"


@pytest.fixture(scope="module")
def limited(server_factory):
    server = server_factory({"server": {
        "rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": BURST,
        "trusted_proxies": [f"{TRUSTED_PROXY}/32", "10.0.0.0/8"],
        "metrics_enabled": True,
    }}, extra_env={"CLINVK_API_KEYS": ",".join(KEYS)})
    yield server
    server.stop(timeout=10)


def statuses(session: requests.Session, url: str, n: int, **kwargs) -> list[int]:
    return [session.get(url, timeout=10, **kwargs).status_code for _ in range(n)]


def test_limit_per_key_with_headers(limited) -> None:
    session = bound_session("127.0.0.11")
    url = limited.url("/api/v1/sessions")
    first = session.get(url, headers={"X-Api-Key": KEYS[0]}, timeout=10)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == str(BURST)
    assert first.headers["X-RateLimit-Remaining"] == str(BURST - 1)
    assert int(first.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert "Retry-After" not in first.headers
    rest = statuses(session, url, BURST, headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert rest == [200] * (BURST - 1) + [429]
    refused = session.get(url, headers={"X-Api-Key": KEYS[0]}, timeout=10)
    assert refused.status_code == 429
    body = refused.json()
    assert body["success"] is False and body["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= BURST + 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-Request-ID"]
    # the same address with another key has its own bucket; so does the key elsewhere
    assert statuses(session, url, BURST, headers={"X-Api-Key": KEYS[1]}) == [200] * BURST
    other = bound_session("127.0.0.12")
    assert other.get(url, headers={"X-Api-Key": KEYS[0]}, timeout=10).status_code == 429
    assert other.get(limited.url("/health"), timeout=10).status_code == 200  # its IP bucket


def test_bad_keys_and_spoofed_forwarding_count_against_the_ip(limited) -> None:
    session = bound_session("127.0.0.13")
    url = limited.url("/api/v1/sessions")
    codes = []
    for i in range(BURST * 3):
        codes.append(session.get(url, timeout=10, headers={
            "X-Api-Key": f"guess-{i}", "X-Forwarded-For": f"198.51.100.{i}",
            "X-Real-IP": f"203.0.113.{i}"}).status_code)
    assert codes == [401] * BURST + [429] * (BURST * 2)
    # a valid key gets its own bucket, even from the throttled address
    assert session.get(url, headers={"X-Api-Key": KEYS[2]}, timeout=10).status_code == 200


def test_every_path_counts(limited) -> None:
    session = bound_session("127.0.0.14")
    calls = [
        ("GET", "/health", {}), ("GET", "/metrics", {}), ("GET", "/docs", {}),
        ("GET", "/docs/static/swagger-ui/swagger-ui.css", {}), ("GET", "/no-such-path", {}),
        ("OPTIONS", "/api/v1/prompt", {"Origin": "http://localhost:3000",
                                       "Access-Control-Request-Method": "POST"}),
        ("POST", "/health", {}),  # wrong method
    ]
    codes = [session.request(m, limited.url(p), headers=h, timeout=10).status_code
             for m, p, h in calls]
    assert codes[:BURST] != [429] * BURST and 429 not in codes[:BURST]
    assert codes[BURST:] == [429] * (len(calls) - BURST)
    for method, path, headers in calls:
        resp = session.request(method, limited.url(path), headers=headers, timeout=10)
        assert resp.status_code == 429, (method, path)


@pytest.mark.parametrize("path", ["/api/v1/backends", "/openai/v1/models",
                                  "/anthropic/v1/messages"])
def test_429_uses_the_format_of_the_route(limited, path) -> None:
    source = {"/api/v1/backends": "127.0.0.21", "/openai/v1/models": "127.0.0.22",
              "/anthropic/v1/messages": "127.0.0.23"}[path]
    session = bound_session(source)
    for _ in range(BURST):
        session.get(limited.url("/health"), timeout=10)
    resp = session.get(limited.url(path), timeout=10, headers={"anthropic-version": "x"})
    assert resp.status_code == 429
    style = expected_style(limited, path)
    assert error_style(resp.json()) == style, resp.text
    assert int(resp.headers["Retry-After"]) >= 1


def test_forwarded_for_counts_only_through_trusted_proxies(limited) -> None:
    url = limited.url("/health")
    proxy = bound_session(TRUSTED_PROXY)
    # through the trusted proxy every client address gets its own bucket...
    for client in ("192.0.2.1", "192.0.2.2"):
        assert statuses(proxy, url, BURST + 1, headers={"X-Forwarded-For": client}) == \
            [200] * BURST + [429]
    # ...the proxy's own hop is the one that counts, not what the client prepended
    spoofed = [proxy.get(url, timeout=10, headers={
        "X-Forwarded-For": f"203.0.113.{i}, 192.0.2.3"}).status_code for i in range(BURST + 1)]
    assert spoofed == [200] * BURST + [429]
    # several trusted hops are skipped (10/8 is trusted too)
    chained = [proxy.get(url, timeout=10, headers={
        "X-Forwarded-For": f"203.0.113.{i}, 192.0.2.4, 10.1.2.3"}).status_code
        for i in range(BURST + 1)]
    assert chained == [200] * BURST + [429]
    # garbage in the header: the last trusted address is used, nothing breaks
    odd = [proxy.get(url, timeout=10, headers={"X-Forwarded-For": "not-an-ip"}).status_code
           for _ in range(BURST + 1)]
    assert odd == [200] * BURST + [429]
    # an untrusted peer cannot pick an identity: all of these share its own bucket
    direct = bound_session("127.0.0.31")
    codes = [direct.get(url, timeout=10, headers={"X-Forwarded-For": f"192.0.2.{100 + i}"}
                        ).status_code for i in range(BURST + 1)]
    assert codes == [200] * BURST + [429]


def test_limit_helpers() -> None:
    from clinvk.server.security import client_ip_from, parse_networks
    from clinvk.server.security.limiter import rate_limit_string

    assert rate_limit_string(10, 20) == "20 per 2 second"
    assert rate_limit_string(10, 0) == "20 per 2 second"  # burst 0 = twice the rate
    assert rate_limit_string(10, 5) == "10 per 1 second"
    assert rate_limit_string(1, 5) == "5 per 5 second"
    assert rate_limit_string(0, 5) is None
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
    assert client_ip_from("198.51.100.7", "1.2.3.4", trusted) == "198.51.100.7"
    assert client_ip_from("127.0.0.1", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_ip_from("127.0.0.1", "", trusted) == "127.0.0.1"
    assert client_ip_from("127.0.0.1", "9.9.9.9, 1.2.3.4, 10.0.0.1", trusted) == "1.2.3.4"
    assert client_ip_from("127.0.0.1", "10.0.0.2, 10.0.0.1", trusted) == "10.0.0.2"
    assert client_ip_from("127.0.0.1", "1.2.3.4:5678", trusted) == "1.2.3.4"
    assert client_ip_from("127.0.0.1", "[2001:db8::1]:443", trusted) == "2001:db8::1"
    assert client_ip_from("::ffff:127.0.0.1", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_ip_from("fd00::1", "2001:db8::2", trusted) == "2001:db8::2"
    assert client_ip_from("127.0.0.1", "evil, 1.2.3.4", trusted) == "1.2.3.4"
    assert client_ip_from("127.0.0.1", "1.2.3.4, evil", trusted) == "127.0.0.1"
    assert client_ip_from("198.51.100.7", "1.2.3.4", ()) == "198.51.100.7"
