"""The Repository: versioned reads and writes of resources inside database transactions.

Every write happens in a ``DatabaseTransaction``. ``DatabaseTransaction.lock`` serialises writers
that touch the same logical key — a resource identity or a conditional query — so two concurrent
conditional creates cannot both create and two updates cannot lose each other (R4
http.html#concurrency). On PostgreSQL that is a transaction-scoped advisory lock; SQLite write
transactions are already serialised by ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from fhir_twin.errors import Conflict, StillReferenced, Unprocessable
from fhir_twin.fhir.resource_types import AUDIT_TYPES
from fhir_twin.search.index import IndexRow, ReferenceRow
from fhir_twin.search.query import InCompartment, Search
from fhir_twin.signals import version_written
from fhir_twin.store import search
from fhir_twin.store.database import write_gate
from fhir_twin.store.driver import first_row, first_row_alone
from fhir_twin.store.indexing import (
    RECORD_TYPES,
    add_rows,
    insert_many,
    insert_rows,
    live_keys,
    referrer_of,
    replace_index,
)
from fhir_twin.store.schema import MAX_VERSION, resource, resource_version
from fhir_twin.store.search import Page
from fhir_twin.store.search.conditions import compartment_members
from fhir_twin.store.version import CURRENT, Version, columns


@dataclass(frozen=True)
class HistoryPage:
    versions: list[Version]
    total: int | None


# Statements built once: constructing SQLAlchemy constructs per call costs more than running them.
_SELECTCURRENT = (
    select(*columns(resource_version))
    .select_from(CURRENT)
    .where(resource.c.res_type == bindparam("res_type"), resource.c.res_id == bindparam("res_id"))
)
# Current versions of many resources of one type (``lock_current``), a chunk at a time.
_SELECT_CURRENTS = (
    select(*columns(resource_version))
    .select_from(CURRENT)
    .where(resource.c.res_type == bindparam("res_type"), resource.c.res_id.in_(bindparam("res_ids", expanding=True)))
)
_READ_AHEAD = 500
_SELECT_VERSION = select(*columns(resource_version)).where(
    resource_version.c.res_type == bindparam("res_type"),
    resource_version.c.res_id == bindparam("res_id"),
    resource_version.c.version == bindparam("version"),
)
_SELECT_EXISTS = select(resource.c.version).where(
    resource.c.res_type == bindparam("res_type"), resource.c.res_id == bindparam("res_id")
)
# Inserts and the update take their values from the parameters; keys name columns.
_INSERT_VERSION = insert(resource_version)
_UPDATE_RESOURCE = update(resource).where(
    resource.c.res_type == bindparam("key_type"),
    resource.c.res_id == bindparam("key_id"),
    resource.c.version == bindparam("previous"),
)


class Repository:
    """Entry point to storage; hands out its database transactions (``transaction``)."""

    def __init__(self, engine: Engine, referential_integrity: bool = True) -> None:
        self.engine = engine
        self.referential_integrity = referential_integrity
        # Whether this server runs a websocket channel (``websocket_port``): without one, a websocket
        # Subscription would be accepted and never pinged.
        self.websocket = False
        # When a dict, write transactions add the local references they write here (target -> first referrer)
        # instead of checking that the targets exist: a load of many files checks them once, at
        # its end, so its files may refer to each other in any order. Deletes are still checked.
        self.deferred_targets: dict[tuple[str, str], tuple[str, str]] | None = None
        self._write_gate = write_gate(engine)
        self._active: ContextVar[DatabaseTransaction | None] = ContextVar(
            f"fhir_twin_transaction_{id(self)}", default=None
        )
        self._prelude: ContextVar[Callable[[DatabaseTransaction], None] | None] = ContextVar(
            f"fhir_twin_prelude_{id(self)}", default=None
        )

    def active_transaction(self) -> DatabaseTransaction | None:
        """The transaction open in this context (a transaction Bundle's), if any."""
        return self._active.get()

    def current(self, res_type: str, res_id: str) -> Version | None:
        """The newest version (possibly a delete), or None when the resource never existed; in
        the context's transaction when one is open (a transaction Bundle's), else as a statement
        of its own (``driver.first_row_alone``): a read needs no other."""
        active = self._active.get()
        if active is not None:
            return active.current(res_type, res_id)
        with _conflicts():
            row = first_row_alone(self.engine, _SELECTCURRENT, {"res_type": res_type, "res_id": res_id})
        return Version(*row) if row else None

    def version(self, res_type: str, res_id: str, version: int) -> Version | None:
        """One version of a resource (R4 http.html#vread), as ``current`` reads it."""
        active = self._active.get()
        if active is not None:
            return active.version(res_type, res_id, version)
        if not 0 < version <= MAX_VERSION:
            return None  # no such version can exist; the database would refuse the number
        with _conflicts():
            row = first_row_alone(
                self.engine, _SELECT_VERSION, {"res_type": res_type, "res_id": res_id, "version": version}
            )
        return Version(*row) if row else None

    @contextmanager
    def prelude(self, work: Callable[[DatabaseTransaction], None]) -> Iterator[None]:
        """The next write transaction this context opens calls ``work`` first, in it, once the
        write gate is held. A writer whose checks must share a transaction Bundle's transaction
        lets the Bundle open it, so the Bundle validates its resources before the gate, not under it."""
        token = self._prelude.set(work)
        try:
            yield
        finally:
            self._prelude.reset(token)

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[DatabaseTransaction]:
        """A database transaction; committed when the block ends without an exception.

        Inside another transaction of this repository (a transaction Bundle running its entries) the
        outer transaction is reused, so everything commits or rolls back together.
        """
        active = self._active.get()
        if active is not None:
            if write and not active.writable:
                raise RuntimeError("a write transaction cannot nest inside a read transaction")
            yield active
            return
        gate = self._write_gate if write else nullcontext()
        with _conflicts():
            # The pool's checkout and return stay outside the gate, which other writers queue at.
            with self.engine.connect() as connection, gate:
                if write:
                    connection.execution_options(fhir_write=True)
                with connection.begin():
                    tx = DatabaseTransaction(connection, write, self.referential_integrity, sender=self)
                    tx.deferred_targets = self.deferred_targets
                    token = self._active.set(tx)
                    try:
                        prelude = self._prelude.get() if write else None
                        if prelude is not None:
                            self._prelude.set(None)
                            prelude(tx)
                        yield tx
                        tx.write_gathered()
                        tx.flush()
                        tx.check_integrity()
                    finally:
                        self._active.reset(token)
            # Committed: now others can see what the transaction wrote.
            for callback in tx.committed:
                callback()


@contextmanager
def _conflicts() -> Iterator[None]:
    """The database's refusals that retrying can cure, as a 409."""
    try:
        yield
    except IntegrityError as exc:
        # Another writer created the same identity between our check and our insert.
        raise Conflict("A concurrent request changed this resource; retry the request") from exc
    except OperationalError as exc:
        if "locked" in str(exc).lower() or "deadlock" in str(exc).lower():
            raise Conflict("The database is busy with a conflicting write; retry the request") from exc
        raise


class DatabaseTransaction:
    """Reads and writes within one transaction."""

    def __init__(
        self,
        connection: Connection,
        writable: bool = False,
        referential_integrity: bool = False,
        sender: Repository | None = None,
    ) -> None:
        self._connection = connection
        # Who ``version_written`` is sent as: the Repository, which listeners subscribe to.
        self.sender = sender
        # Rows other modules derive from a write (the twin's facts), inserted with the batch.
        self._staged: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        # New resources are written in batches: one multi-row insert per table when the transaction
        # next reads or ends, which makes a transaction Bundle of hundreds of creates cheap.
        self._new_versions: list[dict[str, Any]] = []
        self._new_resources: list[dict[str, Any]] = []
        self._new_index: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.writable = writable
        self.referential_integrity = referential_integrity
        # Checked when the transaction ends, so entries of one transaction may refer to each other in
        # any order (R4 http.html#trules).
        self._referenced: dict[tuple[str, str], tuple[str, str]] = {}
        self._deleted: set[tuple[str, str]] = set()
        self.deferred_targets: dict[tuple[str, str], tuple[str, str]] | None = None
        # Called once the transaction has committed (``after_commit``), e.g. to wake a worker.
        self.committed: list[Callable[[], None]] = []
        # Items handed to a writer when the transaction's block ends (``gather``).
        self._gathered: dict[Callable[[DatabaseTransaction, list[Any]], None], list[Any]] = {}
        # Every version written in this transaction with its index rows, in order: what an
        # interaction changed, for its authorization check and its audit record.
        self.written: list[tuple[Version, list[IndexRow]]] = []
        # Keys locked so far (``lock``), and current versions read ahead for locked keys
        # (``lock_current``) that this transaction has not written since.
        self._locked: set[str] = set()
        self._known: dict[tuple[str, str], Version | None] = {}

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this transaction has committed; never if it rolls back."""
        if callback not in self.committed:
            self.committed.append(callback)

    def gather(self, writer: Callable[[DatabaseTransaction, list[Any]], None], item: Any) -> None:
        """Hand ``item`` to ``writer``, with every other item gathered for it, when this transaction's
        block ends, before it commits: one write for a transaction Bundle's hundreds of entries
        (their audit records) instead of one each, which would also send the pending batch of
        new resources early."""
        self._gathered.setdefault(writer, []).append(item)

    def write_gathered(self) -> None:
        """Call each writer with what was gathered for it (``gather``)."""
        while self._gathered:
            writer, items = self._gathered.popitem()
            writer(self, items)

    @property
    def connection(self) -> Connection:
        """The connection, with pending writes sent first so every read sees them."""
        self.flush()
        return self._connection

    def flush(self) -> None:
        """Send the pending inserts of new resources and of the rows staged with them."""
        if self._new_versions:
            insert_many(self._connection, resource_version, self._new_versions)
            insert_many(self._connection, resource, self._new_resources)
            insert_rows(self._connection, self._new_index)
            self._new_versions, self._new_resources = [], []
            self._new_index = defaultdict(list)
        if self._staged:
            staged, self._staged = self._staged, defaultdict(list)
            for table, rows in staged.items():
                if rows:
                    self._connection.execute(insert(table), rows)

    def stage(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` into ``table`` with the next batch, in this transaction."""
        self._staged[table].extend(rows)

    def lock(self, key: str) -> None:
        """Hold a lock on ``key`` until this transaction ends (PostgreSQL; SQLite is serialised).

        A lock reads nothing this transaction wrote, so the pending inserts are not sent for it."""
        if key in self._locked:
            return
        self._locked.add(key)
        if self._connection.dialect.name == "postgresql":
            digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
            self._connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": digest})

    def lock_current(self, keys: list[tuple[str, str]]) -> None:
        """Lock the resources ``keys`` (type, id), in a fixed order so two transactions cannot
        deadlock, and read their current versions in one statement per type: a transaction Bundle
        of many updates then costs no read per entry, and its new resources stay batched."""
        keys = sorted(set(keys) - self._known.keys())
        for res_type, res_id in keys:
            self.lock(f"{res_type}/{res_id}")
        by_type: dict[str, list[str]] = defaultdict(list)
        for res_type, res_id in keys:
            by_type[res_type].append(res_id)
            self._known[(res_type, res_id)] = None
        connection = self.connection
        for res_type, ids in by_type.items():
            for start in range(0, len(ids), _READ_AHEAD):
                chunk = ids[start : start + _READ_AHEAD]
                for row in connection.execute(_SELECT_CURRENTS, {"res_type": res_type, "res_ids": chunk}):
                    self._known[(row.res_type, row.res_id)] = Version(*row)

    def current(self, res_type: str, res_id: str) -> Version | None:
        """The newest version (possibly a delete), or None when the resource never existed."""
        key = (res_type, res_id)
        if key in self._known:
            return self._known[key]
        row = first_row(self.connection, _SELECTCURRENT, {"res_type": res_type, "res_id": res_id})
        return Version(*row) if row else None

    def version(self, res_type: str, res_id: str, version: int) -> Version | None:
        if not 0 < version <= MAX_VERSION:
            return None  # no such version can exist; the database would refuse the number
        row = first_row(self.connection, _SELECT_VERSION, {"res_type": res_type, "res_id": res_id, "version": version})
        return Version(*row) if row else None

    def exists(self, res_type: str, res_id: str) -> bool:
        """Whether any version of the resource was ever stored (deleted ones included)."""
        return first_row(self.connection, _SELECT_EXISTS, {"res_type": res_type, "res_id": res_id}) is not None

    def write(self, version: Version, index: list[IndexRow], resource: dict[str, Any] | None = None) -> None:
        """Store ``version`` as the new current version of its resource, with its index rows.

        ``resource`` is the body as a dict, handed to ``version_written`` listeners so they need
        not parse it again.
        """
        row = {
            "res_type": version.res_type,
            "res_id": version.res_id,
            "version": version.version,
            "last_updated": version.last_updated,
            "deleted": version.deleted,
        }
        self._known.pop((version.res_type, version.res_id), None)
        version_row = {**row, "method": version.method, "status": version.status, "body": version.body}
        if version.version == 1:
            self._new_versions.append(version_row)
            self._new_resources.append(row)
            add_rows(self._new_index, version.res_type, version.res_id, index)
        else:
            self._write_change(version, version_row, index)
        if self.referential_integrity and version.res_type not in RECORD_TYPES:
            source = (version.res_type, version.res_id)
            if version.deleted:
                self._deleted.add(source)
            for row_of_index in index:
                if isinstance(row_of_index, ReferenceRow) and row_of_index.target_type and row_of_index.target_id:
                    self._referenced.setdefault((row_of_index.target_type, row_of_index.target_id), source)
        self.written.append((version, index))
        if self.sender is not None and version_written.receivers:
            version_written.send(self.sender, tx=self, version=version, resource=resource)

    def _write_change(self, version: Version, version_row: dict[str, Any], index: list[IndexRow]) -> None:
        """A new version of an existing resource, written at once: its resource row must be the
        version before, or a concurrent writer got there first."""
        self.connection.execute(_INSERT_VERSION, version_row)
        if (
            self.connection.execute(
                _UPDATE_RESOURCE,
                {
                    "version": version.version,
                    "last_updated": version.last_updated,
                    "deleted": version.deleted,
                    "key_type": version.res_type,
                    "key_id": version.res_id,
                    "previous": version.version - 1,
                },
            ).rowcount
            != 1
        ):
            raise Conflict(f"{version.res_type}/{version.res_id} was changed by a concurrent request; retry")
        replace_index(self._connection, version.res_type, version.res_id, index, fresh=False)

    def check_integrity(self) -> None:
        """Refuse dangling local references (422) and deletes of referenced resources (409)."""
        if self._referenced and self.deferred_targets is not None:
            deferred, referenced = self.deferred_targets, dict(self._referenced)
            # Only what is committed is left to check.
            self.after_commit(lambda: _defer(deferred, referenced))
        elif self._referenced:
            missing = self.missing(list(self._referenced))
            if missing:
                target = missing[0]
                source = self._referenced[target]
                raise Unprocessable(
                    f"{source[0]}/{source[1]} refers to {target[0]}/{target[1]}, which does not exist"
                    + (f" (and {len(missing) - 1} more missing references)" if len(missing) > 1 else "")
                )
        for target in sorted(self._deleted):
            referrer = referrer_of(self.connection, target)
            if referrer is not None:
                raise StillReferenced(
                    f"{target[0]}/{target[1]} cannot be deleted: {referrer[0]}/{referrer[1]} refers to it",
                    target=f"{target[0]}/{target[1]}",
                )

    def missing(self, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Which of ``keys`` (type, id) name no live resource, in order."""
        return sorted(set(keys) - live_keys(self.connection, keys))

    def search(self, query: Search, base: str) -> Page:
        """One page of the resources ``query`` matches (R4 search.html)."""
        return search.search(self.connection, query, base)

    def included(self, query: Search, matches: list[Version]) -> list[Version]:
        """The resources ``_include`` and ``_revinclude`` add to a page of ``matches``."""
        return search.included(self.connection, query, matches)

    def history(
        self,
        res_type: str | None,
        res_id: str | None,
        *,
        since: datetime | None,
        at: tuple[datetime, datetime] | None,
        count: int,
        after: tuple[datetime, int] | None,
        with_total: bool,
        types: tuple[str, ...] | None = None,
        compartment: str | None = None,
        held: tuple[str, ...] | None = None,
    ) -> HistoryPage:
        """Versions newest first (R4 http.html#history); ``after`` is the keyset cursor.

        ``types`` limits a system history to those types; ``compartment`` to the versions of the
        resources now in that Patient's compartment (a patient-context credential's history),
        only for the ``held`` types when given (a credential with user scopes on others).
        """
        v = resource_version
        conditions = []
        if res_type is not None:
            conditions.append(v.c.res_type == res_type)
        else:
            conditions.append(v.c.res_type.not_in(AUDIT_TYPES))
        if types is not None:
            conditions.append(v.c.res_type.in_(types))
        if compartment is not None:
            members = compartment_members(InCompartment(compartment))
            member = tuple_(v.c.res_type, v.c.res_id).in_(select(members.c.res_type, members.c.res_id))
            conditions.append(member if held is None else or_(v.c.res_type.not_in(held), member))
        if res_id is not None:
            conditions.append(v.c.res_id == res_id)
        if since is not None:
            conditions.append(v.c.last_updated >= since)
        if at is not None:
            # Current at some point in [start, end): written before the end, and not replaced
            # by a later version before the start.
            start, end = at
            later = v.alias("later")
            conditions.append(v.c.last_updated < end)
            conditions.append(
                ~exists().where(
                    later.c.res_type == v.c.res_type,
                    later.c.res_id == v.c.res_id,
                    later.c.version > v.c.version,
                    later.c.last_updated <= start,
                )
            )
        total = None
        if with_total:
            total = self.connection.execute(select(func.count()).select_from(v).where(*conditions)).scalar_one()
        if after is not None:
            conditions.append(tuple_(v.c.last_updated, v.c.seq) < tuple_(*after))
        rows = self.connection.execute(
            select(*columns(v)).where(*conditions).order_by(v.c.last_updated.desc(), v.c.seq.desc()).limit(count)
        ).all()
        return HistoryPage([Version(*row) for row in rows], total)


def _defer(
    deferred: dict[tuple[str, str], tuple[str, str]], referenced: dict[tuple[str, str], tuple[str, str]]
) -> None:
    """Add a committed transaction's references (target -> referrer) to a load's deferred check."""
    for target, source in referenced.items():
        deferred.setdefault(target, source)
