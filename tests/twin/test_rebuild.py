"""Rebuilding the twin from history gives exactly the facts live sync kept, past states included,
so ``fhir-twin twin rebuild`` can repair or backfill a twin without changing what any past
``recorded`` shows; and ``recorded`` reads the twin as the server held it at the end of the time
it names."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import simplejson
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from werkzeug.test import TestResponse

from fhir_twin import cli
from fhir_twin.app import services_of
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.store.twin_facts import CASE_COLUMNS, MEASUREMENT_COLUMNS, fact_table_rows

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
JSON_PATCH = "application/json-patch+json"
PATIENTS = ("p1", "p2", "p3")
COLUMNS = {"twin_measurement": MEASUREMENT_COLUMNS, "twin_case": CASE_COLUMNS}
TABLES = tuple(COLUMNS)
SNAPSHOT_FIELDS = ("heart_rate", "glucose", "systolic_bp", "body_temperature", "smoking_status")

Resource = dict[str, Any]


def send(
    client: FlaskClient, method: str, url: str, body: Any = None, content_type: str = "application/fhir+json"
) -> TestResponse:
    """A write that must succeed; the body is sent with its decimals exactly as written."""
    data = None if body is None else simplejson.dumps(body, use_decimal=True)
    response = client.open(url, method=method, data=data, content_type=content_type)
    assert response.status_code in (200, 201, 204), (method, url, body, response.get_json())
    return response


def facts(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    with services_of(app).repository.engine.connect() as connection:
        return fact_table_rows(connection)


def execute(app: Flask, statement: str) -> None:
    with services_of(app).repository.engine.begin() as connection:
        connection.execute(text(statement))


def column(rows: list[tuple[Any, ...]], table: str, name: str) -> list[Any]:
    position = COLUMNS[table].index(name)
    return [row[position] for row in rows]


def patient_rows(rows: dict[str, list[tuple[Any, ...]]], patient_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of one patient."""
    return {
        table: [
            row for row, owner in zip(found, column(found, table, "patient_id"), strict=True) if owner == patient_id
        ]
        for table, found in rows.items()
    }


def source(row: tuple[Any, ...]) -> str:
    """``Type/id`` of the resource a fact row comes from (the same columns in both tables)."""
    position = MEASUREMENT_COLUMNS.index("res_type")
    assert CASE_COLUMNS.index("res_type") == position and MEASUREMENT_COLUMNS[position + 1] == "res_id"
    return f"{row[position]}/{row[position + 1]}"


class History:
    """A seeded random life of three patients' mapped resources, written through the FHIR API."""

    def __init__(self, client: FlaskClient, seed: int) -> None:
        self.client = client
        self.random = random.Random(seed)
        # "Type/id" -> type, in the order written: choices never depend on server-made ids.
        self.live: dict[str, str] = {}
        self.deleted: dict[str, str] = {}
        self.serial = 0
        self.snapshots: list[tuple[str, dict[str, Any]]] = []  # (instant, what the twin API showed)

    # Resource bodies -------------------------------------------------------------------------

    def _when(self) -> str:
        moment = datetime(2024, 1, 1) + timedelta(minutes=self.random.randrange(0, 60 * 24 * 200))
        return moment.strftime("%Y-%m-%dT%H:%M:00Z")

    def _decimal(self, low: int, high: int, places: int = 1) -> Decimal:
        """A decimal with its trailing zeros kept (``72.0``), as a client may send it."""
        return Decimal(self.random.randint(low * 10**places, high * 10**places)).scaleb(-places)

    def _subject(self) -> Resource:
        return {"reference": f"Patient/{self.random.choice(PATIENTS)}"}

    def observation(self, res_id: str) -> Resource:
        status = self.random.choice(["final"] * 5 + ["amended", "corrected", "preliminary", "registered"])
        base: Resource = {"resourceType": "Observation", "id": res_id, "status": status, "subject": self._subject()}
        when = self._when()
        if self.random.random() < 0.15:
            base["effectivePeriod"] = {"start": when}
        else:
            base["effectiveDateTime"] = when
        kind = self.random.choice(["heart_rate", "glucose", "temperature", "panel", "smoking", "unmapped"])
        if kind == "heart_rate":
            # Now and then implausible, so flagged points take part too.
            value = self._decimal(40, 140) if self.random.random() < 0.75 else Decimal(900)
            return {**base, "code": _code(LOINC, "8867-4"), "valueQuantity": _quantity(value, "/min")}
        if kind == "glucose":
            unit = self.random.choice(["mg/dL", "mmol/L", "g/L"])  # g/L has no conversion: flagged
            value = self._decimal(70, 250) if unit == "mg/dL" else self._decimal(3, 15, 2)
            return {**base, "code": _code(LOINC, "2339-0"), "valueQuantity": _quantity(value, unit)}
        if kind == "temperature":
            unit = self.random.choice(["Cel", "[degF]"])
            value = self._decimal(36, 40) if unit == "Cel" else self._decimal(97, 104)
            return {**base, "code": _code(LOINC, "8310-5"), "valueQuantity": _quantity(value, unit)}
        if kind == "panel":
            components = [
                {"code": _code(LOINC, "8480-6"), "valueQuantity": _quantity(self._decimal(95, 180, 0), "mm[Hg]")},
                {"code": _code(LOINC, "8462-4"), "valueQuantity": _quantity(self._decimal(55, 110, 0), "mm[Hg]")},
            ]
            return {**base, "code": _code(LOINC, "85354-9"), "component": components}
        if kind == "smoking":
            answer = self.random.choice(["266919005", "8517006", "449868002", "1234567"])
            return {**base, "code": _code(LOINC, "72166-2"), "valueCodeableConcept": _code(SNOMED, answer)}
        return {**base, "code": _code(LOINC, "718-7"), "valueQuantity": _quantity(self._decimal(10, 17), "g/dL")}

    def condition(self, res_id: str) -> Resource:
        verification = self.random.choice(["confirmed"] * 4 + ["provisional", "refuted", "entered-in-error"])
        body: Resource = {
            "resourceType": "Condition",
            "id": res_id,
            "verificationStatus": _code("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification),
            "code": _code(SNOMED, self.random.choice(["44054006", "38341003", "195662009", "10509002"])),
            "subject": self._subject(),
            "onsetDateTime": self._when(),
        }
        if verification != "entered-in-error":
            clinical = self.random.choice(["active", "recurrence", "remission", "resolved"])
            body["clinicalStatus"] = _code("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical)
            if clinical in ("remission", "resolved") and self.random.random() < 0.5:
                body["abatementDateTime"] = self._when()
        return body

    def encounter(self, res_id: str) -> Resource:
        status = self.random.choice(["finished"] * 3 + ["planned", "in-progress", "cancelled", "entered-in-error"])
        start = self._when()
        return {
            "resourceType": "Encounter",
            "id": res_id,
            "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [_code(SNOMED, self.random.choice(["185349003", "162673000", "50849002"]))],
            "subject": self._subject(),
            "period": {"start": start, "end": start.replace(":00Z", ":45Z")},
        }

    def body_of(self, res_type: str, res_id: str) -> Resource:
        maker: Callable[[str], Resource] = {
            "Observation": self.observation,
            "Condition": self.condition,
            "Encounter": self.encounter,
        }[res_type]
        return maker(res_id)

    # Operations -----------------------------------------------------------------------------

    def create(self) -> None:
        res_type = self.random.choice(["Observation"] * 3 + ["Condition", "Encounter"])
        self.serial += 1
        res_id = f"{res_type[0].lower()}{self.serial}"
        body = self.body_of(res_type, res_id)
        if self.random.random() < 0.5:
            del body["id"]
            res_id = send(self.client, "POST", f"/fhir/{res_type}", body).get_json()["id"]
        else:
            send(self.client, "PUT", f"/fhir/{res_type}/{res_id}", body)
        self.live[f"{res_type}/{res_id}"] = res_type

    def update(self) -> None:
        key = self.random.choice(list(self.live))
        res_type, res_id = key.split("/")
        send(self.client, "PUT", f"/fhir/{key}", self.body_of(res_type, res_id))

    def change_status(self) -> None:
        candidates = [key for key, res_type in self.live.items() if res_type != "Condition"]
        if not candidates:
            self.create()
            return
        key = self.random.choice(candidates)
        statuses = {
            "Observation": ["final", "amended", "corrected", "preliminary", "entered-in-error", "cancelled"],
            "Encounter": ["finished", "in-progress", "cancelled", "entered-in-error"],
        }[self.live[key]]
        operations = [{"op": "replace", "path": "/status", "value": self.random.choice(statuses)}]
        send(self.client, "PATCH", f"/fhir/{key}", operations, JSON_PATCH)

    def change_value(self) -> None:
        candidates = [key for key, res_type in self.live.items() if res_type == "Observation"]
        key = self.random.choice(candidates) if candidates else None
        body = self.client.get(f"/fhir/{key}").get_json() if key else None
        if body is None or "valueQuantity" not in body:
            self.create()
            return
        operations = [{"op": "replace", "path": "/valueQuantity/value", "value": self._decimal(50, 120, 2)}]
        send(self.client, "PATCH", f"/fhir/{key}", operations, JSON_PATCH)

    def delete(self) -> None:
        key = self.random.choice(list(self.live))
        send(self.client, "DELETE", f"/fhir/{key}")
        self.deleted[key] = self.live.pop(key)

    def resurrect(self) -> None:
        if not self.deleted:
            self.create()
            return
        key = self.random.choice(list(self.deleted))
        res_type, res_id = key.split("/")
        send(self.client, "PUT", f"/fhir/{key}", self.body_of(res_type, res_id))
        self.live[key] = self.deleted.pop(key)

    def step(self) -> None:
        operation = self.random.choices(
            [self.create, self.update, self.change_status, self.change_value, self.delete, self.resurrect],
            weights=[30, 28, 12, 8, 15, 7],
        )[0]
        (operation if self.live else self.create)()

    def current_subject(self, key: str) -> str:
        return str(self.client.get(f"/fhir/{key}").get_json()["subject"]["reference"])

    def subjects(self, key: str) -> set[str]:
        """Every patient any version of ``key`` was about, read from its history."""
        versions = self.client.get(f"/fhir/{key}/_history").get_json()["entry"]
        return {
            entry["resource"]["subject"]["reference"].removeprefix("Patient/")
            for entry in versions
            if "resource" in entry
        }

    def versions(self) -> int:
        """How many versions of mapped types the server holds (what a full rebuild reads)."""
        return sum(
            self.client.get(f"/fhir/{res_type}/_history?_count=1").get_json()["total"]
            for res_type in ("Observation", "Condition", "Encounter")
        )


def _code(system: str, code: str) -> Resource:
    return {"coding": [{"system": system, "code": code}]}


def _quantity(value: Decimal, unit: str) -> Resource:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def heart_rate_o1(value: int) -> Resource:
    """Observation o1: p1's heart rate ``value`` /min, measured 2024-03-01 08:00 UTC."""
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": _code(LOINC, "8867-4"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-01T08:00:00Z",
        "valueQuantity": _quantity(Decimal(value), "/min"),
    }


def snapshot(client: FlaskClient, recorded: str | None = None) -> dict[str, Any]:
    """What the twin API shows of every patient (now, or as the server held it at
    ``recorded``), minus what depends on the reference time (staleness)."""
    params = {"recorded": recorded} if recorded else {}
    shown: dict[str, Any] = {}
    for patient_id in PATIENTS:
        response = client.get(f"/twin/patients/{patient_id}", query_string=params)
        assert response.status_code == 200, response.get_json()
        twin = response.get_json()
        for state in twin["body"].values():
            state.pop("stale")
        shown[patient_id] = {"body": twin["body"], "case": twin["case"], "quality": twin["quality"]}
        for name in SNAPSHOT_FIELDS:
            series = client.get(f"/twin/patients/{patient_id}/series/{name}", query_string=params)
            assert series.status_code == 200, series.get_json()
            shown[patient_id][name] = series.get_json()["points"]
    return shown


@pytest.fixture
def history(app: Flask) -> History:
    """Three patients and 150 random writes of their Observations, Conditions and Encounters."""
    client = app.test_client()
    for patient_id in PATIENTS:
        send(client, "PUT", f"/fhir/Patient/{patient_id}", {"resourceType": "Patient", "id": patient_id})
    story = History(client, seed=20240501)
    for number in range(150):
        story.step()
        if number % 30 == 29:
            # What the twin shows now must be what ``recorded`` shows of this moment later on. The
            # moment is a millisecond after the last write and before the next one.
            time.sleep(0.003)
            moment = format_instant(now())
            story.snapshots.append((moment, snapshot(client)))
            time.sleep(0.003)
    return story


def test_the_random_history_covers_what_rebuild_must_reproduce(app: Flask, history: History) -> None:
    """The comparison below is only as good as the history: it has past and present rows of
    every kind, flagged and converted values, for all three patients."""
    rows = facts(app)
    for table in TABLES:
        valid_to = column(rows[table], table, "valid_to")
        assert None in valid_to and any(end is not None for end in valid_to), table
        assert set(column(rows[table], table, "patient_id")) == set(PATIENTS), table
    flags = set(column(rows["twin_measurement"], "twin_measurement", "flag"))
    assert {None, "implausible", "unit", "status", "unknown-answer"} <= flags
    assert True in column(rows["twin_measurement"], "twin_measurement", "converted")
    assert {"conditions", "encounters"} <= set(column(rows["twin_case"], "twin_case", "kind"))
    assert history.deleted and history.live


def test_full_rebuild_reproduces_every_row(app: Flask, history: History, database_url: str) -> None:
    before = facts(app)
    for table in TABLES:
        execute(app, f"DELETE FROM {table}")
    assert facts(app) == {table: [] for table in TABLES}
    result = CliRunner().invoke(cli.main, ["twin", "rebuild"], env={"FHIR_TWIN_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert f"rebuilt the twin of every patient from {history.versions()} resource versions" in result.output
    assert facts(app) == before
    client = app.test_client()
    for moment, shown in history.snapshots:
        assert snapshot(client, moment) == shown, moment


def test_rebuild_of_a_consistent_twin_changes_nothing(app: Flask, history: History) -> None:
    before = facts(app)
    result = services_of(app).twins.rebuild()
    assert result.versions == history.versions()
    assert result.differing is None
    assert facts(app) == before


def test_check_reports_a_consistent_twin_as_matching(app: Flask, history: History, database_url: str) -> None:
    result = CliRunner().invoke(cli.main, ["twin", "rebuild", "--check", "--database", database_url])
    assert result.exit_code == 0, result.output
    assert f"the twin of every patient matches its {history.versions()} stored resource versions" in result.output


def test_check_counts_drifted_rows_and_repairs_nothing(app: Flask, history: History, database_url: str) -> None:
    execute(app, "UPDATE twin_measurement SET value = value + 1000 WHERE patient_id = 'p2' AND value IS NOT NULL")
    drifted = facts(app)
    changed = sum(
        1
        for row in drifted["twin_measurement"]
        if row[COLUMNS["twin_measurement"].index("patient_id")] == "p2"
        and row[COLUMNS["twin_measurement"].index("value")] is not None
    )
    assert changed > 0
    result = CliRunner().invoke(cli.main, ["twin", "rebuild", "--check", "--database", database_url])
    assert result.exit_code == 1
    # Each drifted row is one row too many and one row missing.
    assert f"differs from its stored history in {2 * changed} fact rows" in result.output
    assert facts(app) == drifted


def test_patient_rebuild_repairs_that_patient_only(app: Flask, history: History, database_url: str) -> None:
    before = facts(app)
    # Wrong values in p2's rows and in p3's; the rows of p3 from resources that never were p2's
    # must stay as they are when only p2 is rebuilt.
    execute(app, "UPDATE twin_measurement SET value = value + 1000 WHERE patient_id IN ('p2', 'p3')")
    execute(app, "UPDATE twin_case SET display = 'corrupted' WHERE patient_id IN ('p2', 'p3')")
    corrupted = facts(app)
    assert patient_rows(corrupted, "p2") != patient_rows(before, "p2")
    result = CliRunner().invoke(cli.main, ["twin", "rebuild", "--patient", "p2", "--database", database_url])
    assert result.exit_code == 0, result.output
    assert "rebuilt the twin of patient p2 from" in result.output
    after = facts(app)
    assert patient_rows(after, "p2") == patient_rows(before, "p2")
    assert patient_rows(after, "p1") == patient_rows(before, "p1")
    only_p3 = {key for key in [*history.live, *history.deleted] if history.subjects(key) == {"p3"}}

    def of_only_p3(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
        return {table: [row for row in found if source(row) in only_p3] for table, found in rows.items()}

    assert all(of_only_p3(corrupted).values())
    assert of_only_p3(patient_rows(after, "p3")) == of_only_p3(patient_rows(corrupted, "p3"))


def test_patient_rebuild_restores_deleted_rows(app: Flask, history: History, database_url: str) -> None:
    """Every row of p2 deleted from the database comes back, those of resources since deleted or
    moved to another patient included (their past is p2's twin at earlier times)."""
    before = facts(app)
    sources = {source(row) for rows in patient_rows(before, "p2").values() for row in rows}
    assert sources & set(history.deleted)
    assert any(key in history.live and history.current_subject(key) != "Patient/p2" for key in sources)
    for table in TABLES:
        execute(app, f"DELETE FROM {table} WHERE patient_id = 'p2'")
    result = CliRunner().invoke(cli.main, ["twin", "rebuild", "--patient", "p2", "--database", database_url])
    assert result.exit_code == 0, result.output
    after = facts(app)
    assert patient_rows(after, "p1") == patient_rows(before, "p1")
    assert patient_rows(after, "p3") == patient_rows(before, "p3")
    assert patient_rows(after, "p2") == patient_rows(before, "p2")


@pytest.mark.parametrize("change", ["deleted", "moved"])
def test_patient_rebuild_restores_the_past_of_a_resource_gone_elsewhere(
    app: Flask, database_url: str, change: str
) -> None:
    """The smallest case: one Observation of p1, later deleted or moved to p2."""
    client = app.test_client()
    for patient_id in ("p1", "p2"):
        send(client, "PUT", f"/fhir/Patient/{patient_id}", {"resourceType": "Patient", "id": patient_id})
    observation = heart_rate_o1(72)
    send(client, "PUT", "/fhir/Observation/o1", observation)
    time.sleep(0.003)
    moment = format_instant(now())
    time.sleep(0.003)
    if change == "deleted":
        send(client, "DELETE", "/fhir/Observation/o1")
    else:
        send(client, "PUT", "/fhir/Observation/o1", {**observation, "subject": {"reference": "Patient/p2"}})
    past = client.get("/twin/patients/p1/series/heart_rate", query_string={"recorded": moment}).get_json()["points"]
    assert [point["value"] for point in past] == [72.0]
    execute(app, "DELETE FROM twin_measurement WHERE patient_id = 'p1'")
    result = CliRunner().invoke(cli.main, ["twin", "rebuild", "--patient", "p1", "--database", database_url])
    assert result.exit_code == 0, result.output
    rebuilt = client.get("/twin/patients/p1/series/heart_rate", query_string={"recorded": moment}).get_json()["points"]
    assert rebuilt == past


def _shift(instant: str, milliseconds: int = 0, offset_hours: int = 0) -> str:
    """``instant`` moved by some milliseconds, written in another UTC offset if asked."""
    moment = datetime.fromisoformat(instant) + timedelta(milliseconds=milliseconds)
    zone = timezone(timedelta(hours=offset_hours))
    return moment.astimezone(zone).isoformat(timespec="milliseconds")


def test_recorded_is_the_twin_as_it_was_at_the_end_of_the_named_time(app: Flask) -> None:
    """``recorded`` names a time and reads the twin as the server held it when that time ended:
    set to a version's ``meta.lastUpdated`` (a millisecond) it includes that version, a
    millisecond earlier it does not."""
    client = app.test_client()

    def written(response: TestResponse) -> str:
        time.sleep(0.005)  # the next write lands in a later millisecond
        return response.get_json()["meta"]["lastUpdated"]

    def values(recorded: str) -> list[float]:
        response = client.get("/twin/patients/p1/series/heart_rate", query_string={"recorded": recorded})
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["recorded"] == _shift(recorded, 1)  # the end of the named millisecond, in UTC
        return [point["value"] for point in response.get_json()["points"]]

    created = written(send(client, "PUT", "/fhir/Patient/p1", {"resourceType": "Patient", "id": "p1"}))
    first = written(send(client, "PUT", "/fhir/Observation/o1", heart_rate_o1(70)))
    second = written(send(client, "PUT", "/fhir/Observation/o1", heart_rate_o1(80)))
    send(client, "DELETE", "/fhir/Observation/o1")
    deleted = client.get("/fhir/Observation/o1/_history").get_json()["entry"][0]["response"]["lastModified"]

    def check() -> None:
        assert values(_shift(first, -1)) == []
        assert values(first) == [70.0]
        assert values(_shift(second, -1)) == [70.0]  # between the two writes
        assert values(_shift(second, -1, offset_hours=2)) == [70.0]  # the same instant, another offset
        assert values(second) == [80.0]
        assert values(_shift(deleted, -1)) == [80.0]
        assert values(deleted) == []
        assert client.get("/twin/patients/p1/series/heart_rate").get_json()["points"] == []
        twin = client.get("/twin/patients/p1", query_string={"recorded": _shift(second, -1)}).get_json()
        assert twin["body"]["heart_rate"]["latest"]["value"] == 70.0
        assert twin["recorded"] == twin["referenceTime"] == second
        operation = client.get("/fhir/Patient/p1/$twin", query_string={"recorded": _shift(second, -1)}).get_json()
        heart = next(
            p["part"]
            for p in operation["parameter"]
            if {"name": "name", "valueCode": "heart_rate"} in p.get("part", [])
        )
        assert {
            "name": "value",
            "valueQuantity": {"value": 70.0, "unit": "/min", "system": UCUM, "code": "/min"},
        } in heart
        before_patient = client.get("/twin/patients/p1", query_string={"recorded": _shift(created, -1)})
        assert before_patient.status_code == 404
        assert before_patient.get_json()["issue"][0]["code"] == "not-found"
        assert client.get("/twin/patients/p1", query_string={"recorded": created}).status_code == 200

    check()
    services_of(app).twins.rebuild()
    check()


def lock_waits(engine: Engine) -> int:
    """How many PostgreSQL sessions on this database wait for a lock."""
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        return int(connection.execute(text(query)).scalar_one())


def test_a_write_during_a_rebuild_is_not_lost_or_doubled(make_app: Any) -> None:
    """A rebuild and a write at the same time (a server keeps serving during ``twin rebuild``):
    afterwards the twin is what a rebuild from the final history gives."""
    app, writer_app = make_app(), make_app()
    engine = services_of(app).repository.engine
    client, writer = app.test_client(), writer_app.test_client()
    send(client, "PUT", "/fhir/Patient/p1", {"resourceType": "Patient", "id": "p1"})
    observation = heart_rate_o1(70)
    send(client, "PUT", "/fhir/Observation/o1", observation)
    answers: list[int] = []
    changed = {**observation, "valueQuantity": _quantity(Decimal(80), "/min")}
    update = threading.Thread(
        target=lambda: answers.append(send(writer, "PUT", "/fhir/Observation/o1", changed).status_code)
    )

    def while_rebuilding(_count: int) -> None:
        if update.ident is not None:  # started at the first version read
            return
        update.start()
        # Hold the rebuild until the write waits for it: PostgreSQL shows the lock wait; SQLite
        # writers queue on the write gate, where a moment is enough to be sure.
        if engine.dialect.name != "postgresql":
            time.sleep(0.3)
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not lock_waits(engine):
            time.sleep(0.02)

    services_of(app).twins.rebuild(progress=while_rebuilding)
    update.join(timeout=30)
    assert answers == [200]
    points = client.get("/twin/patients/p1/series/heart_rate").get_json()["points"]
    assert [(point["value"], point["source"]) for point in points] == [(80.0, "Observation/o1/_history/2")]
    live = facts(app)
    services_of(app).twins.rebuild()
    assert live == facts(app)
