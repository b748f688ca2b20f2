"""Townships as tenants: one hub per township served by this process, and the one place that picks it.

Every account belongs to one township or to the county (``*``). The guard (:func:`gateways.auth.guard`)
settles a request's township once: an account's own, or for a county account the one it names with
``?township=`` or ``X-Township`` (the only one, when one is served). :func:`township_of` then hands out
that township's hub, roster and shift watch; routes reach a hub through it only (``gateways.api.get_hub``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from dispatcher.accounts import Account
from dispatcher.hub import Hub
from dispatcher.roster_file import RosterIn
from dispatcher.shifts import ShiftWatch
from gateways.context import context_of
from gateways.replicas import Elsewhere


@dataclass(slots=True)
class Township:
    """One township served here: its hub, the roster document in force and the watch of its shift changes."""

    id: str
    hub: Hub
    shifts: ShiftWatch
    rules_path: Path
    roster_file: Path | None = None
    roster_source: RosterIn | None = field(default=None)
    #: False on a replica while another replica serves the township (or nobody does, during a switch): its
    #: requests are carried to the owner (gateways/replicas.py) and ``hub`` is not started here.
    serving: bool = True


class Townships(Mapping[str, Township]):
    def __init__(self, townships: list[Township]) -> None:
        if not townships:
            raise ValueError("serve at least one township")
        self._by_id = {t.id: t for t in townships}
        if len(self._by_id) != len(townships):
            raise ValueError(f"a township is served twice: {[t.id for t in townships]}")

    def __getitem__(self, township_id: str) -> Township:
        return self._by_id[township_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def first(self) -> Township:
        return next(iter(self._by_id.values()))

    def choose(self, account: Account, requested: str | None) -> str | None:
        """The township a request of ``account`` is served by; None: a county account must still choose.

        Raises 403 when the account may not see ``requested`` or its township is not served here.
        """
        if account.county:
            if requested is None:
                return self.first.id if len(self) == 1 else None
            if requested not in self._by_id:
                raise HTTPException(403, f"township {requested!r} is not served here")
            return requested
        if requested is not None and requested != account.township:
            raise HTTPException(403, f"account {account.name!r} belongs to township {account.township!r}")
        if account.township not in self._by_id:
            raise HTTPException(403, f"township {account.township!r} is not served here")
        return account.township


def township_of(connection: HTTPConnection) -> Township:
    """The township the guard settled for this request or websocket (400 when a county account did not choose)."""
    chosen: str | None = getattr(connection.state, "township", None)
    townships: Townships = context_of(connection).townships
    if chosen is None:
        raise HTTPException(400, f"choose a township with ?township= or X-Township: one of {sorted(townships)}")
    township = townships[chosen]
    if not township.serving:
        raise Elsewhere(township.id)
    return township
