"""What the security layer decided at start-up, kept on the app for the request hooks."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from flask import current_app

from clinvk.core.keys import KeyStore

if TYPE_CHECKING:
    from flask_limiter import Limiter

EXTENSION = "clinvk.security"


@dataclasses.dataclass
class SecurityState:
    keys: KeyStore
    trusted_proxies: tuple[Any, ...]
    metrics_public: bool
    max_body: int | None
    admin_key_ids: frozenset[str] = frozenset()
    limiter: Limiter | None = None



def state() -> SecurityState:
    return current_app.extensions[EXTENSION]
