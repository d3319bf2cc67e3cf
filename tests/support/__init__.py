"""Plain test helpers, imported normally (``from support.fakes import fake``); fixtures live in
conftest.py files."""
