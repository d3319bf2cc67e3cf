"""The per-invocation application context: config, session store and engines, built lazily.

Commands receive it with :data:`pass_app` (the root group puts it on ``ctx.obj``); nothing is
loaded until a command asks for it, so ``--help`` and usage errors touch no file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from clinvk.core.config import Config, clinvk_home, load_config

if TYPE_CHECKING:
    from clinvk.core.engine import Engine
    from clinvk.core.store import Store


class AppContext:
    """Lazily built config, store and engines for one command invocation."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self._store: Store | None = None
        self._engines: dict[bool, Engine] = {}

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            _ = self.config  # a broken or missing --config fails every command, not only runs
            from clinvk.core.store import configured_store  # not in the gunicorn master

            self._store = configured_store(self.config, clinvk_home())
        return self._store

    def engine(self, *, with_store: bool = True) -> Engine:
        """The engine; ``with_store=False`` for runs that must leave no session behind."""
        if with_store not in self._engines:
            # loaded here, not at import: commands without runs (serve's master) never load it
            from clinvk.core.engine import Engine

            self._engines[with_store] = Engine(self.config,
                                               self.store if with_store else None)
        return self._engines[with_store]


#: Decorator handing a command the :class:`AppContext` of the running invocation.
pass_app = click.make_pass_decorator(AppContext)
