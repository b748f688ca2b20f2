"""Masking reporters' contact details and complainants' identities for roles that do not need them.

What each role sees of a ``reporter`` (of an incident, of a joined report, in an event):

* operator, party secretary, administrator: everything (they call reporters back);
* module lead: the reporters of its own module's incidents; masked elsewhere (and where the module is unknown);
* field officer: the reporters of its own assignments, except in sensitive categories (labour.*, food.*),
  where the complainant stays masked, and where the category is unknown;
* supervision (综合督考办): always masked; it scores posts and teams, it does not call citizens.

:func:`mask` applies this to any decoded JSON (API answers, board frames). The API is covered by
:class:`gateways.edge.Edge` and the board by :class:`MaskedSocket`; both leave the bytes alone
for roles that see everything, so the command room's hot paths do not pay for it.
"""

from __future__ import annotations

from typing import Any

import orjson

from dispatcher.accounts import Account, Principal, Role

MASK = "***"
SENSITIVE_PREFIXES = ("labour.", "food.")
SEES_ALL = frozenset({Role.OPERATOR, Role.PARTY_SECRETARY, Role.ADMIN})


def sensitive(category: str | None) -> bool:
    return category is None or category.startswith(SENSITIVE_PREFIXES)


def reveals(account: Account, category: str | None, module: str | None) -> bool:
    """Whether ``account`` may see the reporter of a report in ``category`` of an incident of ``module``."""
    if account.role in SEES_ALL:
        return True
    if account.role is Role.MODULE_LEAD:
        return module is not None and module == account.module
    if account.role is Role.FIELD_OFFICER:
        return not sensitive(category)
    return False


def mask(value: Any, account: Account, category: str | None = None, module: str | None = None) -> Any:
    """``value`` with every ``reporter`` the account may not see replaced by ``***`` (in place; returned)."""
    if isinstance(value, list):
        for item in value:
            mask(item, account, category, module)
    elif isinstance(value, dict):
        category = value.get("category", category) if isinstance(value.get("category", category), str) else category
        module = value.get("module", module) if isinstance(value.get("module", module), str) else module
        if value.get("reporter") is not None and not reveals(account, category, module):
            value["reporter"] = MASK
        for item in value.values():
            if isinstance(item, list | dict):
                mask(item, account, category, module)
    return value


def mask_phone(phone: str) -> str:
    """A phone number with its middle hidden, as Chinese apps show it: ``13812345678`` → ``138****5678``.

    The first three and last four digits stay for numbers of eight or more characters; a shorter one keeps
    only its last two.
    """
    phone = phone.strip()
    if len(phone) >= 8:
        return phone[:3] + "****" + phone[-4:]
    return "*" * max(len(phone) - 2, 1) + phone[-2:]


def needs_masking(principal: Principal | None) -> bool:
    return principal is not None and principal.role not in SEES_ALL


def mask_text(text: str, account: Account) -> str:
    """A JSON text with the reporters ``account`` may not see masked."""
    return orjson.dumps(mask(orjson.loads(text), account)).decode()


class MaskedSocket:
    """What the board feed sends through: masks each frame for the subscriber's account."""

    def __init__(self, websocket: Any, account: Account) -> None:
        self._websocket = websocket
        self._account = account

    async def send_text(self, text: str) -> None:
        await self._websocket.send_text(mask_text(text, self._account))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._websocket.close(code=code, reason=reason)
