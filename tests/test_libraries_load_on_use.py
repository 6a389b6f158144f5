"""Heavy libraries load only in the processes that use them, each probed in a fresh interpreter:

- numpy, pandas and scikit-learn only where a learned model is trained, evaluated or run, so a
  server with none active serves, scores and lists its models without them (hundreds of MB in
  every worker otherwise);
- PyJWT (with cryptography) only in a server that verifies JWTs, and alembic only to migrate a
  database: each is about 10 MB in every process of a server that never uses it;
- requests (about 5 MB) only when a rest-hook notification is sent or a CDS Hooks prefetch is read
  from a client's FHIR server, and paho only in a server with a device bridge.
"""

from __future__ import annotations

import os
import subprocess
import sys

from fhir_twin.store.database import make_engine, migrate

LEARNING = """
import sys
from fhir_twin.app import create_app
app = create_app({{"database_url": {url!r}, "auth_mode": "none", "audit": False}})
client = app.test_client()
created = client.post("/fhir/Patient", json={{"resourceType": "Patient", "birthDate": "1960-02-03"}})
patient = created.headers["Location"].split("/Patient/")[1].split("/")[0]
print("STATUS", created.status_code,
      client.post(f"/fhir/Patient/{{patient}}/$predict").status_code,
      client.get("/twin/models").status_code)
print("LOADED", *sorted(name for name in ("numpy", "pandas", "sklearn") if name in sys.modules))
"""

SECURITY_AND_MIGRATIONS = """
import sys
from fhir_twin.app import create_app
app = create_app({{"database_url": {url!r}, "auth_mode": "tokens"}})
print("STATUS", app.test_client().get("/fhir/metadata").status_code)
heavy = {{"alembic", "jwt", "cryptography", "requests", "paho"}}
print("LOADED", *sorted({{name.split(".")[0] for name in sys.modules}} & heavy))
"""


def probe(code: str, database_url: str) -> tuple[str, list[str]]:
    """The probe's ``STATUS`` line and the libraries it found loaded."""
    done = subprocess.run(
        [sys.executable, "-c", code.format(url=database_url)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=os.environ,
    )
    status = next((line for line in done.stdout.splitlines() if line.startswith("STATUS")), done.stderr)
    return status, done.stdout.rsplit("LOADED", 1)[1].split()


def test_a_server_without_an_active_learned_model_does_not_load_them(database_url: str) -> None:
    status, loaded = probe(LEARNING, database_url)
    assert status == "STATUS 201 200 200"
    assert loaded == []


def test_a_tokens_server_on_a_migrated_database_loads_no_jwt_alembic_requests_or_paho(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    status, loaded = probe(SECURITY_AND_MIGRATIONS, database_url)
    assert status == "STATUS 200"
    assert loaded == []
