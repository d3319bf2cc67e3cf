"""``/dashboard``: the usage page, static files packaged under ``static/dashboard``.

The page holds no data: its script asks for the API key, keeps it in ``sessionStorage``
and sends it as ``X-Api-Key`` to ``/api/v1/usage`` (never in a URL), then draws plain
SVG. So the page and its assets are public like ``/docs``; the data is not.
"""

from __future__ import annotations

from pathlib import Path

import flask
from flask import Response

STATIC_DIR = Path(__file__).parent / "static" / "dashboard"

page = flask.Blueprint("dashboard", __name__, static_folder=str(STATIC_DIR),
                       static_url_path="/dashboard/static")


@page.get("/dashboard")
def dashboard() -> Response:
    response = flask.send_from_directory(STATIC_DIR, "index.html", mimetype="text/html")
    # Scripts only from this server: a page that handles a key must not load others'.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'")
    response.headers["Cache-Control"] = "no-store"
    return response
