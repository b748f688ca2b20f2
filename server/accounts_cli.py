"""``dispatcher accounts``: the accounts of a database, for whoever holds the machine.

Works on the database directly (``--database-url`` or ``DISPATCHER_DATABASE_URL``), with or without a
dispatcher running on it: this is how a lost administrator password is recovered. A password changed
here counts at once, also for a running dispatcher (it reads the stored hash at each sign-in); locking
or unlocking an account reaches a running dispatcher only at its next start (use
``PATCH /api/v1/accounts/{name}`` for a running one).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from dispatcher.accounts import COUNTY, AccountError, Role, SqlDirectory
from dispatcher.settings import Settings

accounts_app = typer.Typer(help="Accounts: list, create, set a password, lock and unlock.", no_args_is_help=True)

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
]


def _run(database_url: str | None, work: Callable[[SqlDirectory], Awaitable[T]]) -> T:
    settings = Settings.model_validate({"database_url": database_url} if database_url else {})

    async def go() -> T:
        directory = SqlDirectory(settings.database_url)
        await directory.open()
        try:
            return await work(directory)
        finally:
            await directory.close()

    try:
        return asyncio.run(go())
    except AccountError as exc:
        typer.echo(f"dispatcher accounts: {exc}", err=True)
        raise typer.Exit(1) from None


def _password(from_stdin: bool, generate: bool) -> tuple[str, bool]:
    """(the password, whether it was generated): from stdin, generated, or typed twice without echo."""
    if generate:
        return secrets.token_urlsafe(15), True
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        typer.echo("dispatcher accounts: a password needs at least 12 characters", err=True)
        raise typer.Exit(2)
    return password, False


@accounts_app.command("list")
def list_accounts(database_url: DatabaseUrl = None) -> None:
    """Every account: name, role, township, officer, module, and whether it is locked."""

    async def work(directory: SqlDirectory) -> None:
        for a in directory.accounts():
            where = "county" if a.township == COUNTY else a.township
            state = "locked" if a.disabled else "active"
            extra = " ".join(f"{k}={v}" for k, v in (("officer", a.officer_id), ("module", a.module)) if v)
            typer.echo(f"{a.name}\t{a.role.value}\t{where}\t{state}\t{extra}".rstrip())

    _run(database_url, work)


@accounts_app.command("create")
def create_account(
    name: str,
    role: Annotated[Role, typer.Option(help="what the account may do (docs/security.md)")],
    township: Annotated[str, typer.Option(help="its township id, or * for the county")],
    officer_id: Annotated[str | None, typer.Option(help="the roster's officer id (field officers)")] = None,
    module: Annotated[str | None, typer.Option(help="the module it leads (module leads)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    generate: Annotated[bool, typer.Option(help="generate a password and print it once")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an account with a password."""
    password, generated = _password(password_stdin, generate)

    async def work(directory: SqlDirectory) -> None:
        await directory.create_account(
            name, role, township, datetime.now(UTC), officer_id=officer_id, module=module, password=password
        )

    _run(database_url, work)
    typer.echo(f"created {name} ({role.value})" + (f"; password (shown once): {password}" if generated else ""))


@accounts_app.command("set-password")
def set_password(
    name: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    generate: Annotated[bool, typer.Option(help="generate a password and print it once")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Set an account's password (recovering ``admin``: ``dispatcher accounts set-password admin``).

    Its sessions and device tokens are revoked in the database (a running dispatcher drops them at its
    next start; ``PATCH /api/v1/accounts/NAME`` with a password revokes them at once).
    """
    password, generated = _password(password_stdin, generate)

    async def work(directory: SqlDirectory) -> None:
        at = datetime.now(UTC)
        await directory.update_account(name, at, password=password)
        await directory.revoke_all(name, at)

    _run(database_url, work)
    typer.echo(f"password of {name} set" + (f" (shown once): {password}" if generated else ""))


def _lock(name: str, disabled: bool, database_url: str | None) -> None:
    async def work(directory: SqlDirectory) -> None:
        await directory.update_account(name, datetime.now(UTC), disabled=disabled)

    _run(database_url, work)
    typer.echo(
        f"{name} {'locked' if disabled else 'unlocked'} (a dispatcher running on this database applies it at the next "
        "sign-in; the tokens a lock revokes, at its next start: PATCH /api/v1/accounts/NAME revokes them at once)"
    )


@accounts_app.command("lock")
def lock(name: str, database_url: DatabaseUrl = None) -> None:
    """Lock an account: it cannot sign in, and its tokens are revoked."""
    _lock(name, True, database_url)


@accounts_app.command("unlock")
def unlock(name: str, database_url: DatabaseUrl = None) -> None:
    """Unlock an account."""
    _lock(name, False, database_url)
