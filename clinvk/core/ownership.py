"""Who a session, job or usage row belongs to, and who may see it.

An owner is the *key id* of the API key that created the thing (a stable, non-reversible
fingerprint, never the key itself), or ``None`` when no key was involved: the server runs
without API keys, or the caller is local (the CLI, the MCP server on stdio).

Visibility rules, in one place:

* a caller without a key id (keys off, local) sees everything, as before ownership existed;
* an admin key (its id listed in ``server.admin_key_ids``) sees everything;
* any other key sees only what it owns; rows owned by nobody are visible to admins only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The caller, as far as ownership is concerned."""

    key_id: str | None = None
    admin: bool = False

    @property
    def sees_all(self) -> bool:
        return self.admin or self.key_id is None

    @property
    def owner(self) -> str | None:
        """The owner to record on what this caller creates."""
        return self.key_id

    def may_see(self, owner: str | None) -> bool:
        return self.sees_all or owner == self.key_id


#: The local caller (CLI, MCP over stdio, tests): sees everything, owns nothing.
LOCAL = Principal()
