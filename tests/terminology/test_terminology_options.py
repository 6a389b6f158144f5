"""Terminology over a stored hierarchical CodeSystem and the packaged R4 ones: instance-level
``$lookup`` / ``$expand`` / ``$validate-code``, ``displayLanguage`` and ``Accept-Language``,
``$lookup`` ``property``, ``activeOnly``, nested expansions and ``CodeSystem/$subsumes``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from tests.factories import put

SHAPES = "http://example.org/fhir/CodeSystem/shapes"
SHAPES_VS = "http://example.org/fhir/ValueSet/shapes"
PUBLICATION = "http://hl7.org/fhir/publication-status"
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SNOMED = "http://snomed.info/sct"


def concept(code: str, *children: dict[str, Any], **more: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"code": code, "display": code.capitalize(), **more}
    if children:
        found["concept"] = list(children)
    return found


def inactive(status: str) -> list[dict[str, Any]]:
    return (
        [{"code": "inactive", "valueBoolean": True}]
        if status == "inactive"
        else [{"code": "status", "valueCode": status}]
    )


@pytest.fixture(scope="module")
def client(module_database_url: str) -> Iterator[FlaskClient]:
    """A server holding the ``shapes`` code system (an is-a tree with an abstract root,
    designations, a retired, an inactive and a deprecated concept), value sets over it, a
    grouped-by code system, a fragment and one whose parents loop; the tests only read."""
    app = create_app({"database_url": module_database_url, "auth_mode": "none", "audit": False})
    app.testing = True
    client = app.test_client()
    shapes = concept(
        "shape",
        concept(
            "polygon",
            concept("square", designation=[{"language": "fr-CA", "value": "Carré"}]),
            concept("triangle"),
            designation=[{"language": "fr", "value": "Polygone"}, {"language": "de", "value": "Vieleck"}],
        ),
        concept("circle", definition="Round"),
        concept("ellipse", property=inactive("retired")),
        concept("oval", property=inactive("inactive")),
        concept("rhombus", property=inactive("deprecated")),
        property=[{"code": "notSelectable", "valueBoolean": True}],
        designation=[{"language": "fr", "value": "Forme"}],
    )
    put(
        client,
        {
            "resourceType": "CodeSystem",
            "id": "shapes",
            "url": SHAPES,
            "version": "2",
            "status": "active",
            "content": "complete",
            "hierarchyMeaning": "is-a",
            "language": "en",
            "property": [
                {"code": "notSelectable", "type": "boolean"},
                {"code": "status", "type": "code"},
                {"code": "inactive", "type": "boolean"},
            ],
            "concept": [shapes],
        },
    )
    for res_id, more in (
        ("grouped", {"hierarchyMeaning": "grouped-by"}),
        ("fragment", {"content": "fragment"}),
        ("no-url", {}),
    ):
        resource = {
            "resourceType": "CodeSystem",
            "id": res_id,
            "url": f"http://example.org/fhir/CodeSystem/{res_id}",
            "status": "active",
            "content": "complete",
            "concept": [concept("a", concept("b"))],
            **more,
        }
        if res_id == "no-url":
            del resource["url"]
        put(client, resource)
    looping = [
        concept("a", property=[{"code": "parent", "valueCode": "b"}]),
        concept("b", property=[{"code": "parent", "valueCode": "a"}]),
    ]
    put(
        client,
        {
            "resourceType": "CodeSystem",
            "id": "loop",
            "url": "http://example.org/fhir/CodeSystem/loop",
            "status": "active",
            "content": "complete",
            "concept": looping,
        },
    )
    put(
        client,
        {
            "resourceType": "ValueSet",
            "id": "shapes",
            "url": SHAPES_VS,
            "status": "active",
            "compose": {"include": [{"system": SHAPES}]},
        },
    )
    listed = {
        "system": SHAPES,
        "concept": [
            {"code": "circle", "display": "Round one", "designation": [{"language": "nl", "value": "Cirkel"}]},
            {"code": "oval"},
        ],
    }
    put(client, {"resourceType": "ValueSet", "id": "listed", "status": "active", "compose": {"include": [listed]}})
    put(
        client,
        {
            "resourceType": "ValueSet",
            "id": "loop",
            "status": "active",
            "compose": {"include": [{"system": "http://example.org/fhir/CodeSystem/loop"}]},
        },
    )
    yield client
    services_of(app).repository.engine.dispose()


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def issue(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    found: dict[str, Any] = body["issue"][0]
    return found


def values(body: dict[str, Any], name: str) -> list[Any]:
    assert body["resourceType"] == "Parameters", body
    return [next(v for k, v in p.items() if k.startswith("value")) for p in body["parameter"] if p["name"] == name]


def properties(body: dict[str, Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for p in body["parameter"]:
        if p["name"] == "property":
            code, value = p["part"]
            found.setdefault(code["valueCode"], []).append(next(v for k, v in value.items() if k.startswith("value")))
    return found


def designations(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [
        (
            next((q["valueCode"] for q in p["part"] if q["name"] == "language"), None),
            next(q["valueString"] for q in p["part"] if q["name"] == "value"),
        )
        for p in body["parameter"]
        if p["name"] == "designation"
    ]


def codes(contains: list[dict[str, Any]]) -> list[str]:
    return [entry["code"] for entry in contains]


def tree(contains: list[dict[str, Any]]) -> list[Any]:
    return [(e["code"], tree(e["contains"])) if "contains" in e else e["code"] for e in contains]


# Instance level


def test_lookup_on_a_stored_code_system(client: FlaskClient) -> None:
    body = ok(client.get("/fhir/CodeSystem/shapes/$lookup?code=square"))
    assert values(body, "display") == ["Square"] and values(body, "version") == ["2"]
    assert properties(body)["parent"] == ["polygon"]
    same = ok(client.get(f"/fhir/CodeSystem/shapes/$lookup?system={SHAPES}&code=square"))
    assert values(same, "display") == ["Square"]
    assert "none" in issue(client.get("/fhir/CodeSystem/none/$lookup?code=square"), 404)["diagnostics"]
    assert "nonsense" in issue(client.get("/fhir/CodeSystem/shapes/$lookup?code=nonsense"), 404)["diagnostics"]
    other = issue(client.get(f"/fhir/CodeSystem/shapes/$lookup?system={VER_STATUS}&code=square"), 400)
    assert VER_STATUS in other["diagnostics"] and SHAPES in other["diagnostics"]
    assert issue(client.get("/fhir/CodeSystem/shapes/$lookup"), 400)["expression"] == ["code"]
    assert "no url" in issue(client.get("/fhir/CodeSystem/no-url/$lookup?code=a"), 400)["diagnostics"]


def test_validate_code_and_expand_on_stored_instances(client: FlaskClient) -> None:
    good = ok(client.get(f"/fhir/ValueSet/shapes/$validate-code?system={SHAPES}&code=square"))
    assert values(good, "result") == [True] and values(good, "display") == ["Square"]
    in_system = ok(client.get("/fhir/CodeSystem/shapes/$validate-code?code=triangle"))
    assert values(in_system, "result") == [True]
    elsewhere = ok(client.get(f"/fhir/CodeSystem/shapes/$validate-code?system={VER_STATUS}&code=triangle"))
    assert values(elsewhere, "result") == [False] and VER_STATUS in values(elsewhere, "message")[0]
    assert issue(client.get("/fhir/ValueSet/none/$expand"), 404)["code"] == "not-found"
    assert issue(client.get("/fhir/CodeSystem/none/$validate-code?code=a"), 404)["code"] == "not-found"


# Languages


def test_lookup_display_language(client: FlaskClient) -> None:
    def display(query: str, **headers: str) -> list[Any]:
        return values(ok(client.get(f"/fhir/CodeSystem/$lookup?{query}", headers=headers)), "display")

    draft = f"system={PUBLICATION}&code=draft"
    assert display(f"{draft}&displayLanguage=nl") == ["ontwerp"]
    # No designation in German: the code system's display, never a guess.
    assert display(f"{draft}&displayLanguage=de") == ["Draft"]
    assert display(draft, **{"Accept-Language": "de, nl;q=0.5"}) == ["ontwerp"]
    assert display(draft, **{"Accept-Language": "ru;q=0.2, nl;q=0.9"}) == ["ontwerp"]
    assert display(draft, **{"Accept-Language": "nl;q=0, *"}) == ["Draft"]
    assert display(draft, **{"Accept-Language": "nl;q=oops"}) == ["Draft"]
    # The parameter wins over the header.
    assert display(f"{draft}&displayLanguage=ru", **{"Accept-Language": "nl"}) == ["черновик"]
    # A language range finds a more specific tag and the other way round.
    assert display(f"system={SHAPES}&code=square&displayLanguage=fr") == ["Carré"]
    assert display(f"system={SHAPES}&code=polygon&displayLanguage=fr-BE") == ["Polygone"]
    # The code system is in English: its display is the English one.
    assert display(f"system={SHAPES}&code=polygon", **{"Accept-Language": "en-GB, fr"}) == ["Polygon"]


def test_expand_in_a_display_language_with_designations(client: FlaskClient) -> None:
    body = ok(client.get("/fhir/ValueSet/shapes/$expand?displayLanguage=fr&includeDesignations=true"))
    shown = {e["code"]: e.get("display") for e in body["expansion"]["contains"]}
    assert shown["shape"] == "Forme" and shown["polygon"] == "Polygone" and shown["square"] == "Carré"
    assert shown["circle"] == "Circle"
    polygon = next(e for e in body["expansion"]["contains"] if e["code"] == "polygon")
    assert polygon["designation"] == [{"language": "fr", "value": "Polygone"}]
    assert {"name": "displayLanguage", "valueString": "fr"} in body["expansion"]["parameter"]
    assert {"name": "includeDesignations", "valueBoolean": True} in body["expansion"]["parameter"]
    every = ok(client.get("/fhir/ValueSet/shapes/$expand?includeDesignations=true"))
    polygon = next(e for e in every["expansion"]["contains"] if e["code"] == "polygon")
    assert [d["language"] for d in polygon["designation"]] == ["fr", "de"] and polygon["display"] == "Polygon"
    plain = ok(client.get("/fhir/ValueSet/shapes/$expand"))
    assert all("designation" not in e for e in plain["expansion"]["contains"])
    header = ok(client.get("/fhir/ValueSet/listed/$expand", headers={"Accept-Language": "nl"}))
    assert [e["display"] for e in header["expansion"]["contains"]] == ["Cirkel", "Oval"]
    listed = ok(client.get("/fhir/ValueSet/listed/$expand"))
    assert [e["display"] for e in listed["expansion"]["contains"]] == ["Round one", "Oval"]


def test_validate_code_displays_and_languages(client: FlaskClient) -> None:
    url = f"/fhir/CodeSystem/$validate-code?url={SHAPES}&code=polygon"
    assert values(ok(client.get(f"{url}&display=Polygone")), "result") == [True]
    wrong = ok(client.get(f"{url}&display=Vieleck&displayLanguage=fr"))
    assert values(wrong, "result") == [False] and "Vieleck" in values(wrong, "message")[0]
    french = ok(client.get(f"{url}&displayLanguage=fr"))
    assert values(french, "display") == ["Polygone"]
    in_set = ok(client.get("/fhir/ValueSet/shapes/$validate-code?code=polygon&display=vieleck"))
    assert values(in_set, "result") == [True]


# $lookup property


def test_lookup_returns_the_requested_properties_only(client: FlaskClient) -> None:
    base = f"/fhir/CodeSystem/$lookup?system={SHAPES}"
    parent_only = ok(client.get(f"{base}&code=polygon&property=parent"))
    assert properties(parent_only) == {"parent": ["shape"]}
    assert designations(parent_only) == [] and values(parent_only, "version") == []
    assert values(parent_only, "name") == [SHAPES] and values(parent_only, "display") == ["Polygon"]
    german = ok(client.get(f"{base}&code=polygon&property=lang.de&property=version"))
    assert designations(german) == [("de", "Vieleck")] and values(german, "version") == ["2"]
    assert properties(german) == {}
    every = ok(client.get(f"{base}&code=polygon&property=designation&property=child"))
    assert designations(every) == [("fr", "Polygone"), ("de", "Vieleck")]
    assert properties(every) == {"child": ["square", "triangle"]}
    circle = ok(client.get(f"{base}&code=circle&property=definition&property=inactive"))
    assert properties(circle) == {"definition": ["Round"], "inactive": [False]}
    ellipse = ok(client.get(f"{base}&code=ellipse&property=inactive&property=status"))
    assert properties(ellipse) == {"status": ["retired"], "inactive": [True]}
    oval = ok(client.get(f"{base}&code=oval&property=inactive"))
    assert properties(oval) == {"inactive": [True]}
    # Without property: all but the definition.
    whole = ok(client.get(f"{base}&code=polygon"))
    assert set(properties(whole)) == {"parent", "child"} and len(designations(whole)) == 2


# activeOnly and inactive codes


def test_active_only_leaves_inactive_codes_out(client: FlaskClient) -> None:
    whole = ok(client.get("/fhir/ValueSet/shapes/$expand"))["expansion"]
    assert codes(whole["contains"]) == [
        "shape",
        "polygon",
        "square",
        "triangle",
        "circle",
        "ellipse",
        "oval",
        "rhombus",
    ]
    marked = {e["code"] for e in whole["contains"] if e.get("inactive")}
    assert marked == {"ellipse", "oval"}
    active = ok(client.get("/fhir/ValueSet/shapes/$expand?activeOnly=true"))["expansion"]
    # Deprecated is not inactive (R4 codesystem-concept-properties).
    assert codes(active["contains"]) == ["shape", "polygon", "square", "triangle", "circle", "rhombus"]
    assert active["total"] == 6
    assert {"name": "activeOnly", "valueBoolean": True} in active["parameter"]
    listed = ok(client.get("/fhir/ValueSet/listed/$expand?activeOnly=true"))["expansion"]
    assert codes(listed["contains"]) == ["circle"]
    refused = issue(client.get("/fhir/ValueSet/shapes/$expand?activeOnly=yes"), 400)
    assert refused["expression"] == ["activeOnly"] and "yes" in refused["diagnostics"]


def test_validate_code_of_an_inactive_code_is_true_with_a_message(client: FlaskClient) -> None:
    for path in (
        f"CodeSystem/$validate-code?url={SHAPES}&code=ellipse",
        "CodeSystem/shapes/$validate-code?code=oval",
        f"ValueSet/shapes/$validate-code?system={SHAPES}&code=oval",
    ):
        body = ok(client.get(f"/fhir/{path}"))
        assert values(body, "result") == [True]
        assert "inactive" in values(body, "message")[0]
    active = ok(client.get(f"/fhir/ValueSet/shapes/$validate-code?system={SHAPES}&code=rhombus"))
    assert values(active, "result") == [True] and values(active, "message") == []


# Nested expansions


def test_expansion_nests_by_the_hierarchy_when_asked(client: FlaskClient) -> None:
    nested = ok(client.get("/fhir/ValueSet/shapes/$expand?excludeNested=false"))["expansion"]
    assert tree(nested["contains"]) == [
        ("shape", [("polygon", ["square", "triangle"]), "circle", "ellipse", "oval", "rhombus"])
    ]
    assert nested["contains"][0]["abstract"] is True and nested["total"] == 8
    assert "abstract" not in nested["contains"][0]["contains"][0]
    assert {"name": "excludeNested", "valueBoolean": False} in nested["parameter"]
    flat = ok(client.get("/fhir/ValueSet/shapes/$expand?excludeNested=true"))["expansion"]
    assert all("contains" not in e for e in flat["contains"]) and len(flat["contains"]) == 8
    # A parent left out of the expansion: its children come up to the top.
    filtered = ok(client.get("/fhir/ValueSet/shapes/$expand?excludeNested=false&filter=gon"))["expansion"]
    assert tree(filtered["contains"]) == ["polygon"]
    active = ok(client.get("/fhir/ValueSet/shapes/$expand?excludeNested=false&activeOnly=true"))["expansion"]
    assert tree(active["contains"]) == [("shape", [("polygon", ["square", "triangle"]), "circle", "rhombus"])]


def test_nested_expansion_is_not_paged_but_count_0_gives_its_size(client: FlaskClient) -> None:
    paged = ok(client.get("/fhir/ValueSet/shapes/$expand?excludeNested=false&offset=2&count=1"))["expansion"]
    assert tree(paged["contains"])[0][0] == "shape" and paged["total"] == 8
    assert "offset" not in paged
    assert {p["name"] for p in paged["parameter"]} == {"excludeNested"}
    size = ok(client.get("/fhir/ValueSet/shapes/$expand?excludeNested=false&count=0"))["expansion"]
    assert size["total"] == 8 and "contains" not in size


def test_nesting_a_looping_hierarchy_loses_no_code(client: FlaskClient) -> None:
    nested = ok(client.get("/fhir/ValueSet/loop/$expand?excludeNested=false"))["expansion"]
    # a goes under its parent b; b's parent a would close the loop, so b stays at the top.
    assert tree(nested["contains"]) == [("b", ["a"])]


def test_nesting_a_packaged_hierarchy(client: FlaskClient) -> None:
    body = ok(client.get("/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/item-type&excludeNested=false"))
    top = {e["code"]: e for e in body["expansion"]["contains"]}
    assert set(top) == {"group", "display", "question"}
    assert top["question"]["abstract"] is True and "boolean" in codes(top["question"]["contains"])


# $subsumes


def subsumes(client: FlaskClient, query: str) -> list[Any]:
    return values(ok(client.get(f"/fhir/CodeSystem/$subsumes?{query}")), "outcome")


@pytest.mark.parametrize(
    ("code_a", "code_b", "outcome"),
    [
        ("shape", "square", "subsumes"),
        ("square", "shape", "subsumed-by"),
        ("square", "circle", "not-subsumed"),
        ("polygon", "polygon", "equivalent"),
    ],
)
def test_subsumes_in_a_stored_code_system(client: FlaskClient, code_a: str, code_b: str, outcome: str) -> None:
    assert subsumes(client, f"system={SHAPES}&codeA={code_a}&codeB={code_b}") == [outcome]
    instance = ok(client.get(f"/fhir/CodeSystem/shapes/$subsumes?codeA={code_a}&codeB={code_b}"))
    assert values(instance, "outcome") == [outcome]


def test_subsumes_with_codings_and_packaged_systems(client: FlaskClient) -> None:
    sent = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codingA", "valueCoding": {"system": VER_STATUS, "code": "provisional"}},
            {"name": "codingB", "valueCoding": {"system": VER_STATUS, "code": "unconfirmed"}},
        ],
    }
    assert values(ok(client.post("/fhir/CodeSystem/$subsumes", json=sent)), "outcome") == ["subsumed-by"]
    assert subsumes(client, f"system={VER_STATUS}&version=4.0.1&codeA=unconfirmed&codeB=differential") == ["subsumes"]


def test_subsumes_refusals(client: FlaskClient) -> None:
    def refused(query: str, status: int = 400, path: str = "CodeSystem/$subsumes") -> dict[str, Any]:
        return issue(client.get(f"/fhir/{path}?{query}"), status)

    not_held = refused(f"system={SNOMED}&codeA=1&codeB=2")
    assert not_held["code"] == "not-supported" and SNOMED in not_held["diagnostics"]
    missing = refused(f"system={SHAPES}&codeA=hexagon&codeB=square")
    assert (
        missing["code"] == "code-invalid" and missing["expression"] == ["codeA"] and "hexagon" in missing["diagnostics"]
    )
    assert refused("codeA=a&codeB=b")["expression"] == ["system"]
    assert refused(f"system={SHAPES}&codeA=square")["expression"] == ["codeB"]
    both = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codeA", "valueCode": "square"},
            {"name": "codingA", "valueCoding": {"system": SHAPES, "code": "square"}},
            {"name": "codeB", "valueCode": "circle"},
        ],
    }
    assert issue(client.post("/fhir/CodeSystem/$subsumes", json=both), 400)["expression"] == ["codeA"]
    grouped = refused("codeA=a&codeB=b", path="CodeSystem/grouped/$subsumes")
    assert grouped["code"] == "not-supported" and "grouped-by" in grouped["diagnostics"]
    fragment = refused("codeA=a&codeB=b", path="CodeSystem/fragment/$subsumes")
    assert fragment["code"] == "not-supported" and "fragment" in fragment["diagnostics"]
    assert refused("codeA=a&codeB=b", 404, "CodeSystem/none/$subsumes")["code"] == "not-found"
    other = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "system", "valueUri": SHAPES},
            {"name": "codingA", "valueCoding": {"system": VER_STATUS, "code": "provisional"}},
            {"name": "codeB", "valueCode": "square"},
        ],
    }
    mixed = issue(client.post("/fhir/CodeSystem/$subsumes", json=other), 400)
    assert mixed["expression"] == ["codingA"] and VER_STATUS in mixed["diagnostics"] and SHAPES in mixed["diagnostics"]
    no_code = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codingA", "valueCoding": {"system": SHAPES}},
            {"name": "codeB", "valueCode": "square"},
        ],
    }
    assert issue(client.post("/fhir/CodeSystem/$subsumes", json=no_code), 400)["expression"] == ["codingA"]


def test_capability_statement_lists_subsumes(client: FlaskClient) -> None:
    body = ok(client.get("/fhir/metadata"))
    code_system = next(r for r in body["rest"][0]["resource"] if r["type"] == "CodeSystem")
    operations = {o["name"]: o["definition"] for o in code_system["operation"]}
    assert operations["subsumes"] == "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes"


def test_lookup_and_validate_code_in_systems_not_held_or_partly_held(client: FlaskClient) -> None:
    unknown = issue(client.get("/fhir/CodeSystem/$lookup?system=http://example.org/unknown&code=a"), 400)
    assert unknown["code"] == "not-supported" and "http://example.org/unknown" in unknown["diagnostics"]
    versioned = issue(client.get(f"/fhir/CodeSystem/$lookup?system={SHAPES}&version=9&code=a"), 400)
    assert f"{SHAPES}|9" in versioned["diagnostics"]
    for url, said in (
        ("http://example.org/unknown", "not held"),
        ("http://example.org/fhir/CodeSystem/fragment", "fragment"),
    ):
        body = ok(client.get(f"/fhir/CodeSystem/$validate-code?url={url}&code=zz"))
        assert values(body, "result") == [False] and said in values(body, "message")[0]
    assert issue(client.get("/fhir/CodeSystem/$validate-code?code=zz"), 400)["expression"] == ["url"]
    used = ok(client.get("/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/resource-types&code=Account"))
    spanish = next(p for p in used["parameter"] if p["name"] == "designation" and p["part"][0]["valueCode"] == "es")
    assert spanish["part"][1]["valueCoding"]["code"] == "display"


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"resourceType": "Patient"}, None),
        ({"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}, None),
        ({"resourceType": "Parameters", "parameter": [{"name": "url"}]}, "url"),
        ({"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": SHAPES_VS}] * 2}, "url"),
        ({"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": ""}]}, "url"),
        ({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "valueString": "x"}]}, "valueSet"),
        (
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "valueSet", "resource": {"resourceType": "Patient"}}],
            },
            "valueSet",
        ),
        ({"resourceType": "Parameters", "parameter": [{"name": "count", "valueString": "-1"}]}, "count"),
        ({"resourceType": "Parameters", "parameter": [{"name": "filter", "valueString": "x"}]}, "url"),
    ],
)
def test_bad_terminology_inputs_are_400_naming_them(
    client: FlaskClient, body: dict[str, Any], expression: str | None
) -> None:
    found = issue(client.post("/fhir/ValueSet/$expand", json=body), 400)
    assert found.get("expression", [None]) == [expression]


def test_validate_code_input_refusals_and_codes_not_there(client: FlaskClient) -> None:
    absent = ok(client.get("/fhir/CodeSystem/shapes/$validate-code?code=hexagon"))
    assert values(absent, "result") == [False] and "hexagon" in values(absent, "message")[0]

    def refused(*parameter: dict[str, Any]) -> dict[str, Any]:
        body = {"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": SHAPES_VS}, *parameter]}
        return issue(client.post("/fhir/ValueSet/$validate-code", json=body), 400)

    assert refused({"name": "codeableConcept", "valueCodeableConcept": {"text": "x"}})["expression"] == [
        "codeableConcept"
    ]
    assert refused({"name": "coding", "valueCoding": {"system": SHAPES}})["expression"] == ["coding"]
    assert refused({"name": "display", "valueString": "Square"})["expression"] == ["code"]
    importing = {
        "resourceType": "ValueSet",
        "status": "draft",
        "compose": {"include": [{"valueSet": ["http://example.org/fhir/ValueSet/none"]}]},
    }
    sent = {
        "resourceType": "Parameters",
        "parameter": [{"name": "valueSet", "resource": importing}, {"name": "code", "valueCode": "a"}],
    }
    assert issue(client.post("/fhir/ValueSet/$validate-code", json=sent), 400)["code"] == "not-found"
    coding = {"system": SHAPES, "code": "square"}
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "url", "valueUri": SHAPES_VS}, {"name": "coding", "valueCoding": coding}],
    }
    assert values(ok(client.post("/fhir/ValueSet/$validate-code", json=body)), "result") == [True]
