"""/dashboard in a real headless Chromium against a real ``clinvk serve`` with keys: the user
types the key into the page's form; the charts are drawn (screenshot pixels checked); no key
and a bad key each show a clear message; the key travels as a header, never in a URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from support.chromium import Page, chromium
from support.fakes import fake

from clinvk.core.keys import key_id

KEY = "sk-dashboard-user-0123456789ab"
ADMIN = "sk-dashboard-admin-0123456789"
BAR = (0x1F, 0x6F, 0xEB)  # .chart rect fill in dashboard.css
CHART_BACKGROUND = (0xF7, 0xF7, 0xF7)


@pytest.fixture(scope="module")
def served(server_factory):
    server = server_factory({"server": {"admin_key_ids": [key_id(ADMIN)]}},
                            extra_env={"CLINVK_API_KEYS": f"{KEY},{ADMIN}"})
    for key, backend in ((KEY, "claude"), (KEY, "codex"), (ADMIN, "gemini")):
        resp = requests.post(server.url("/api/v1/prompt"), timeout=30,
                             headers={"X-Api-Key": key},
                             json={"backend": backend, "prompt": fake("hi", reply="ok")})
        assert resp.status_code == 200, resp.text
    return server


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with chromium() as tab:
        yield tab


def _message(page: Page) -> str:
    return page.evaluate("document.getElementById('message').textContent")


def _enter_key(page: Page, key: str) -> None:
    page.click("#key")
    page.type_text(key)
    page.press_enter()


def _close_to(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True))


def test_without_a_key_the_page_asks_for_one(served, page) -> None:
    page.open(served.url("/dashboard"))
    text = page.wait_for("document.getElementById('message').textContent")
    assert "Enter an API key" in text
    assert page.evaluate("document.getElementById('charts').hidden") is True


def test_a_bad_key_is_refused_with_a_clear_message(served, page) -> None:
    page.open(served.url("/dashboard"))
    _enter_key(page, "sk-not-a-key-of-this-server")
    page.wait_for("document.getElementById('message').textContent.includes('refused')")
    assert "Enter a valid key" in _message(page)
    assert page.evaluate("document.getElementById('charts').hidden") is True


def test_the_key_typed_in_shows_charts_of_every_key(served, page) -> None:
    page.open(served.url("/dashboard"))
    page.events.clear()
    _enter_key(page, ADMIN)
    page.wait_for("!document.getElementById('charts').hidden && "
                  "document.querySelectorAll('#backend-chart rect').length === 3", 20)
    assert _message(page) == "3 runs in the last 7 days (all keys)"
    assert page.evaluate("document.querySelectorAll('#recent tbody tr').length") == 3
    assert page.evaluate("document.querySelectorAll('#key-chart rect').length") == 2
    assert page.evaluate("document.getElementById('key').value") == ""  # not left in the form

    pixels = page.screenshot("#backend-chart")
    bars = sum(_close_to(p, BAR) for p in pixels)
    background = sum(_close_to(p, CHART_BACKGROUND) for p in pixels)
    assert bars > len(pixels) // 20, (bars, len(pixels))  # bars drawn, not an empty chart
    assert background > 0  # and the box is the chart, not a solid fill

    sent = [e["params"]["request"] for e in page.events
            if e["method"] == "Network.requestWillBeSent"]
    usage = [r for r in sent if "/api/v1/usage" in r["url"]]
    assert len(usage) == 3
    assert all(r["headers"].get("X-Api-Key") == ADMIN for r in usage)
    assert not any(ADMIN in r["url"] for r in sent)
    assert ADMIN not in page.evaluate("location.href")
