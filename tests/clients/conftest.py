"""A live server per real-client module. Not one per package: this folder is no Python package,
so pytest would keep a package-scoped server to the session's end, and on PostgreSQL its Digital
Doctor would go on claiming the queue rows of later tests in the shared database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import empty_postgres
from tests.live_server import LiveServer, make_token


@dataclass(frozen=True)
class Live:
    """Where the server answers and a ``system/*.cruds`` token for it."""

    base: str
    token: str


@pytest.fixture(scope="module")
def live(postgres_database: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if postgres_database is None:
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('live')) / 'fhir-twin.db'}"
    else:
        empty_postgres(postgres_database)
        url = postgres_database
    token = make_token(url)
    server = LiveServer(url).start()
    try:
        yield Live(server.base, token)
    finally:
        server.stop()
