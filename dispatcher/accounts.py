"""Accounts, bearer tokens, the sign-in lockout and the audit trail (the directory).

The pure parts (roles, the lockout arithmetic, token hashing) come first; :class:`SqlDirectory` stores
them in the accounts database. Accounts and live tokens are also held in memory, so checking a token
costs a dictionary look-up and no query: this process is the only one that issues or revokes them.
Only the SHA-256 of a token is stored; passwords are argon2id hashes, computed in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import SQLModel

from dispatcher.account_tables import AccountRow, ApiTokenRow, AuditRow, SignInFailureRow
from dispatcher.audit_entries import AuditEntry as AuditEntry  # re-exported: the directory's entries
from dispatcher.audit_entries import audit_row
from dispatcher.connection_budget import ConnectionBudget
from dispatcher.migrations import upgrade_to_head
from dispatcher.sql_store import build_engine

log = logging.getLogger(__name__)

account_t = SQLModel.metadata.tables[AccountRow.__tablename__]
token_t = SQLModel.metadata.tables[ApiTokenRow.__tablename__]
failure_t = SQLModel.metadata.tables[SignInFailureRow.__tablename__]
audit_t = SQLModel.metadata.tables[AuditRow.__tablename__]

COUNTY = "*"
# Why a token stopped working, as told to whoever watches it (the board feed's close reason).
TOKEN_REVOKED = "token revoked"
SIGNED_OUT = "signed out"
ACCOUNT_DISABLED = "account disabled"
ACCOUNT_CHANGED = "account changed: sign in again"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


class Role(StrEnum):
    """Who a person is in the township; what each may do is the policy table (``gateways/policy.py``)."""

    FIELD_OFFICER = "field_officer"
    OPERATOR = "operator"
    MODULE_LEAD = "module_lead"  # 模块牵头人
    PARTY_SECRETARY = "party_secretary"  # 党委书记
    SUPERVISION = "supervision"  # 综合督考办
    ADMIN = "admin"
    CITIZEN_APP = "citizen_app"  # a citizen app's Open311 client: reports as ``citizen``, reads nothing else
    HOTLINE = "hotline"  # a 12345-style hotline's Open311 client: reports as ``hotline``


class TokenKind(StrEnum):
    SESSION = "session"  # issued at sign-in, expires
    DEVICE = "device"  # issued by an administrator for a device or an integration, until revoked


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    township: str
    officer_id: str | None = None
    module: str | None = None
    disabled: bool = False
    has_password: bool = False

    @property
    def county(self) -> bool:
        return self.township == COUNTY


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    account: str
    kind: TokenKind
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in account behind a request, and the token it used."""

    account: Account
    token: TokenInfo

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def role(self) -> Role:
        return self.account.role


class AccountError(ValueError):
    """A refused account change (bad name, unknown or duplicate account); nothing was changed."""


class SignInRefused(Exception):
    """Wrong name or password, a disabled account, or a lockout (``locked_until`` set)."""

    def __init__(self, locked_until: datetime | None = None) -> None:
        self.locked_until = locked_until
        super().__init__("locked" if locked_until else "wrong name or password")


# -- the lockout: pure ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lockout:
    """``failures`` failed sign-ins of one name within ``window`` lock it for ``lock_for``."""

    failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Failures:
    count: int
    window_start: datetime
    locked_until: datetime | None = None


def locked_until(state: Failures | None, at: datetime) -> datetime | None:
    """When the name is locked at ``at``, until when; else None."""
    if state is None or state.locked_until is None or state.locked_until <= at:
        return None
    return state.locked_until


def after_failure(state: Failures | None, at: datetime, policy: Lockout) -> Failures:
    """The failure record after one more failed sign-in at ``at``."""
    if state is None or at - state.window_start >= policy.window or (state.locked_until and state.locked_until <= at):
        state = Failures(count=0, window_start=at)
    count = state.count + 1
    if count >= policy.failures:
        return Failures(count=count, window_start=state.window_start, locked_until=at + policy.lock_for)
    return replace(state, count=count)


# -- tokens and passwords -------------------------------------------------------------------------


def new_token() -> str:
    """A fresh opaque bearer token: 32 random bytes."""
    return "dsp_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _settle(waiting: asyncio.Future[None], error: Exception | None) -> None:
    if waiting.done():
        return
    if error is None:
        waiting.set_result(None)
    else:
        waiting.set_exception(error)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise AccountError(f"an account name is 1-64 of a-z 0-9 . _ - starting with a letter or digit: {name!r}")
    return name


_HASHER = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# -- the store --------------------------------------------------------------------------------------


def _account(row: Any) -> Account:
    return Account(
        name=row.name,
        role=Role(row.role),
        township=row.township,
        officer_id=row.officer_id,
        module=row.module,
        disabled=row.disabled,
        has_password=row.password_hash is not None,
    )


def _token(row: Any) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        account=row.account,
        kind=TokenKind(row.kind),
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class SqlDirectory:
    """Accounts, tokens, lockouts and the audit trail in one database. Runs on the event loop.

    ``open`` is idempotent (the first request opens it when the application's lifespan did not).
    """

    def __init__(
        self,
        url: str,
        *,
        session_ttl: timedelta = timedelta(hours=8),
        lockout: Lockout | None = None,
        pool_size: int = 5,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.url = url
        self.session_ttl = session_ttl
        self.lockout = lockout or Lockout()
        self._engine = build_engine(url, pool_size=pool_size, budget=budget)
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, TokenInfo] = {}  # sha256 -> live token
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._pending: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._flushing = False
        self._revocation_watchers: dict[int, set[Callable[[str], None]]] = {}

    @property
    def is_open(self) -> bool:
        return self._opened

    async def open(self) -> None:
        async with self._open_lock:
            if self._opened:
                return
            async with self._engine.begin() as conn:
                await conn.run_sync(upgrade_to_head)
                accounts = (await conn.execute(sa.select(account_t))).all()
                tokens = (
                    await conn.execute(sa.select(token_t).where(token_t.c.revoked_at.is_(None)).order_by(token_t.c.id))
                ).all()
            self._accounts = {row.name: _account(row) for row in accounts}
            self._tokens = {row.token_hash: _token(row) for row in tokens}
            self._opened = True

    async def close(self) -> None:
        await self._engine.dispose()
        self._opened = False

    # -- accounts --

    def account(self, name: str) -> Account | None:
        return self._accounts.get(name)

    def accounts(self) -> list[Account]:
        return sorted(self._accounts.values(), key=lambda a: a.name)

    async def create_account(
        self,
        name: str,
        role: Role,
        township: str,
        at: datetime,
        *,
        officer_id: str | None = None,
        module: str | None = None,
        password: str | None = None,
    ) -> Account:
        """Create an account; raises ``AccountError`` when the name is taken or malformed."""
        check_name(name)
        if name in self._accounts:
            raise AccountError(f"account {name!r} exists")
        hashed = await asyncio.to_thread(_HASHER.hash, password) if password else None
        async with self._engine.begin() as conn:
            await conn.execute(
                account_t.insert().values(
                    name=name,
                    role=role.value,
                    township=township,
                    officer_id=officer_id,
                    module=module,
                    password_hash=hashed,
                    disabled=False,
                    created_at=at,
                    updated_at=at,
                )
            )
        account = Account(name, role, township, officer_id, module, False, hashed is not None)
        self._accounts[name] = account
        return account

    async def update_account(
        self,
        name: str,
        at: datetime,
        *,
        password: str | None = None,
        disabled: bool | None = None,
        role: Role | None = None,
        township: str | None = None,
        officer_id: str | None = None,
        module: str | None = None,
    ) -> Account:
        """Change an account; disabling it revokes all its tokens, a new password or enabling it clears its failed
        sign-ins. Raises ``AccountError`` when unknown."""
        account = self._accounts.get(name)
        if account is None:
            raise AccountError(f"no account {name!r}")
        values: dict[str, Any] = {"updated_at": at}
        if password is not None:
            values["password_hash"] = await asyncio.to_thread(_HASHER.hash, password)
        for key, value in (("role", role), ("township", township), ("officer_id", officer_id), ("module", module)):
            if value is not None:
                values[key] = value.value if isinstance(value, Role) else value
        if disabled is not None:
            values["disabled"] = disabled
        async with self._engine.begin() as conn:
            await conn.execute(account_t.update().where(account_t.c.name == name).values(**values))
            if password is not None or disabled is False:
                # A new password or an unlock lets the account in now: the failed sign-ins before it are forgotten
                # (else an officer locked out by guesses waits out the lock after the administrator helped).
                await conn.execute(failure_t.delete().where(failure_t.c.name == name))
            row = (await conn.execute(sa.select(account_t).where(account_t.c.name == name))).one()
        self._accounts[name] = _account(row)
        if disabled or role is not None or township is not None:
            # What a token may do was decided with the old account.
            await self.revoke_all(name, at, reason=ACCOUNT_DISABLED if disabled else ACCOUNT_CHANGED)
        return self._accounts[name]

    async def ensure_admin(self, password: str | None, at: datetime) -> str | None:
        """On first start (no account at all), create ``admin`` of the county.

        The password is ``password`` or, when None, a generated one, which is returned (print it once).
        Returns None when accounts existed already or the password was given.
        """
        await self.open()
        if self._accounts:
            return None
        generated = None if password else secrets.token_urlsafe(15)
        try:
            await self.create_account("admin", Role.ADMIN, COUNTY, at, password=password or generated)
        except sa.exc.IntegrityError:
            # Another process made it first (replicas starting together on a new county database): theirs stands.
            await self.refresh()
            return None
        return generated

    # -- signing in and tokens --

    async def sign_in(self, name: str, password: str, at: datetime) -> tuple[str, Principal]:
        """A session token for the right name and password; raises ``SignInRefused`` (and counts it)."""
        key = name[:64]
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(failure_t).where(failure_t.c.name == key))).one_or_none()
            stored = (await conn.execute(sa.select(account_t).where(account_t.c.name == key))).one_or_none()
        state = Failures(row.failures, row.window_start, row.locked_until) if row else None
        until = locked_until(state, at)
        if until is not None:
            raise SignInRefused(until)
        # The account as stored, not as this process last read it: one made or locked on the machine
        # (`dispatcher accounts create|lock|unlock`) while the dispatcher runs counts at its first sign-in.
        account = _account(stored) if stored is not None else None
        if account is not None:
            self._accounts[key] = account
        else:
            self._accounts.pop(key, None)
        hashed = stored.password_hash if stored is not None else None
        good = await asyncio.to_thread(_verify, hashed, password)
        if not good or account is None or account.disabled:
            after = await self._count_failure(key, at)
            raise SignInRefused(locked_until(after, at))
        if row is not None:
            async with self._engine.begin() as conn:
                await conn.execute(failure_t.delete().where(failure_t.c.name == key))
        token, info = await self.issue_token(account.name, TokenKind.SESSION, at, ttl=self.session_ttl)
        return token, Principal(account, info)

    async def _count_failure(self, name: str, at: datetime) -> Failures:
        """Count one failed sign-in of ``name`` at ``at`` in one statement; the record after it.

        :func:`after_failure` is the arithmetic; here it is one ``INSERT ... ON CONFLICT DO UPDATE ...
        RETURNING`` (SQLite and PostgreSQL), so that guesses made in parallel are each counted: reading,
        deciding and writing back in steps let a burst count as one, or fail on the name's key.
        """
        policy = self.lockout
        t = failure_t
        stamp = t.c.window_start.type

        def when(value: datetime) -> Any:
            return sa.literal(value, stamp)

        # The SET expressions see the row as it was: a window that ended, or a lock that ran out, starts over.
        over = sa.or_(
            t.c.window_start <= when(at - policy.window),
            sa.and_(t.c.locked_until.is_not(None), t.c.locked_until <= when(at)),
        )
        count = sa.case((over, 1), else_=t.c.failures + 1)
        fresh = after_failure(None, at, policy)
        dialect = self._engine.dialect.name
        insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(t).values(
            name=name, failures=fresh.count, window_start=fresh.window_start, locked_until=fresh.locked_until
        )
        statement = insert.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={
                "failures": count,
                "window_start": sa.case((over, when(at)), else_=t.c.window_start),
                "locked_until": sa.case((count >= policy.failures, when(at + policy.lock_for)), else_=sa.null()),
            },
        ).returning(t.c.failures, t.c.window_start, t.c.locked_until)
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).one()
        return Failures(row.failures, row.window_start, row.locked_until)

    async def issue_token(
        self, name: str, kind: TokenKind, at: datetime, *, ttl: timedelta | None = None, label: str | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token for account ``name`` (shown once: only its hash is kept)."""
        if name not in self._accounts:
            raise AccountError(f"no account {name!r}")
        token = new_token()
        digest = token_hash(token)
        expires = at + ttl if ttl is not None else None
        async with self._engine.begin() as conn:
            token_id = (
                await conn.execute(
                    token_t.insert()
                    .values(
                        token_hash=digest, account=name, kind=kind.value, label=label, created_at=at, expires_at=expires
                    )
                    .returning(token_t.c.id)
                )
            ).scalar_one()
        info = TokenInfo(token_id, name, kind, label, at, expires)
        self._tokens[digest] = info
        return token, info

    async def look_up(self, token: str) -> bool:
        """Replicas: load a token another replica issued (and its account) from the database; False: no such
        live token. One query for a token this process does not know (a guard calls it only then)."""
        digest = token_hash(token)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(token_t).where(token_t.c.token_hash == digest, token_t.c.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                return False
            account = (await conn.execute(sa.select(account_t).where(account_t.c.name == row.account))).first()
        if account is not None:
            self._accounts[account.name] = _account(account)
        self._tokens[digest] = _token(row)
        return True

    async def refresh(self) -> None:
        """Replicas: take in what other replicas changed: accounts, new tokens, revocations (watchers of a token
        revoked elsewhere hear it here)."""
        async with self._engine.connect() as conn:
            accounts = (await conn.execute(sa.select(account_t))).all()
            tokens = (
                await conn.execute(sa.select(token_t).where(token_t.c.revoked_at.is_(None)).order_by(token_t.c.id))
            ).all()
        live = {row.token_hash: _token(row) for row in tokens}
        gone = {info.id for digest, info in self._tokens.items() if digest not in live}
        self._accounts = {row.name: _account(row) for row in accounts}
        self._tokens = live
        for token_id in gone:
            for watcher in self._revocation_watchers.pop(token_id, set()):
                watcher(TOKEN_REVOKED)

    def authenticate(self, token: str, at: datetime) -> Principal | None:
        """The principal behind a live token of an enabled account, or None. No I/O."""
        digest = token_hash(token)
        info = self._tokens.get(digest)
        if info is None:
            return None
        if info.expires_at is not None and info.expires_at <= at:
            del self._tokens[digest]
            return None
        account = self._accounts.get(info.account)
        if account is None or account.disabled:
            return None
        return Principal(account, info)

    async def revoke(self, token_id: int, at: datetime, *, reason: str = TOKEN_REVOKED) -> TokenInfo | None:
        """Revoke one token; None when there is no such live token.

        Whoever watches the token (:meth:`watch_revocation`: an open board feed) hears ``reason`` once.
        """
        for digest, info in list(self._tokens.items()):
            if info.id == token_id:
                async with self._engine.begin() as conn:
                    await conn.execute(token_t.update().where(token_t.c.id == token_id).values(revoked_at=at))
                del self._tokens[digest]
                for watcher in self._revocation_watchers.pop(token_id, set()):
                    watcher(reason)
                return replace(info, revoked_at=at)
        return None

    async def revoke_all(self, name: str, at: datetime, *, reason: str = TOKEN_REVOKED) -> int:
        ids = [info.id for info in self._tokens.values() if info.account == name]
        for token_id in ids:
            await self.revoke(token_id, at, reason=reason)
        return len(ids)

    def watch_revocation(self, token_id: int, on_revoked: Callable[[str], None]) -> Callable[[], None]:
        """Call ``on_revoked(reason)`` once when token ``token_id`` is revoked; returns the handle that stops it.

        A token that is no longer live is reported at once. Runs on the event loop; ``on_revoked`` must
        not block (it is called from within :meth:`revoke`).
        """
        if not any(info.id == token_id for info in self._tokens.values()):
            on_revoked(TOKEN_REVOKED)
            return lambda: None
        watchers = self._revocation_watchers.setdefault(token_id, set())
        watchers.add(on_revoked)

        def stop() -> None:
            watchers.discard(on_revoked)
            if not watchers and self._revocation_watchers.get(token_id) is watchers:
                del self._revocation_watchers[token_id]

        return stop

    def tokens_of(self, name: str) -> list[TokenInfo]:
        return sorted((i for i in self._tokens.values() if i.account == name), key=lambda i: i.id)

    # -- the audit trail --

    async def record(self, entry: AuditEntry) -> None:
        """Append ``entry``; returns once it is committed. Entries that arrive together commit together.

        When a group fails, its entries are stored one by one, so that only an entry that cannot be stored
        at all is lost: its caller alone gets the error (its own exception, shared with nobody).
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if not self._flushing:
            self._flushing = True
            try:
                while self._pending:
                    batch, self._pending = self._pending, []
                    try:
                        await self._append([e for e, _ in batch])
                    except Exception as exc:  # noqa: BLE001 - a group of one: its caller's; else retried
                        if len(batch) == 1:
                            _settle(batch[0][1], exc)
                            continue
                        log.warning(
                            "%d audit entries failed together (%s); storing them one by one",
                            len(batch),
                            type(exc).__name__,
                        )
                        await self._append_each(batch)
                    else:
                        for _, waiting in batch:
                            _settle(waiting, None)
            finally:
                self._flushing = False
        await future

    async def _append_each(self, batch: Sequence[tuple[AuditEntry, asyncio.Future[None]]]) -> None:
        for entry, waiting in batch:
            try:
                await self._append([entry])
            except Exception as exc:  # noqa: BLE001 - this entry's own error, to its own caller
                _settle(waiting, exc)
            else:
                _settle(waiting, None)

    async def _append(self, entries: Sequence[AuditEntry]) -> None:
        rows = [audit_row(e) for e in entries]
        async with self._engine.begin() as conn:
            await conn.execute(audit_t.insert(), rows)

    async def audit(
        self, *, since: datetime | None, until: datetime | None, township: str | None, limit: int
    ) -> list[AuditEntry]:
        """Audit entries in time order; ``township`` None: every township (and the county's own)."""
        query = sa.select(audit_t).order_by(audit_t.c.id).limit(limit)
        if since is not None:
            query = query.where(audit_t.c.at >= since)
        if until is not None:
            query = query.where(audit_t.c.at < until)
        if township is not None:
            query = query.where(audit_t.c.township == township)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AuditEntry(
                id=r.id,
                at=r.at,
                action=r.action,
                outcome=r.outcome,
                actor=r.actor,
                township=r.township,
                target=r.target,
                source=r.source,
                detail=r.detail,
            )
            for r in rows
        ]
