"""Engines and schema migrations for the embedded SQLite default and PostgreSQL.

SQLite runs in WAL mode so readers never wait for the writer; write transactions start with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing mid-transaction.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError

from fhir_twin.store.driver import driver_cursor

MIGRATIONS = str(Path(__file__).with_name("migrations"))
# The newest migration's revision (tests/store/test_migrations.py checks it is alembic's head): a
# database already there is served without loading alembic and its templates (about 11 MB a process).
HEAD = "0019"
# Any constant works; it keeps two server processes from migrating one PostgreSQL at once.
_MIGRATION_LOCK = 7_424_131_001


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        """Refuse a pooled connection the server has closed, so the pool opens a new one.

        A pooled connection sits between transactions with nothing sent to it, so its socket has
        something to read only when the server spoke first: a backend that is terminated or shut
        down (a restart) says so and closes the socket. Looking costs no round trip, where a ping
        (``pool_pre_ping``) costs one on every checkout, and checkouts are most of a read's.
        """
        if dbapi_connection.closed or _readable(dbapi_connection.fileno()):
            raise DisconnectionError("the server closed this pooled connection")


def _readable(descriptor: int) -> bool:
    """Whether a read from ``descriptor`` would not block (data, or the peer closed it)."""
    poll = select.poll()
    poll.register(descriptor, select.POLLIN)
    return bool(poll.poll(0))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-16384")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # On the driver: SQLAlchemy's execution of the statement cost more than SQLite's.
        statement = "BEGIN IMMEDIATE" if connection.get_execution_options().get("fhir_write", False) else "BEGIN"
        with driver_cursor(connection, statement) as cursor:
            cursor.execute(statement)


# Pages of write-ahead log (about 40 MB) past which a commit checkpoints it: a server process's
# thread does so every 0.1 s (``store.wal_checkpoint``), off the write gate; this bounds the log
# where none runs.
WAL_BACKSTOP = 10_000


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    with engine.connect() as connection:
        if _revision(connection) == HEAD:
            return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.connect().execution_options(fhir_write=True) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _revision(connection: Connection) -> str | None:
    """The revision alembic recorded, None before the first migration."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


class WriteGate:
    """Queues SQLite writers: a thread lock within the process and ``flock`` on a file beside the
    database across processes.

    SQLite admits one writer at a time and makes the others poll with growing sleeps; a writer
    waiting on these locks wakes the moment the previous one commits instead. The lock file is
    opened per transaction, so forked workers never share one open file (and its lock); a process
    forked while one of its threads holds the lock (serve's master writes device readings and
    websocket pings while it forks server processes) closes its copy at once, or the flock, which
    belongs to the open file both hold, would stay held as long as the child lives.
    """

    def __init__(self, database: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = Path(database).expanduser().with_name(Path(database).name + ".write-lock") if database else None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._path is None:
            return
        try:
            self._file = open(self._path, "ab")
            _HELD.add(self._file)
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._close()
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            self._close()  # closing releases the flock
        finally:
            self._thread_lock.release()

    def _close(self) -> None:
        if self._file is not None:
            _HELD.discard(self._file)
            self._file.close()
            self._file = None


# The lock files open in this process; a forked child closes its copies (``WriteGate``).
_HELD: set[IO[bytes]] = set()


def _close_inherited() -> None:
    for file in list(_HELD):
        file.close()
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited)


def write_gate(engine: Engine) -> AbstractContextManager[Any]:
    """The gate write transactions pass through: a ``WriteGate`` on SQLite, none on PostgreSQL,
    whose row and advisory locks already queue writers without polling."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    database = engine.url.database
    return WriteGate(database if database and database != ":memory:" else None)
