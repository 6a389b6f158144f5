"""A live server per real-client module. Not one per package: this folder is no Python package,
so pytest would keep a package-scoped server to the session's end, and on PostgreSQL its Digital
Doctor would go on claiming the queue rows of later tests in the shared database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.live_server import LiveServer, make_token


@dataclass(frozen=True)
class Live:
    """Where the server answers and a ``system/*.cruds`` token for it."""

    base: str
    token: str


@pytest.fixture(scope="module")
def live(module_database_url: str) -> Iterator[Live]:
    url = module_database_url
    token = make_token(url)
    server = LiveServer(url).start()
    try:
        yield Live(server.base, token)
    finally:
        server.stop()
