"""SQLite's write-ahead log is checkpointed by a server process's thread, not by the commits that
every writer queues behind, and stays bounded with or without that thread."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from fhir_twin.app import services_of
from fhir_twin.store import wal_checkpoint
from fhir_twin.store.database import WAL_BACKSTOP
from fhir_twin.store.repository import Repository
from fhir_twin.store.wal_checkpoint import RESTART_FROM, WalCheckpointer


def _sqlite_file(url: str) -> Path:
    if not url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no write-ahead log of the server's to checkpoint")
    return Path(url.removeprefix("sqlite:///"))


def _log(database: Path) -> tuple[int, int]:
    """(pages in the log, pages of it copied back), read from the WAL-index header and its
    checkpoint information (sqlite.org/walformat.html, "The WAL-Index File Format": ``mxFrame``
    at byte 16, ``nBackfill`` at byte 96, in the machine's own byte order). Read by another
    process: closing a descriptor of the file in this one would drop the locks this process's
    SQLite connections hold on it."""
    read = subprocess.run(
        [sys.executable, "-c", _READ_INDEX, str(database.with_name(database.name + "-shm"))],
        capture_output=True,
        text=True,
        check=True,
    )
    pages, copied = read.stdout.split()
    return int(pages), int(copied)


_READ_INDEX = """
import struct, sys
header = open(sys.argv[1], "rb").read(100)
print(struct.unpack_from("=I", header, 16)[0], struct.unpack_from("=I", header, 96)[0])
"""


def _write_pages(repository: Repository, transactions: int, pages: int = 50) -> None:
    """Commit ``transactions`` write transactions of about ``pages`` pages of log each."""
    with repository.engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS bulk (n INTEGER PRIMARY KEY, body BLOB)"))
    for _ in range(transactions):
        with repository.transaction(write=True) as tx:
            tx.connection.execute(text("INSERT INTO bulk (body) VALUES (randomblob(:size))"), {"size": pages * 4000})


def test_commits_leave_the_log_to_the_checkpointer(repository: Repository, database_url: str) -> None:
    """Commits past SQLite's default of 1,000 pages copy nothing back (they would, holding the
    write gate); the thread's pass copies it all, and the next write starts the log over."""
    database = _sqlite_file(database_url)
    _write_pages(repository, 40)  # about 2,000 pages
    pages, copied = _log(database)
    assert 1_500 < pages < WAL_BACKSTOP
    assert copied == 0

    checkpointer = WalCheckpointer(repository)
    try:
        checkpointer.run_pass("test", lambda: False)
    finally:
        checkpointer.own.engine.dispose()
    assert _log(database) == (pages, pages)

    _write_pages(repository, 1)
    assert _log(database)[0] < 100


def test_without_a_checkpointer_the_log_is_bounded(repository: Repository, database_url: str) -> None:
    """A process running no checkpointer (a CLI command) still has its commits checkpoint, past
    ``WAL_BACKSTOP`` pages, and the log starts over."""
    database = _sqlite_file(database_url)
    _write_pages(repository, 18, pages=500)  # about 9,000 pages, in few commits
    most = _log(database)[0]
    assert most < WAL_BACKSTOP
    for _ in range(80):
        _write_pages(repository, 1)
        most = max(most, _log(database)[0])
    assert WAL_BACKSTOP <= most < WAL_BACKSTOP + 600
    assert _log(database)[0] < most


def test_a_long_log_is_finished_holding_the_write_gate(
    repository: Repository, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When writers added pages while the pass copied (so the log could never start over), the
    rest is copied with the write gate held: no writer adds more meanwhile."""
    database = _sqlite_file(database_url)
    lock_file = database.with_name(database.name + ".write-lock")
    calls: list[bool] = []
    real = wal_checkpoint.checkpoint

    def checkpoint(own: Repository) -> tuple[int, int, int]:
        with open(lock_file, "ab") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                calls.append(True)
            else:
                fcntl.flock(probe, fcntl.LOCK_UN)
                calls.append(False)
        busy, pages, copied = real(own)
        # The first pass answers as if writers had added pages while it copied.
        return (busy, pages, copied - 1) if len(calls) == 1 else (busy, pages, copied)

    monkeypatch.setattr(wal_checkpoint, "checkpoint", checkpoint)
    _write_pages(repository, 2 * RESTART_FROM // 50)
    checkpointer = WalCheckpointer(repository)
    try:
        checkpointer.run_pass("test", lambda: False)
        assert calls == [False, True]
        # A log too short to need starting over is copied beside the writers only.
        _write_pages(repository, 2)
        calls.clear()
        checkpointer.run_pass("test", lambda: False)
        assert calls == [False]
    finally:
        checkpointer.own.engine.dispose()
    pages, copied = _log(database)
    assert pages == copied < RESTART_FROM


def test_a_server_process_checkpoints_on_sqlite_only(make_app: Any, database_url: str) -> None:
    """The server's thread runs beside the others; PostgreSQL, which checkpoints by itself, has none."""
    app = make_app()
    services = services_of(app)
    if not database_url.startswith("sqlite"):
        assert services.checkpointer is None
        return
    database = _sqlite_file(database_url)
    checkpointer = services.checkpointer
    assert checkpointer is not None and checkpointer in services.workers
    client = app.test_client()
    created = client.post("/fhir/Basic", json={"resourceType": "Basic", "code": {"text": "first"}})
    assert created.status_code == 201
    assert checkpointer.running
    _write_pages(services.repository, 20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pages, copied = _log(database)
        if pages == copied:
            break
        time.sleep(0.05)
    assert pages == copied and pages > 0
