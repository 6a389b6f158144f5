"""numpy, pandas and scikit-learn load only where a learned model is trained, evaluated or run: a
server with none active serves, scores and lists its models without them (hundreds of MB in every
worker otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
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


def test_a_server_without_an_active_learned_model_does_not_load_them(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(url=database_url)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=os.environ,
    )
    assert "STATUS 201 200 200" in done.stdout, done.stdout + done.stderr
    assert done.stdout.rsplit("LOADED", 1)[1].split() == []
