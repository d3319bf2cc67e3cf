"""Persistence helpers shared by the engine's stores (sessions, jobs).

Today this package holds the opaque keyset cursor (``cursor.py``) that every paginated
listing uses; the session store itself still lives in ``clinvk.core.sessions``.
"""
