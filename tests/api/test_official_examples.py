"""The official R4 examples round-trip through create and read unchanged, decimals and all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import simplejson
from flask.testing import FlaskClient

from tests.factories import OFFICIAL_EXAMPLES

SERVER_META = ("versionId", "lastUpdated")


def comparable(text: str | bytes) -> str:
    """The resource without id and server-owned meta, as canonical text that keeps decimal digits."""
    value = simplejson.loads(text, use_decimal=True)
    value.pop("id", None)
    meta = {k: v for k, v in value.pop("meta", {}).items() if k not in SERVER_META}
    if meta:
        value["meta"] = meta
    return simplejson.dumps(value, use_decimal=True, sort_keys=True)


def test_examples_are_present() -> None:
    assert len(OFFICIAL_EXAMPLES) > 100


@pytest.fixture
def client(make_app: Any) -> FlaskClient:
    """The examples refer to resources they do not include: referential integrity is off."""
    return make_app(referential_integrity=False).test_client()


@pytest.mark.parametrize("path", OFFICIAL_EXAMPLES, ids=[path.stem for path in OFFICIAL_EXAMPLES])
def test_official_example_round_trips(client: FlaskClient, path: Path) -> None:
    sent = path.read_bytes()
    resource_type = simplejson.loads(sent)["resourceType"]
    created = client.post(f"/fhir/{resource_type}", data=sent, content_type="application/fhir+json")
    assert created.status_code == 201, created.get_json()
    read = client.get(created.headers["Location"].removeprefix("http://localhost"))
    assert read.status_code == 200
    assert comparable(read.data) == comparable(sent)
