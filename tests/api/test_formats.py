"""Resource formats on the wire (R4 http.html#mime-type, json.html, xml.html).

What a client sees: which format an answer is in (``_format`` wins over ``Accept``, JSON by default),
that XML and JSON carry the same resource, that unreadable bodies are 400 and unservable formats are
406/415 OperationOutcomes, and that decimals come back with the digits that were sent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.test import TestResponse

from tests.factories import FHIR_JSON

FHIR_NS = "http://hl7.org/fhir"
NS = {"f": FHIR_NS}
FHIR_XML = "application/fhir+xml; charset=utf-8"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
}
PATIENT_XML = (
    b'<Patient xmlns="http://hl7.org/fhir">'
    b'<name><family value="Chalmers"/><given value="Peter"/><given value="James"/></name>'
    b'<gender value="male"/><birthDate value="1974-12-25"/></Patient>'
)


# --- helpers ------------------------------------------------------------------------------


def create_patient(client: FlaskClient) -> str:
    """POST the test Patient as JSON; its new id."""
    response = client.post("/fhir/Patient", json=PATIENT)
    assert response.status_code == 201, response.data
    return str(response.get_json()["id"])


def read_new_patient(client: FlaskClient, headers: dict[str, str], query: str) -> tuple[str, TestResponse]:
    """Create the test Patient and read it with ``headers`` and ``?{query}``: its id, and the
    answer, checked to be a 200 of version 1."""
    patient_id = create_patient(client)
    response = client.get(f"/fhir/Patient/{patient_id}?{query}", headers=headers)
    assert response.status_code == 200, response.data
    assert response.headers["ETag"] == 'W/"1"'
    return patient_id, response


def xml_root(response: TestResponse) -> etree._Element:
    """The root element of an XML answer, checked to be FHIR XML."""
    assert response.headers["Content-Type"] == FHIR_XML
    root = etree.fromstring(response.data, _PARSER)
    assert etree.QName(root).namespace == FHIR_NS
    return root


def xml_value(element: etree._Element, path: str) -> str | None:
    """The ``value`` attribute at ``path`` (``f:`` prefixed) under ``element``."""
    found = element.find(path, NS)
    return None if found is None else found.get("value")


def xml_values(element: etree._Element, path: str) -> list[str | None]:
    return [found.get("value") for found in element.findall(path, NS)]


def assert_no_html(response: TestResponse) -> None:
    assert "html" not in response.headers.get("Content-Type", "")
    lowered = response.data.lower()
    for marker in (b"<html", b"<!doctype", b"<title", b"<body", b"<h1"):
        assert marker not in lowered, response.data


def json_outcome(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """The first issue of a JSON OperationOutcome answer with ``status`` and ``code``."""
    assert response.status_code == status, response.data
    assert response.headers["Content-Type"] == FHIR_JSON
    assert_no_html(response)
    outcome = json.loads(response.data)
    assert outcome["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = outcome["issue"][0]
    assert issue["severity"] in ("error", "fatal")
    assert issue["code"] == code
    return issue


def patient_total(client: FlaskClient) -> int:
    response = client.get("/fhir/Patient")
    assert response.status_code == 200
    return int(response.get_json()["total"])


# --- which format answers (R4 http.html#mime-type) --------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param({}, "", id="no-accept"),
        pytest.param({"Accept": "application/fhir+json"}, "", id="accept-fhir-json"),
        pytest.param({"Accept": "application/json"}, "", id="accept-json"),
        pytest.param({"Accept": "application/json+fhir"}, "", id="accept-dstu2-json"),
        pytest.param({"Accept": "*/*"}, "", id="accept-any"),
        pytest.param({"Accept": "application/*"}, "", id="accept-application-any"),
        pytest.param({"Accept": "application/fhir+xml;q=0.5, application/fhir+json"}, "", id="accept-json-preferred"),
        pytest.param({}, "_format=json", id="format-json"),
        pytest.param({}, "_format=application/json", id="format-application-json"),
        pytest.param({}, "_format=application/fhir%2Bjson", id="format-fhir-json"),
        pytest.param({"Accept": "application/fhir+xml"}, "_format=json", id="format-wins-over-accept-xml"),
        pytest.param({"Accept": "text/plain"}, "_format=json", id="format-wins-over-unservable-accept"),
        # R4 http.html#mime-type: Accept MAY carry charset; #version-parameter: fhirVersion.
        pytest.param({"Accept": "application/fhir+json; charset=utf-8"}, "", id="accept-with-charset"),
        pytest.param({"Accept": "application/fhir+json; fhirVersion=4.0"}, "", id="accept-with-fhirVersion"),
    ],
)
def test_json_answers(client: FlaskClient, headers: dict[str, str], query: str) -> None:
    """R4 http.html#mime-type: JSON when asked for, and by default (also for */*)."""
    patient_id, response = read_new_patient(client, headers, query)
    assert response.headers["Content-Type"] == FHIR_JSON
    body = json.loads(response.data)
    assert body["resourceType"] == "Patient"
    assert body["id"] == patient_id
    assert body["meta"]["versionId"] == "1"
    assert body["name"] == PATIENT["name"]


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param({"Accept": "application/fhir+xml"}, "", id="accept-fhir-xml"),
        pytest.param({"Accept": "application/xml"}, "", id="accept-xml"),
        pytest.param({"Accept": "text/xml"}, "", id="accept-text-xml"),
        pytest.param({"Accept": "application/fhir+json;q=0.5, application/fhir+xml"}, "", id="accept-xml-preferred"),
        pytest.param(
            {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, "", id="browser-accept"
        ),
        pytest.param({}, "_format=xml", id="format-xml"),
        pytest.param({}, "_format=text/xml", id="format-text-xml"),
        pytest.param({}, "_format=application/xml", id="format-application-xml"),
        pytest.param({}, "_format=application/fhir+xml", id="format-fhir-xml-unescaped-plus"),
        pytest.param({}, "_format=application/fhir%2Bxml", id="format-fhir-xml-escaped-plus"),
        pytest.param({"Accept": "application/fhir+json"}, "_format=xml", id="format-wins-over-accept-json"),
        pytest.param({"Accept": "text/plain"}, "_format=xml", id="format-wins-over-unservable-accept"),
        pytest.param({"Accept": "application/fhir+xml; charset=utf-8"}, "", id="accept-with-charset"),
        pytest.param({"Accept": "application/fhir+xml; fhirVersion=4.0"}, "", id="accept-with-fhirVersion"),
        pytest.param({"Accept": "application/fhir+xml;q=0.9, application/fhir+json;q=0.8"}, "", id="accept-q-values"),
    ],
)
def test_xml_answers(client: FlaskClient, headers: dict[str, str], query: str) -> None:
    """R4 http.html#mime-type and xml.html: FHIR XML in the FHIR namespace when XML is asked for."""
    patient_id, response = read_new_patient(client, headers, query)
    root = xml_root(response)
    assert root.tag == f"{{{FHIR_NS}}}Patient"
    assert xml_value(root, "f:id") == patient_id
    assert xml_value(root, "f:meta/f:versionId") == "1"
    assert xml_value(root, "f:name/f:family") == "Chalmers"
    assert xml_values(root, "f:name/f:given") == ["Peter", "James"]
    assert xml_value(root, "f:gender") == "male"
    assert xml_value(root, "f:birthDate") == "1974-12-25"


@pytest.mark.parametrize(
    ("path", "root_name", "checks"),
    [
        pytest.param("Patient?_id={id}", "Bundle", {"f:type": "searchset", "f:total": "1"}, id="search"),
        pytest.param("Patient/{id}/_history", "Bundle", {"f:type": "history", "f:total": "1"}, id="history"),
        pytest.param("Patient/{id}/_history/1", "Patient", {"f:id": "{id}", "f:meta/f:versionId": "1"}, id="vread"),
        pytest.param(
            "metadata", "CapabilityStatement", {"f:fhirVersion": "4.0.1", "f:kind": "instance"}, id="metadata"
        ),
    ],
)
def test_xml_for_every_read_interaction(client: FlaskClient, path: str, root_name: str, checks: dict[str, str]) -> None:
    """R4 http.html#mime-type: ``_format=xml`` applies to searches, history and the CapabilityStatement too."""
    patient_id = create_patient(client)
    separator = "&" if "?" in path else "?"
    response = client.get(f"/fhir/{path.format(id=patient_id)}{separator}_format=xml")
    assert response.status_code == 200, response.data
    root = xml_root(response)
    assert root.tag == f"{{{FHIR_NS}}}{root_name}"
    for where, expected in checks.items():
        assert xml_value(root, where) == expected.format(id=patient_id)
    if root_name == "Bundle":
        entry = root.find("f:entry/f:resource/f:Patient", NS)
        assert entry is not None
        assert xml_value(entry, "f:id") == patient_id


# --- bodies in either format (R4 http.html#mime-type, xml.html) ------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+xml", "application/fhir+xml; charset=utf-8", "application/xml", "text/xml"],
)
def test_create_in_xml_read_in_json(client: FlaskClient, content_type: str) -> None:
    """R4 http.html#create with an XML body: the stored resource reads back the same in JSON."""
    created = client.post("/fhir/Patient", data=PATIENT_XML, headers={"Content-Type": content_type})
    assert created.status_code == 201, created.data
    assert created.headers["ETag"] == 'W/"1"'
    location = created.headers["Location"]
    match = re.fullmatch(r"http://localhost/fhir/Patient/([A-Za-z0-9\-.]{1,64})/_history/1", location)
    assert match, location
    read = client.get(f"/fhir/Patient/{match.group(1)}", headers={"Accept": "application/fhir+json"})
    assert read.status_code == 200
    assert read.headers["Content-Type"] == FHIR_JSON
    body = read.get_json()
    assert body["id"] == match.group(1)
    assert body["meta"]["versionId"] == "1"
    assert {key: body[key] for key in ("name", "gender", "birthDate")} == {
        key: PATIENT[key] for key in ("name", "gender", "birthDate")
    }


def test_create_in_xml_answers_in_xml(client: FlaskClient) -> None:
    """R4 http.html#create: the answer body is in the format asked for, carrying the id in Location."""
    created = client.post(
        "/fhir/Patient",
        data=PATIENT_XML,
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert created.status_code == 201, created.data
    root = xml_root(created)
    assert root.tag == f"{{{FHIR_NS}}}Patient"
    patient_id = xml_value(root, "f:id")
    assert created.headers["Location"] == f"http://localhost/fhir/Patient/{patient_id}/_history/1"
    assert xml_value(root, "f:meta/f:versionId") == "1"
    assert xml_value(root, "f:gender") == "male"


def test_xml_special_forms_map_to_json(client: FlaskClient) -> None:
    """R4 xml.html / json.html: narrative, contained resources and extensions on primitives (``_birthDate``)."""
    document = b"""<Patient xmlns="http://hl7.org/fhir">
      <text><status value="generated"/>
        <div xmlns="http://www.w3.org/1999/xhtml"><p>Peter <b>Chalmers</b></p></div></text>
      <contained><Organization><id value="org1"/><name value="Good Health"/></Organization></contained>
      <active value="true"/>
      <birthDate value="1974-12-25">
        <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
          <valueDateTime value="1974-12-25T14:35:45-05:00"/>
        </extension>
      </birthDate>
      <multipleBirthInteger value="2"/>
      <managingOrganization><reference value="#org1"/></managingOrganization>
    </Patient>"""
    created = client.post("/fhir/Patient", data=document, headers={"Content-Type": "application/fhir+xml"})
    assert created.status_code == 201, created.data
    body = client.get(f"/fhir/Patient/{created.get_json()['id']}").get_json()
    assert body["text"]["status"] == "generated"
    assert body["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter <b>Chalmers</b></p></div>'
    assert body["contained"] == [{"resourceType": "Organization", "id": "org1", "name": "Good Health"}]
    assert body["active"] is True
    assert body["multipleBirthInteger"] == 2
    assert body["birthDate"] == "1974-12-25"
    assert body["_birthDate"] == {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    }
    assert body["managingOrganization"] == {"reference": "#org1"}


@pytest.mark.parametrize(
    "content_type", ["application/fhir+json", "application/json", "application/fhir+json; charset=utf-8"]
)
def test_create_in_json_read_in_xml(client: FlaskClient, content_type: str) -> None:
    """R4 http.html#mime-type: a resource sent as JSON reads back as the same FHIR XML."""
    created = client.post("/fhir/Patient", data=json.dumps(PATIENT), headers={"Content-Type": content_type})
    assert created.status_code == 201, created.data
    patient_id = created.get_json()["id"]
    read = client.get(f"/fhir/Patient/{patient_id}", headers={"Accept": "application/fhir+xml"})
    assert read.status_code == 200
    root = xml_root(read)
    assert root.tag == f"{{{FHIR_NS}}}Patient"
    assert xml_value(root, "f:id") == patient_id
    assert xml_value(root, "f:meta/f:versionId") == "1"
    assert xml_value(root, "f:name/f:family") == "Chalmers"
    assert xml_values(root, "f:name/f:given") == ["Peter", "James"]
    assert xml_value(root, "f:gender") == "male"
    assert xml_value(root, "f:birthDate") == "1974-12-25"


# --- _pretty (R4 http.html#general) ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("Patient/{id}", id="read"),
        pytest.param("Patient/{id}/_history/1", id="vread"),
        pytest.param("Patient?_id={id}", id="search"),
    ],
)
def test_pretty_json_has_the_same_content(client: FlaskClient, path: str) -> None:
    """R4 http.html#general ``_pretty``: indented JSON, same content as the compact answer."""
    patient_id = create_patient(client)
    url = f"/fhir/{path.format(id=patient_id)}"
    separator = "&" if "?" in url else "?"
    compact = client.get(url)
    pretty = client.get(f"{url}{separator}_pretty=true")
    explicit_compact = client.get(f"{url}{separator}_pretty=false")
    for response in (compact, pretty, explicit_compact):
        assert response.status_code == 200
        assert response.headers["Content-Type"] == FHIR_JSON
    assert b"\n" not in compact.data
    assert b"\n" not in explicit_compact.data
    assert b'\n  "resourceType"' in pretty.data
    compact_body, pretty_body = json.loads(compact.data), json.loads(pretty.data)
    if compact_body["resourceType"] == "Bundle":
        # A searchset is a new Bundle each time: its own id and lastUpdated differ, and its
        # links repeat the format parameters so that later pages come back the same way.
        for body in (compact_body, pretty_body):
            body.pop("id")
            body.pop("meta")
            links = body.pop("link")
            assert all(("_pretty=true" in entry["url"]) == (body is pretty_body) for entry in links)
    assert pretty_body == compact_body


def test_pretty_xml_is_indented(client: FlaskClient) -> None:
    """R4 http.html#general ``_pretty`` applies to XML as well."""
    patient_id = create_patient(client)
    response = client.get(f"/fhir/Patient/{patient_id}", query_string={"_format": "xml", "_pretty": "true"})
    root = xml_root(response)
    assert b'\n  <id value="' in response.data
    assert xml_value(root, "f:id") == patient_id


# --- formats the server cannot serve (R4 http.html#mime-type) -------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        pytest.param("GET", "/fhir/metadata", {"Accept": "text/plain"}, None, 406, id="accept-text-plain"),
        pytest.param("GET", "/fhir/Patient", {"Accept": "text/html"}, None, 406, id="accept-html"),
        pytest.param("GET", "/fhir/Patient?_format=html", {}, None, 406, id="format-html"),
        pytest.param(
            "GET", "/fhir/Patient?_format=text/plain", {"Accept": "application/fhir+json"}, None, 406, id="format-text"
        ),
        pytest.param("GET", "/fhir/Patient?_format=turtle", {}, None, 406, id="format-turtle"),
        pytest.param("POST", "/fhir/Patient", {"Content-Type": "text/plain"}, b"Patient", 415, id="post-text-plain"),
        pytest.param(
            "POST",
            "/fhir/Patient",
            {"Content-Type": "application/pdf"},
            json.dumps(PATIENT).encode(),
            415,
            id="post-pdf",
        ),
        pytest.param(
            "PUT",
            "/fhir/Patient/p1",
            {"Content-Type": "text/plain"},
            json.dumps({**PATIENT, "id": "p1"}).encode(),
            415,
            id="put-text-plain",
        ),
    ],
)
def test_unservable_formats(
    client: FlaskClient, method: str, path: str, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    """R4 http.html#mime-type: 406 when no acceptable format can be produced, 415 for an unknown body type."""
    response = client.open(path, method=method, headers=headers, data=body)
    issue = json_outcome(response, status, "not-supported")
    assert issue["diagnostics"]
    assert patient_total(client) == 0


# --- bodies that cannot be read (R4 http.html#create: 400) ---------------------------


def test_an_xml_body_is_told_every_issue(client: FlaskClient) -> None:
    """An XML body goes through the same validation as JSON, so every issue is named at once."""
    document = (
        b'<Patient xmlns="http://hl7.org/fhir"><name><given value=""/></name>'
        b'<gender value="mal"/><birthDate value="1970-13-45"/>'
        b'<contact><telecom><system value="pager2"/></telecom></contact></Patient>'
    )
    response = client.post("/fhir/Patient", data=document, headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 400
    expressions = sorted(issue["expression"][0] for issue in response.get_json()["issue"])
    assert expressions == [
        "Patient.birthDate",
        "Patient.contact[0].telecom[0].system",
        "Patient.gender",
        "Patient.name[0].given[0]",
    ]
    assert patient_total(client) == 0


@pytest.mark.parametrize(
    ("content_type", "body", "code", "diagnostics", "expression"),
    [
        pytest.param(
            "application/fhir+json",
            b'{"resourceType": "Patient",',
            "invalid",
            "line 1 column 28",
            None,
            id="truncated-json",
        ),
        pytest.param(
            "application/fhir+json",
            b'{\n  "resourceType": "Patient",\n  "gender": "male"\n',
            "invalid",
            "line 4 column 1",
            None,
            id="truncated-json-multiline",
        ),
        pytest.param(
            "application/fhir+json", b'{"resourceType": "Patient"} x', "invalid", "Extra data", None, id="trailing-data"
        ),
        pytest.param(
            "application/fhir+json",
            b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"},'
            b' "valueQuantity": {"value": NaN}}',
            "invalid",
            "not valid JSON",
            None,
            id="json-nan",
        ),
        pytest.param("application/fhir+json", b"\xff\xfe{}", "invalid", "UTF-8", None, id="not-utf8"),
        pytest.param("application/fhir+json", b"[]", "invalid", "JSON object", None, id="json-empty-array"),
        pytest.param(
            "application/fhir+json", json.dumps([PATIENT]).encode(), "invalid", "JSON object", None, id="json-array"
        ),
        pytest.param("application/fhir+json", b'"Patient"', "invalid", "JSON object", None, id="json-string"),
        pytest.param(
            "application/fhir+json",
            b'{"gender": "male"}',
            "required",
            "resourceType",
            ["resourceType"],
            id="no-resourceType",
        ),
        pytest.param("application/fhir+json", b"{}", "required", "resourceType", ["resourceType"], id="empty-object"),
        pytest.param(
            "application/fhir+json",
            b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}',
            "invalid",
            "Patient",
            ["resourceType"],
            id="json-type-differs-from-url",
        ),
        pytest.param(
            "application/fhir+xml",
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/>',
            "invalid",
            "not well-formed XML",
            None,
            id="truncated-xml",
        ),
        pytest.param(
            "application/fhir+xml",
            json.dumps(PATIENT).encode(),
            "invalid",
            "not well-formed XML",
            None,
            id="json-sent-as-xml",
        ),
        pytest.param(
            "application/fhir+xml",
            b'<Patient><gender value="male"/></Patient>',
            "invalid",
            "FHIR namespace",
            None,
            id="xml-no-namespace",
        ),
        pytest.param(
            "application/fhir+xml",
            b'<Patient xmlns="http://example.org/fhir"><gender value="male"/></Patient>',
            "invalid",
            "FHIR namespace",
            None,
            id="xml-other-namespace",
        ),
        pytest.param(
            "application/fhir+xml", b'<Foo xmlns="http://hl7.org/fhir"/>', "invalid", "Foo", None, id="xml-unknown-type"
        ),
        pytest.param(
            "application/fhir+xml",
            b'<Patient xmlns="http://hl7.org/fhir"><foo value="x"/></Patient>',
            "structure",
            "foo",
            ["Patient.foo"],
            id="xml-unknown-element",
        ),
        pytest.param(
            "application/fhir+xml",
            b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
            b'<code><text value="x"/></code></Observation>',
            "invalid",
            "Patient",
            ["resourceType"],
            id="xml-type-differs-from-url",
        ),
    ],
)
def test_unreadable_bodies(
    client: FlaskClient, content_type: str, body: bytes, code: str, diagnostics: str, expression: list[str] | None
) -> None:
    """R4 http.html#create: "400 Bad Request - resource could not be parsed"; nothing is stored."""
    response = client.post("/fhir/Patient", data=body, headers={"Content-Type": content_type})
    issue = json_outcome(response, 400, code)
    assert diagnostics in issue["diagnostics"]
    if expression is not None:
        assert issue["expression"] == expression
    assert patient_total(client) == 0


_PASSWD = Path("/etc/passwd")
_XXE_DOCUMENTS = {
    "entity-in-attribute": b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>',
    "entity-in-narrative": b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
    b'<div xmlns="http://www.w3.org/1999/xhtml">&xxe;</div></text></Patient>',
    "external-dtd": b'<!DOCTYPE Patient SYSTEM "file:///etc/passwd">'
    b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/></Patient>',
    "parameter-entity": b'<!DOCTYPE Patient [<!ENTITY % xxe SYSTEM "file:///etc/passwd"> %xxe;]>'
    b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/></Patient>',
    "unused-entity": b'<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/></Patient>',
    "billion-laughs": b'<!DOCTYPE Patient [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&d;"/></name></Patient>',
}


@pytest.mark.parametrize("document", list(_XXE_DOCUMENTS.values()), ids=list(_XXE_DOCUMENTS))
def test_xml_with_a_doctype_is_refused(client: FlaskClient, document: bytes) -> None:
    """R4 xml.html: FHIR XML carries no DOCTYPE; entity tricks (XXE) are 400 and leak nothing."""
    response = client.post("/fhir/Patient", data=document, headers={"Content-Type": "application/fhir+xml"})
    json_outcome(response, 400, "invalid")
    assert b"root:" not in response.data
    assert b"/bin/" not in response.data
    if _PASSWD.exists():
        for line in _PASSWD.read_bytes().splitlines()[:3]:
            assert line not in response.data
    assert patient_total(client) == 0


# --- errors in the format asked for (R4 http.html#errors) ----------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [
        pytest.param(
            "GET", "/fhir/Patient/nope", {"Accept": "application/fhir+xml"}, None, 404, "not-found", id="read-unknown"
        ),
        pytest.param("GET", "/fhir/Patient/nope?_format=xml", {}, None, 404, "not-found", id="read-unknown-format"),
        pytest.param("GET", "/fhir/Foo/1", {"Accept": "application/xml"}, None, 404, "not-found", id="unknown-type"),
        pytest.param("GET", "/nothing", {"Accept": "application/fhir+xml"}, None, 404, "not-found", id="outside-fhir"),
        pytest.param(
            "GET", "/fhir/Patient/bad$id", {"Accept": "application/fhir+xml"}, None, 400, "invalid", id="bad-id"
        ),
        pytest.param(
            "DELETE", "/fhir/metadata", {"Accept": "application/fhir+xml"}, None, 405, "not-supported", id="405"
        ),
        pytest.param(
            "POST",
            "/fhir/Patient",
            {"Accept": "application/fhir+xml", "Content-Type": "text/plain"},
            b"x",
            415,
            "not-supported",
            id="415",
        ),
        pytest.param(
            "POST",
            "/fhir/Patient?_format=xml",
            {"Content-Type": "application/fhir+json"},
            b'{"resourceType": "Patient",',
            400,
            "invalid",
            id="malformed-json",
        ),
        pytest.param(
            "POST",
            "/fhir/Patient",
            {"Accept": "application/fhir+xml", "Content-Type": "application/fhir+xml"},
            b"<Patient",
            400,
            "invalid",
            id="malformed-xml",
        ),
        pytest.param("GET", "/fhir/$nonexistent?_format=xml", {}, None, 501, "not-supported", id="501"),
    ],
)
def test_errors_in_xml_when_xml_was_asked_for(
    client: FlaskClient, method: str, path: str, headers: dict[str, str], body: bytes | None, status: int, code: str
) -> None:
    """R4 http.html#errors: the OperationOutcome comes in the format the client asked for."""
    response = client.open(path, method=method, headers=headers, data=body)
    assert response.status_code == status, response.data
    assert_no_html(response)
    root = xml_root(response)
    assert root.tag == f"{{{FHIR_NS}}}OperationOutcome"
    assert xml_value(root, "f:issue/f:severity") == "error"
    assert xml_value(root, "f:issue/f:code") == code
    assert xml_value(root, "f:issue/f:diagnostics")


# --- decimals keep their digits (R4 json.html#primitive, datatypes.html#decimal) -------

OBSERVATION_TEXT = (
    '{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
    '"valueQuantity":{"value":1.50,"unit":"kg"},'
    '"component":['
    '{"code":{"text":"tiny"},"valueQuantity":{"value":1.000000000000000000E-245}},'
    '{"code":{"text":"long"},"valueQuantity":{"value":12345678901234567890.123456789}}'
    "]}"
)
DECIMALS = ("1.50", "1.000000000000000000E-245", "12345678901234567890.123456789")


def _json_decimal(text: str) -> re.Pattern[bytes]:
    return re.compile(rb'"value":\s*' + re.escape(text.encode()) + rb"[,}\s]")


def create_observation(client: FlaskClient) -> TestResponse:
    response = client.post(
        "/fhir/Observation", data=OBSERVATION_TEXT, headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 201, response.data
    return response


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("Observation/{id}", id="read"),
        pytest.param("Observation/{id}?_pretty=true", id="read-pretty"),
        pytest.param("Observation/{id}/_history/1", id="vread"),
        pytest.param("Observation?_id={id}", id="search"),
        pytest.param("Observation?_id={id}&_pretty=true", id="search-pretty"),
        pytest.param("Observation/{id}/_history", id="history"),
    ],
)
def test_decimals_read_back_as_sent_in_json(client: FlaskClient, path: str) -> None:
    """R4 json.html: decimal precision is significant; the JSON text keeps the digits sent (not floats)."""
    observation_id = create_observation(client).get_json()["id"]
    response = client.get(f"/fhir/{path.format(id=observation_id)}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == FHIR_JSON
    for text in DECIMALS:
        assert _json_decimal(text).search(response.data), (text, response.data)


def test_decimals_in_the_create_answer(client: FlaskClient) -> None:
    """R4 http.html#create: the returned resource is what was stored, digits included."""
    response = create_observation(client)
    for text in DECIMALS:
        assert _json_decimal(text).search(response.data), (text, response.data)


def test_a_decimal_past_64_bits_without_a_fraction_reads_back_as_sent(client: FlaskClient) -> None:
    """R4 datatypes.html#decimal has no size limit: a value with more digits than a 64-bit
    integer holds (which the fast JSON writer refuses) is stored and served with its digits."""
    digits = "123456789012345678901234567890"
    text = OBSERVATION_TEXT.replace("1.50", digits)
    response = client.post("/fhir/Observation", data=text, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201, response.data
    assert _json_decimal(digits).search(response.data), response.data
    read = client.get(f"/fhir/Observation/{response.get_json()['id']}")
    assert _json_decimal(digits).search(read.data), read.data


def test_decimals_read_back_as_sent_in_xml(client: FlaskClient) -> None:
    """R4 datatypes.html#decimal: "the original precision should be preserved" in XML too."""
    observation_id = create_observation(client).get_json()["id"]
    root = xml_root(client.get(f"/fhir/Observation/{observation_id}", query_string={"_format": "xml"}))
    assert xml_value(root, "f:valueQuantity/f:value") == "1.50"
    assert xml_values(root, "f:component/f:valueQuantity/f:value") == list(DECIMALS[1:])


def test_decimals_sent_in_xml_are_stored_as_sent(client: FlaskClient) -> None:
    """R4 datatypes.html#decimal: a decimal sent in XML keeps its precision when read as JSON."""
    document = (
        b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="weight"/></code>'
        b'<valueQuantity><value value="1.50"/></valueQuantity></Observation>'
    )
    created = client.post("/fhir/Observation", data=document, headers={"Content-Type": "application/fhir+xml"})
    assert created.status_code == 201, created.data
    read = client.get(f"/fhir/Observation/{created.get_json()['id']}")
    assert _json_decimal("1.50").search(read.data), read.data


NESTED_DECIMALS = (
    '{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
    '"contained":[{"resourceType":"Observation","id":"c","status":"final","code":{"text":"c"},'
    '"valueQuantity":{"value":2.500}}],'
    '"_status":{"extension":[{"url":"http://example.org/x","valueDecimal":0.10}]},'
    '"valueQuantity":{"value":80},"referenceRange":[{"low":{"value":1.0}},{"high":{"value":99.90}}]}'
)


def test_decimals_everywhere_in_xml(client: FlaskClient) -> None:
    """R4 datatypes.html#decimal: in contained resources, extensions of primitives, repeats and
    Bundles, XML carries the digits of the stored JSON (an integral ``80`` is not ``80.0``)."""
    created = client.post("/fhir/Observation", data=NESTED_DECIMALS, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.data
    observation_id = created.get_json()["id"]
    read = xml_root(client.get(f"/fhir/Observation/{observation_id}", query_string={"_format": "xml"}))
    searched = xml_root(client.get("/fhir/Observation", query_string={"_id": observation_id, "_format": "xml"}))
    bundled = searched.find("f:entry/f:resource/f:Observation", NS)
    assert bundled is not None
    for root in (read, bundled):
        assert xml_value(root, "f:contained/f:Observation/f:valueQuantity/f:value") == "2.500"
        assert xml_value(root, "f:status/f:extension/f:valueDecimal") == "0.10"
        assert xml_value(root, "f:valueQuantity/f:value") == "80"
        assert xml_values(root, "f:referenceRange/*/f:value") == ["1.0", "99.90"]


def test_decimals_sent_in_xml_read_back_in_xml(client: FlaskClient) -> None:
    """R4 datatypes.html#decimal: XML in, XML out, digits unchanged, nested ones too."""
    document = (
        b'<Observation xmlns="http://hl7.org/fhir"><status value="final"><extension url="http://example.org/x">'
        b'<valueDecimal value="0.10"/></extension></status><code><text value="weight"/></code>'
        b'<valueQuantity><value value="1.50"/></valueQuantity>'
        b'<component><code><text value="a"/></code>'
        b'<valueQuantity><value value="1.000E-245"/></valueQuantity></component>'
        b'<component><code><text value="b"/></code><valueQuantity><value value="70"/></valueQuantity></component>'
        b"</Observation>"
    )
    created = client.post("/fhir/Observation", data=document, headers={"Content-Type": "application/fhir+xml"})
    assert created.status_code == 201, created.data
    observation_id = created.get_json()["id"]
    root = xml_root(client.get(f"/fhir/Observation/{observation_id}", query_string={"_format": "xml"}))
    assert xml_value(root, "f:valueQuantity/f:value") == "1.50"
    assert xml_value(root, "f:status/f:extension/f:valueDecimal") == "0.10"
    assert xml_values(root, "f:component/f:valueQuantity/f:value") == ["1.000E-245", "70"]
    read = client.get(f"/fhir/Observation/{observation_id}").data
    for text in ("1.50", "1.000E-245", "70"):
        assert _json_decimal(text).search(read), read
    assert b'"valueDecimal":0.10' in read


@pytest.mark.parametrize(
    ("value", "version"),
    [
        pytest.param("1.50", "1", id="same-digits-no-new-version"),
        pytest.param("1.500", "2", id="more-digits-new-version"),
        pytest.param("1.5", "2", id="fewer-digits-new-version"),
    ],
)
def test_decimal_precision_counts_as_a_change(client: FlaskClient, value: str, version: str) -> None:
    """R4 datatypes.html#decimal: 1.50 and 1.500 are different values, so an update to either is a change."""
    observation_id = create_observation(client).get_json()["id"]
    text = OBSERVATION_TEXT.replace('"value":1.50', f'"value":{value}').replace(
        '{"resourceType":"Observation",', f'{{"resourceType":"Observation","id":"{observation_id}",'
    )
    updated = client.put(
        f"/fhir/Observation/{observation_id}", data=text, headers={"Content-Type": "application/fhir+json"}
    )
    assert updated.status_code == 200, updated.data
    assert updated.headers["ETag"] == f'W/"{version}"'
    assert _json_decimal(value).search(client.get(f"/fhir/Observation/{observation_id}").data)
