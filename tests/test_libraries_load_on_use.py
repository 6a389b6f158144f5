"""A server in the default authentication mode on a database already migrated loads neither PyJWT
(with cryptography) nor alembic: each is about 10 MB in every process of a server that never uses it."""

from __future__ import annotations

import os
import subprocess
import sys

from fhir_twin.store.database import make_engine, migrate

PROBE = """
import sys
from fhir_twin.app import create_app
app = create_app({{"database_url": {url!r}, "auth_mode": "tokens"}})
print("STATUS", app.test_client().get("/fhir/metadata").status_code)
print("LOADED", *sorted({{name.split(".")[0] for name in sys.modules}} & {{"alembic", "jwt", "cryptography"}}))
"""


def test_a_tokens_server_on_a_migrated_database_loads_neither_jwt_nor_alembic(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(url=database_url)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=os.environ,
    )
    assert "STATUS 200" in done.stdout, done.stdout + done.stderr
    assert done.stdout.rsplit("LOADED", 1)[1].split() == []
