"""Which townships this process hosts (their hub writes here), and how a command reaches a township hosted elsewhere.

In a county run on several replicas sharing PostgreSQL each township's hub runs on one replica at a time
(the one holding its lease). The parts that serve every township from any replica ask this interface:
boards (``dispatcher.tail_feed``: a township hosted elsewhere is followed through the event log) and the MQTT
gateway (a report for a township hosted elsewhere is carried to its owner before the broker is acknowledged).

:class:`HostsAll` is the single-process default: every township is hosted here and nothing is carried.
All methods run on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

#: Called with the township whose hosting changed and whether it is now hosted here.
OnOwnershipChange = Callable[[str, bool], None]


class Ownership(Protocol):
    def owns(self, township: str) -> bool:
        """Whether ``township``'s hub runs (writes) in this process now."""
        ...

    def watch(self, callback: OnOwnershipChange) -> Callable[[], None]:
        """Call ``callback(township, owned)`` after each change; returns the handle that stops the calls."""
        ...

    async def carry(self, township: str, command: Any) -> Any:
        """Hand ``command`` (a gateway's typed command, e.g. a ``ReportCommand``) to the owner of ``township``.

        Returns once the owner stored it (what it answered); raises when it could not be carried (the caller
        keeps the message and tries again later). Only called for a township :meth:`owns` says is elsewhere.
        """
        ...


class HostsAll:
    """One process hosts every township it serves: nothing changes hands, nothing is carried."""

    def owns(self, township: str) -> bool:
        return True

    def watch(self, callback: OnOwnershipChange) -> Callable[[], None]:
        return lambda: None

    async def carry(self, township: str, command: Any) -> Any:
        raise NotCarried(f"township {township!r} is hosted here: nothing to carry")


class NotCarried(RuntimeError):
    """A command could not be handed to the owner of its township (no owner now, or it did not answer)."""


class SettableOwnership:
    """Ownership set by hand: the township set owned here, changed with :meth:`set`; ``carry`` is a callable.

    For tests and for the lease manager to build on: it calls :meth:`set` when it takes or gives up a lease.
    """

    def __init__(
        self, owned: set[str] | None = None, carry: Callable[[str, Any], Awaitable[Any]] | None = None
    ) -> None:
        self._owned = set(owned or ())
        self._watchers: list[OnOwnershipChange] = []
        self._carry = carry

    def owns(self, township: str) -> bool:
        return township in self._owned

    def set(self, township: str, owned: bool) -> None:
        if (township in self._owned) == owned:
            return
        if owned:
            self._owned.add(township)
        else:
            self._owned.discard(township)
        for watcher in list(self._watchers):
            watcher(township, owned)

    def watch(self, callback: OnOwnershipChange) -> Callable[[], None]:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    async def carry(self, township: str, command: Any) -> Any:
        if self._carry is None:
            raise NotCarried(f"township {township!r} is hosted elsewhere and nothing carries commands there")
        return await self._carry(township, command)
