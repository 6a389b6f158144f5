"""``fhir-twin reindex`` rebuilds the search index and never claims success with rows missing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner
from flask.testing import FlaskClient

from fhir_twin import cli
from fhir_twin.store import reindex as store_reindex


@pytest.fixture
def client(make_app: Any) -> FlaskClient:
    """Without the audit trail, whose AuditEvents would be reindexed too."""
    return make_app(audit=False).test_client()


def _patients(client: FlaskClient) -> None:
    for number in range(3):
        resource = {"resourceType": "Patient", "id": f"p{number}", "name": [{"family": f"Family{number}"}]}
        assert client.put(f"/fhir/Patient/p{number}", json=resource).status_code == 201
    assert (
        client.put(
            "/fhir/Organization/o1", json={"resourceType": "Organization", "id": "o1", "name": "Org"}
        ).status_code
        == 201
    )


def test_reindex_restores_a_lost_index(client: FlaskClient, database_url: str) -> None:
    _patients(client)
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM idx_string")
    engine.dispose()
    assert client.get("/fhir/Patient?name=family1").get_json()["total"] == 0

    result = CliRunner().invoke(cli.main, ["reindex", "--database", database_url])
    assert result.exit_code == 0, result.output
    assert "indexed 4 resources of 2 types" in result.output
    assert client.get("/fhir/Patient?name=family1").get_json()["total"] == 1


def test_reindex_one_type(client: FlaskClient, database_url: str) -> None:
    _patients(client)
    result = CliRunner().invoke(cli.main, ["reindex", "--type", "Organization", "--database", database_url])
    assert result.exit_code == 0, result.output
    assert "indexed 1 resources of 1 types" in result.output


def test_reindex_refuses_unknown_type(database_url: str) -> None:
    result = CliRunner().invoke(cli.main, ["reindex", "--type", "Nonsense", "--database", database_url])
    assert result.exit_code == 2
    assert "unknown resource type 'Nonsense'" in result.output


def test_reindex_reports_missing_rows_as_failure(
    client: FlaskClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patients(client)

    def short(engine: Any, types: list[str], progress: Any) -> dict[str, int]:
        return {name: 0 for name in types}

    monkeypatch.setattr(store_reindex, "reindex", short)
    result = CliRunner().invoke(cli.main, ["reindex", "--database", database_url])
    assert result.exit_code == 1
    assert "the index is incomplete" in result.output
    assert "Patient: 3 not indexed" in result.output
