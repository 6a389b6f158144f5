"""The history interaction as a FHIR client sees it (R4 http.html#history).

Instance (``Patient/id/_history``), type (``Patient/_history``) and system (``_history``)
history Bundles: entries newest first with ``request``/``response``, deletes without a
resource, ``_since``, ``_at`` and ``_count`` with ``next`` links that follow a keyset cursor.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any
from xml.etree import ElementTree

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories

BASE = "http://localhost/fhir"
STRICT = {"Prefer": "handling=strict"}

Json = dict[str, Any]
Key = tuple[str, str, str]  # resource type, id, version id


# --- helpers -----------------------------------------------------------------------------


# Most writes here are updates (200); creates say status=201.
put = partial(factories.put, status=200)


def _millisecond(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def wait_past(instant: datetime) -> None:
    """Poll the clock until its millisecond is later than ``instant`` (meta.lastUpdated precision)."""
    while _millisecond(datetime.now(UTC)) <= instant:
        time.sleep(0.0002)


def tick() -> None:
    """Wait until the millisecond changes, so the next write gets a later ``meta.lastUpdated``."""
    wait_past(_millisecond(datetime.now(UTC)))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def patient(res_id: str | None = None, family: str = "Twin") -> Json:
    return factories.patient(res_id, name=[{"family": family}])


def post(client: FlaskClient, resource: Json) -> Json:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def get_bundle(client: FlaskClient, url: str, params: dict[str, str] | None = None, **kwargs: Any) -> Json:
    """GET a history Bundle and check its shape."""
    response = client.get(url, query_string=params or None, **kwargs)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "history"
    return body


def links(bundle: Json) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def entry_key(entry: Json) -> Key:
    """Type, id and version of an entry, read from ``fullUrl`` and ``response.etag`` (deletes too)."""
    res_type, res_id = entry["fullUrl"].removeprefix(BASE + "/").split("/")
    return res_type, res_id, entry["response"]["etag"].removeprefix('W/"').removesuffix('"')


def keys(bundle: Json) -> list[Key]:
    return [entry_key(entry) for entry in bundle.get("entry", [])]


def all_pages(client: FlaskClient, url: str, params: dict[str, str], between: Any = None) -> list[Json]:
    """Follow ``next`` links from ``url`` until there is none; ``between`` runs after the first page."""
    pages = [get_bundle(client, url, params)]
    while "next" in links(pages[-1]):
        if between is not None and len(pages) == 1:
            between()
        assert len(pages) < 50, "next links do not end"
        pages.append(get_bundle(client, links(pages[-1])["next"]))
    return pages


def assert_outcome(response: Any, status: int, expression: str | None = None) -> Json:
    """An OperationOutcome error; ``expression`` is the parameter it must name."""
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] == "error"
    if expression is not None:
        assert [expression] in [issue.get("expression") for issue in body["issue"]]
    return body


# --- instance history: create, 2 updates, delete, re-create ------------------------------


@pytest.fixture
def lifecycle(client: FlaskClient) -> tuple[str, list[int]]:
    """Patient created by POST, updated twice, deleted and re-created by PUT; its id and the statuses."""
    statuses: list[int] = []
    created = post(client, patient(family="One"))
    res_id = created["id"]
    statuses.append(201)
    for family in ("Two", "Three"):
        tick()
        put(client, patient(res_id, family))
        statuses.append(200)
    tick()
    response = client.delete(f"/fhir/Patient/{res_id}")
    assert response.status_code == 200
    statuses.append(response.status_code)
    tick()
    put(client, patient(res_id, "Five"), status=201)
    statuses.append(201)
    return res_id, statuses


def test_instance_history_lists_every_version_newest_first(
    client: FlaskClient, lifecycle: tuple[str, list[int]]
) -> None:
    """http.html#history: all 5 versions, newest first, each with request and response; no resource for the delete."""
    res_id, _ = lifecycle
    bundle = get_bundle(client, f"/fhir/Patient/{res_id}/_history")
    assert bundle["total"] == 5
    entries = bundle["entry"]
    assert [entry["request"]["method"] for entry in entries] == ["PUT", "DELETE", "PUT", "PUT", "POST"]
    assert [entry["request"]["url"] for entry in entries] == [f"Patient/{res_id}"] * 4 + ["Patient"]
    assert [entry["response"]["etag"] for entry in entries] == [f'W/"{n}"' for n in (5, 4, 3, 2, 1)]
    modified = [instant(entry["response"]["lastModified"]) for entry in entries]
    assert modified == sorted(modified, reverse=True) and len(set(modified)) == 5
    for entry, number, family in zip(entries, (5, 4, 3, 2, 1), ("Five", None, "Three", "Two", "One"), strict=True):
        assert entry["fullUrl"] == f"{BASE}/Patient/{res_id}"
        status = entry["response"]["status"]
        assert status.split(" ")[0].isdigit() and len(status.split(" ")[0]) == 3
        if family is None:
            assert "resource" not in entry
            continue
        resource = entry["resource"]
        assert resource["resourceType"] == "Patient" and resource["id"] == res_id
        assert resource["meta"]["versionId"] == str(number)
        assert resource["meta"]["lastUpdated"] == entry["response"]["lastModified"]
        assert resource["name"] == [{"family": family}]
    assert entries[-1]["response"]["status"] == "201 Created"
    assert [entries[2]["response"]["status"], entries[3]["response"]["status"]] == ["200 OK", "200 OK"]
    assert links(bundle)["self"].startswith(f"{BASE}/Patient/{res_id}/_history")


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(1, id="create-by-POST"),
        pytest.param(2, id="update"),
        pytest.param(4, id="delete"),
        pytest.param(5, id="re-create-by-PUT"),
    ],
)
def test_history_response_status_is_the_status_the_write_was_answered_with(
    client: FlaskClient, lifecycle: tuple[str, list[int]], number: int
) -> None:
    """Bundle.entry.response.status: the status code of the interaction the version records."""
    res_id, statuses = lifecycle
    entries = get_bundle(client, f"/fhir/Patient/{res_id}/_history")["entry"]
    by_version = {int(entry_key(entry)[2]): entry for entry in entries}
    assert by_version[number]["response"]["status"].split(" ")[0] == str(statuses[number - 1])


def test_history_status_of_an_update_as_create(client: FlaskClient) -> None:
    """http.html#upsert: a PUT with a new client id creates (201); its history entry should say so."""
    put(client, patient("chosen"), status=201)
    entry = get_bundle(client, "/fhir/Patient/chosen/_history")["entry"][0]
    assert entry["request"] == {"method": "PUT", "url": "Patient/chosen"}
    assert entry["response"]["status"] == "201 Created"


def test_vread_answers_every_version_the_history_lists(client: FlaskClient, lifecycle: tuple[str, list[int]]) -> None:
    """http.html#vread: each listed version reads back with the same body and ETag; the delete is 410."""
    res_id, _ = lifecycle
    entries = get_bundle(client, f"/fhir/Patient/{res_id}/_history")["entry"]
    for entry in entries:
        number = entry_key(entry)[2]
        response = client.get(f"{entry['fullUrl']}/_history/{number}")
        assert response.headers["ETag"] == entry["response"]["etag"]
        if "resource" in entry:
            assert response.status_code == 200
            assert response.get_json() == entry["resource"]
        else:
            assert_outcome(response, 410)


def test_history_of_a_deleted_resource_still_answers(client: FlaskClient) -> None:
    """A deleted resource is gone for read (410) but its history remains (200)."""
    put(client, patient("gone"), status=201)
    tick()
    assert client.delete("/fhir/Patient/gone").status_code == 200
    assert client.get("/fhir/Patient/gone").status_code == 410
    bundle = get_bundle(client, "/fhir/Patient/gone/_history")
    assert keys(bundle) == [("Patient", "gone", "2"), ("Patient", "gone", "1")]
    assert "resource" not in bundle["entry"][0] and bundle["entry"][0]["request"]["method"] == "DELETE"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/fhir/Patient/nobody/_history", id="unknown-id"),
        pytest.param("/fhir/Observation/known/_history", id="id-known-for-another-type"),
        pytest.param("/fhir/Nonsense/_history", id="unknown-type"),
        pytest.param("/fhir/Nonsense/known/_history", id="unknown-type-instance"),
    ],
)
def test_history_of_something_unknown_is_404(client: FlaskClient, url: str) -> None:
    put(client, patient("known"), status=201)
    assert_outcome(client.get(url), 404)


# --- type and system history -------------------------------------------------------------


@pytest.fixture
def mixed(client: FlaskClient) -> list[Key]:
    """Patient a, Observation o, Patient b, then a updated; returns the keys newest first."""
    put(client, patient("a"), status=201)
    tick()
    put(client, factories.observation(res_id="o"), status=201)
    tick()
    put(client, patient("b"), status=201)
    tick()
    put(client, patient("a", "Updated"))
    return [("Patient", "a", "2"), ("Patient", "b", "1"), ("Observation", "o", "1"), ("Patient", "a", "1")]


@pytest.mark.parametrize(
    ("url", "res_type"),
    [
        pytest.param("/fhir/Patient/_history", "Patient", id="type"),
        pytest.param("/fhir/Observation/_history", "Observation", id="other-type"),
        pytest.param("/fhir/Encounter/_history", "Encounter", id="type-with-nothing"),
        pytest.param("/fhir/_history", None, id="system"),
    ],
)
def test_type_and_system_history(client: FlaskClient, mixed: list[Key], url: str, res_type: str | None) -> None:
    """Type history lists only that type; system history lists all; both newest first."""
    expected = [k for k in mixed if res_type is None or k[0] == res_type]
    bundle = get_bundle(client, url)
    assert keys(bundle) == expected
    assert bundle["total"] == len(expected)
    modified = [instant(entry["response"]["lastModified"]) for entry in bundle.get("entry", [])]
    assert modified == sorted(modified, reverse=True)
    for entry in bundle.get("entry", []):
        res_type_, res_id, number = entry_key(entry)
        assert entry["resource"]["resourceType"] == res_type_ and entry["resource"]["id"] == res_id
        assert entry["resource"]["meta"]["versionId"] == number
    assert links(bundle)["self"].startswith(BASE + url.removeprefix("/fhir"))


# --- _count and next links ---------------------------------------------------------------


@pytest.fixture
def seven(client: FlaskClient) -> list[Key]:
    """Seven versions of Patient/p; their keys newest first."""
    put(client, patient("p", "v1"), status=201)
    for number in range(2, 8):
        put(client, patient("p", f"v{number}"))
    return [("Patient", "p", str(number)) for number in range(7, 0, -1)]


SCOPES = [
    pytest.param("/fhir/_history", id="system"),
    pytest.param("/fhir/Patient/_history", id="type"),
    pytest.param("/fhir/Patient/p/_history", id="instance"),
]


@pytest.mark.parametrize("url", SCOPES)
def test_next_links_page_through_every_version_once(client: FlaskClient, seven: list[Key], url: str) -> None:
    """``_count=3``: pages of 3, 3 and 1 chained by absolute ``next`` links; ``self`` on every page."""
    pages = all_pages(client, url, {"_count": "3"})
    assert [len(page["entry"]) for page in pages] == [3, 3, 1]
    assert [k for page in pages for k in keys(page)] == seven
    for page in pages:
        page_links = links(page)
        assert page_links["self"].startswith(BASE + url.removeprefix("/fhir") + "?")
        assert "_count=3" in page_links["self"]
        assert page["total"] == 7
    for page in pages[:-1]:
        assert links(page)["next"].startswith(BASE + url.removeprefix("/fhir") + "?")
    assert "next" not in links(pages[-1])


@pytest.mark.parametrize("url", SCOPES)
def test_writes_while_paging_neither_repeat_nor_skip(client: FlaskClient, seven: list[Key], url: str) -> None:
    """The cursor is keyset-based: versions written after page 1 do not shift the later pages."""

    def write_more() -> None:
        put(client, patient("p", "v8"))
        put(client, patient("q"), status=201)
        post(client, factories.observation())
        post(client, patient(family="New"))

    pages = all_pages(client, url, {"_count": "3"}, between=write_more)
    seen = [k for page in pages for k in keys(page)]
    assert seen == seven
    assert len(set(seen)) == len(seen)
    # A fresh first page starts with the new versions.
    assert ("Patient", "p", "8") in keys(get_bundle(client, url, {"_count": "10"}))


@pytest.mark.parametrize(
    ("settings", "params", "page_size"),
    [
        pytest.param({}, {}, 20, id="default-page-size-20"),
        pytest.param({"default_page_size": 2}, {}, 2, id="default-page-size"),
        pytest.param({"max_page_size": 5}, {"_count": "50"}, 5, id="capped-at-max-page-size"),
        pytest.param({"max_page_size": 5}, {"_count": "5"}, 5, id="exactly-max"),
        pytest.param({"max_page_size": 5}, {"_count": "4"}, 4, id="under-max"),
        pytest.param({"max_page_size": 5, "default_page_size": 20}, {}, 5, id="default-above-max"),
    ],
)
def test_page_size(make_app: Any, settings: Json, params: dict[str, str], page_size: int) -> None:
    """``_count`` sets the page size, capped at ``max_page_size``; absent, ``default_page_size`` applies."""
    app: Flask = make_app(**settings)
    client = app.test_client()
    put(client, patient("p", "v1"), status=201)
    for number in range(2, 8):
        put(client, patient("p", f"v{number}"))
    pages = all_pages(client, "/fhir/Patient/p/_history", params)
    assert [len(page["entry"]) for page in pages[:-1]] == [page_size] * (len(pages) - 1)
    assert len(pages[0]["entry"]) == min(page_size, 7)
    assert all(f"_count={page_size}&" in links(page)["self"] + "&" for page in pages)
    assert [int(entry_key(entry)[2]) for page in pages for entry in page["entry"]] == list(range(7, 0, -1))


# --- _since and _at ----------------------------------------------------------------------


@pytest.fixture
def five(client: FlaskClient) -> list[Json]:
    """Five versions over three resources, each written in a later millisecond; newest first."""
    written = [put(client, patient("a", "1"), status=201)]
    later = [
        (factories.observation(res_id="o"), 201),
        (patient("a", "2"), 200),
        (patient("b"), 201),
        (factories.observation(res_id="o") | {"status": "amended"}, 200),
    ]
    for resource, status in later:
        tick()
        written.append(put(client, resource, status=status))
    return written[::-1]


def _key(resource: Json) -> Key:
    return resource["resourceType"], resource["id"], resource["meta"]["versionId"]


def _later(text: str, **delta: float) -> str:
    return (instant(text) + timedelta(**delta)).isoformat(timespec="milliseconds")


def _shift(text: str, hours: float) -> str:
    """The same instant written with another UTC offset."""
    return instant(text).astimezone(timezone(timedelta(hours=hours))).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    ("since", "newest"),
    [
        pytest.param(lambda middle, first, last: middle, 3, id="exact-instant"),
        pytest.param(lambda middle, first, last: _shift(middle, 5.5), 3, id="same-instant-other-offset"),
        pytest.param(lambda middle, first, last: _shift(middle, -7), 3, id="negative-offset"),
        pytest.param(lambda middle, first, last: _later(middle, milliseconds=1), 2, id="one-ms-later"),
        pytest.param(lambda middle, first, last: first[:10], 5, id="day-precision"),
        pytest.param(
            lambda middle, first, last: (instant(last) + timedelta(days=1)).date().isoformat(), 0, id="next-day"
        ),
        pytest.param(lambda middle, first, last: first[:4], 5, id="year-precision"),
    ],
)
def test_since(client: FlaskClient, five: list[Json], since: Any, newest: int) -> None:
    """``_since``: only versions written at or after the instant (http.html#history)."""
    stamps = [resource["meta"]["lastUpdated"] for resource in five]
    value = since(stamps[2], stamps[-1], stamps[0])
    expected = [_key(resource) for resource in five[:newest]]
    bundle = get_bundle(client, "/fhir/_history", {"_since": value})
    assert keys(bundle) == expected
    assert bundle.get("total") == newest
    assert "_since=" in links(bundle)["self"]
    if "T" in value:
        assert all(instant(entry["response"]["lastModified"]) >= instant(value) for entry in bundle.get("entry", []))


def test_since_is_kept_in_next_links(client: FlaskClient, five: list[Json]) -> None:
    """Every page of a ``_since`` history stays within ``_since``."""
    middle = five[2]["meta"]["lastUpdated"]
    pages = all_pages(client, "/fhir/_history", {"_since": middle, "_count": "1"})
    assert [k for page in pages for k in keys(page)] == [_key(resource) for resource in five[:3]]
    assert all("_since=" in links(page)["self"] for page in pages)


def test_since_on_type_and_instance(client: FlaskClient, five: list[Json]) -> None:
    middle = five[2]["meta"]["lastUpdated"]  # Patient/a version 2
    assert keys(get_bundle(client, "/fhir/Patient/_history", {"_since": middle})) == [
        ("Patient", "b", "1"),
        ("Patient", "a", "2"),
    ]
    assert keys(get_bundle(client, "/fhir/Patient/a/_history", {"_since": middle})) == [("Patient", "a", "2")]


def test_at_returns_the_versions_current_at_an_instant(client: FlaskClient) -> None:
    """``_at``: versions current at a time; between version 2 and 3 of Patient/a that is version 2."""
    put(client, patient("early"), status=201)
    tick()
    put(client, patient("a", "1"), status=201)
    tick()
    second = put(client, patient("a", "2"))
    between = instant(second["meta"]["lastUpdated"]) + timedelta(milliseconds=1)
    wait_past(between)
    third = put(client, patient("a", "3"))
    assert instant(third["meta"]["lastUpdated"]) > between
    tick()
    put(client, patient("late"), status=201)
    at = between.isoformat(timespec="milliseconds")
    assert keys(get_bundle(client, "/fhir/Patient/a/_history", {"_at": at})) == [("Patient", "a", "2")]
    assert keys(get_bundle(client, "/fhir/Patient/_history", {"_at": at})) == [
        ("Patient", "a", "2"),
        ("Patient", "early", "1"),
    ]
    # At the instant version 2 was written, version 1 is already replaced.
    assert keys(get_bundle(client, "/fhir/Patient/a/_history", {"_at": second["meta"]["lastUpdated"]})) == [
        ("Patient", "a", "2")
    ]


# --- parameter errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("_since", "yesterday", id="since-word"),
        pytest.param("_since", "2024-13-45", id="since-not-a-date"),
        pytest.param("_at", "noon", id="at-word"),
        pytest.param("_count", "abc", id="count-word"),
        pytest.param("_count", "-1", id="count-negative"),
        pytest.param("_count", "2.5", id="count-fraction"),
        pytest.param("_count", "", id="count-empty"),
        pytest.param("_cursor", "not-a-cursor", id="cursor"),
        pytest.param("_cursor", "1-2-3", id="cursor-three-parts"),
        pytest.param("_cursor", "9" * 30 + "-1", id="cursor-time-out-of-range"),
        pytest.param("_cursor", "1-" + "9" * 30, id="cursor-seq-out-of-range"),
        pytest.param("_count", "²", id="count-superscript-digit"),
        pytest.param("_count", "٣", id="count-arabic-indic-digit"),
    ],
)
@pytest.mark.parametrize("url", SCOPES)
def test_bad_parameters_are_400(client: FlaskClient, url: str, name: str, value: str) -> None:
    """http.html#history: a malformed parameter is 400 with an OperationOutcome naming it."""
    put(client, patient("p"), status=201)
    assert_outcome(client.get(url, query_string={name: value}), 400, name)


EXTREMES = [
    pytest.param("_since", "0001-01-01T00:00:00+01:00", 1, id="since-before-year-1-in-UTC"),
    pytest.param("_since", "9999-12-31T23:59:59.999+00:00", 0, id="since-last-millisecond"),
    pytest.param("_since", "9999-12-31T23:59:59-01:00", 0, id="since-after-year-9999-in-UTC"),
    pytest.param("_at", "9999", None, id="at-year-9999"),
]


@pytest.mark.parametrize(("name", "value", "total"), EXTREMES)
def test_instants_at_the_ends_of_the_range_are_never_a_server_error(
    client: FlaskClient, name: str, value: str, total: int | None
) -> None:
    """Instants whose range leaves Python's datetime range must not crash the server."""
    put(client, patient("p"), status=201)
    response = client.get("/fhir/_history", query_string={name: value})
    assert response.status_code in (200, 400), response.get_json()
    if response.status_code == 400:
        assert_outcome(response, 400, name)


@pytest.mark.parametrize(("name", "value", "total"), EXTREMES)
def test_instants_at_the_ends_of_the_range_are_answered(
    client: FlaskClient, name: str, value: str, total: int | None
) -> None:
    """Valid FHIR instants (years 0001-9999, any offset, datatypes.html#instant) are answered, clamped."""
    put(client, patient("p"), status=201)
    bundle = get_bundle(client, "/fhir/_history", {name: value})
    if total is not None:
        assert bundle["total"] == total


@pytest.mark.parametrize("url", SCOPES)
def test_a_count_of_5000_digits_is_not_a_server_error(client: FlaskClient, url: str) -> None:
    """A positive whole number too long for ``int()`` is capped (200) or refused (400), never a 500."""
    put(client, patient("p"), status=201)
    response = client.get(url, query_string={"_count": "9" * 5000})
    assert response.status_code in (200, 400), response.get_json()


def test_since_error_names_since(client: FlaskClient) -> None:
    """``_since=yesterday`` is 400, and the issue's expression is ``_since``."""
    body = assert_outcome(client.get("/fhir/_history", query_string={"_since": "yesterday"}), 400)
    assert body["issue"][0]["code"] == "invalid"
    assert body["issue"][0]["expression"] == ["_since"]
    assert "yesterday" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(STRICT, 400, id="strict"),
        pytest.param({"Prefer": "handling=lenient"}, 200, id="lenient"),
        pytest.param({}, 400, id="no-preference"),
    ],
)
@pytest.mark.parametrize("url", SCOPES)
def test_unknown_parameters(client: FlaskClient, url: str, headers: dict[str, str], status: int) -> None:
    """search.html#errors: unknown parameters are an error unless ``handling=lenient``, then ignored."""
    put(client, patient("p"), status=201)
    response = client.get(url, query_string={"bogus": "1", "_count": "5"}, headers=headers)
    if status == 400:
        assert_outcome(response, 400, "bogus")
    else:
        assert response.status_code == 200
        assert keys(response.get_json()) == [("Patient", "p", "1")]


@pytest.mark.parametrize("url", SCOPES)
def test_known_parameters_pass_strict_handling(client: FlaskClient, url: str) -> None:
    put(client, patient("p"), status=201)
    params = {"_count": "5", "_since": "2000", "_format": "json", "_pretty": "false"}
    bundle = get_bundle(client, url, params, headers=STRICT)
    assert keys(bundle) == [("Patient", "p", "1")]


def test_next_links_keep_the_format(client: FlaskClient, seven: list[Key]) -> None:
    """search.html#paging: following ``next`` continues the same request, in the same format."""
    response = client.get("/fhir/Patient/p/_history", query_string={"_format": "xml", "_count": "3"})
    assert response.status_code == 200 and response.mimetype == "application/fhir+xml"
    root = ElementTree.fromstring(response.data)
    ns = {"f": "http://hl7.org/fhir"}
    urls = {
        link.find("f:relation", ns).get("value"): link.find("f:url", ns).get("value")  # type: ignore[union-attr]
        for link in root.findall("f:link", ns)
    }
    assert client.get(urls["next"]).mimetype == "application/fhir+xml"
