"""Hypothesis strategies for careless and hostile FHIR requests, and the properties every answer
keeps: no 5xx, every error an OperationOutcome, nothing stored by a failed request.

Bodies start from the official R4 examples in ``fixtures/official-r4-examples`` and are mutated:
keys dropped, duplicated or given values of the wrong JSON type, strings with control characters
and any Unicode, numbers beyond a double, nesting. Query strings, headers, Bundles and JSON Patch
documents are drawn from the names and values the server knows, mixed with garbage. The test
suite draws a few hundred of these; ``bench/fuzz.py`` draws thousands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

from hypothesis import strategies as st

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "official-r4-examples"
RESOURCE_TYPES = ("Patient", "Observation", "Condition", "Encounter", "DiagnosticReport", "RiskAssessment")
FHIR_NS = "http://hl7.org/fhir"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Case:
    """One HTTP request: method, path with query string, headers and the raw body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def describe(self, limit: int = 300) -> str:
        body = "" if self.body is None else " " + self.body[:limit].decode("utf-8", "backslashreplace")
        return f"{self.method} {self.path[:limit]} {self.headers}{body}"


def load_examples() -> list[dict[str, Any]]:
    """The official examples that are resources of their own (Bundles are drawn separately)."""
    examples = []
    for path in sorted(EXAMPLES_DIR.glob("[!_]*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource.get("resourceType") not in ("Bundle", "OperationOutcome"):
            examples.append(resource)
    return examples


EXAMPLES = load_examples()

# --- values ---------------------------------------------------------------------------------------

NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\x01\x1f\x7f",
        "\t\r\n",
        "\ufeff",
        "\u202e",
        "💉",
        "Ω" * 300,
        "null",
        "1e400",
        "../../etc/passwd",
        "<div>",
        "' OR 1=1 --",
        "%00",
        "%",
        "~2",
        "Patient ",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "Patient/example/_history/99999999999999999999",
        "2024-13-45",
        "x" * 5000,
    ]
)
NASTY_NUMBERS = st.sampled_from(
    [0, -0.0, -1, 2**31, 2**63, 10**30, 10**400, 1e300, 1.7e308, 5e-324, 0.1, -1e-300, True, False]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), NASTY_STRINGS)
JSON_VALUES = st.recursive(
    st.one_of(SCALARS, NASTY_NUMBERS),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), NASTY_STRINGS), children, max_size=4),
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    """A value nested ``depth`` arrays deep (deep enough to find recursion, small enough for CI)."""
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


# --- resources ------------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value, as a tuple of keys and indexes."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


@st.composite
def mutated_resource(draw: st.DrawFn, max_depth: int = 300) -> dict[str, Any]:
    """An official example with up to four mutations at random places."""
    resource = json.loads(json.dumps(draw(st.sampled_from(EXAMPLES))))
    # One mutation half of the time: the body stays close enough to valid to reach deep code.
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3, 4]))):
        locations = [p for p in _paths(resource) if p and p != ("resourceType",)]
        if not locations:
            break
        path = draw(st.sampled_from(locations))
        parent, last = _parent(resource, path), path[-1]
        action = draw(st.sampled_from(["drop", "replace", "poison", "poison", "wrap", "duplicate", "nest", "retype"]))
        if action == "poison":
            # A leaf keeps its JSON type but gets a nasty value: the body stays valid-looking.
            leaf = parent[last]
            if isinstance(leaf, str):
                parent[last] = draw(st.one_of(NASTY_STRINGS, st.text(max_size=20)))
            elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
                parent[last] = draw(NASTY_NUMBERS)
        elif action == "drop":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(JSON_VALUES)
        elif action == "wrap":
            parent[last] = [parent[last]] if not isinstance(parent[last], list) else parent[last][0:1] * 2
        elif action == "duplicate" and isinstance(parent, dict):
            parent[f"{last}{draw(st.sampled_from(['', '_', 'x', ' ']))}"] = parent[last]
        elif action == "nest":
            parent[last] = nested(draw(st.integers(1, max_depth)))
        elif action == "retype":
            resource["resourceType"] = draw(st.sampled_from([*RESOURCE_TYPES, "Patient ", "patient", "Bundle", ""]))
    return resource


def encode(resource: Any, draw: st.DrawFn) -> bytes:
    """JSON text, sometimes with a key repeated or the text cut short."""
    text = json.dumps(resource, ensure_ascii=draw(st.booleans()))
    trick = draw(st.sampled_from(["none", "none", "none", "duplicate-key", "truncate", "trailing"]))
    if trick == "duplicate-key" and text.startswith("{") and len(text) > 2:
        text = '{"resourceType": "Patient", ' + text[1:]
    elif trick == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif trick == "trailing":
        text += draw(st.sampled_from([",", "}", " garbage", "\x00"]))
    return text.encode("utf-8", "surrogatepass")


CONTENT_TYPES = st.sampled_from(
    [
        "application/fhir+json",
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "application/fhir+json; fhirVersion=3.0",
        "application/fhir+xml",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json-patch+json",
        "multipart/form-data; boundary=x",
        "garbage",
        ";;;",
    ]
)


def _resource_id(resource: dict[str, Any], draw: st.DrawFn) -> str:
    given = resource.get("id")
    return draw(
        st.sampled_from([given if isinstance(given, str) and given else "example", "example", "x" * 65, "a.b-C"])
    )


@st.composite
def resource_writes(draw: st.DrawFn, max_depth: int = 300) -> Case:
    """A create or update of a mutated example, sometimes at a URL of another type."""
    resource = draw(mutated_resource(max_depth))
    kind = resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else "Patient"
    url_type = draw(st.sampled_from([kind, kind, "Patient", "Nothing"]))
    headers = {"Content-Type": draw(st.one_of(st.just("application/fhir+json"), CONTENT_TYPES))}
    headers.update(draw(write_headers()))
    body = encode(resource, draw)
    if draw(st.booleans()):
        return Case("POST", f"/fhir/{url_type}", headers, body)
    return Case("PUT", f"/fhir/{url_type}/{_resource_id(resource, draw)}", headers, body)


# --- headers --------------------------------------------------------------------------------------

GARBAGE_HEADER = st.one_of(
    NASTY_STRINGS.filter(lambda s: "\x00" not in s and "\r" not in s and "\n" not in s),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


@st.composite
def write_headers(draw: st.DrawFn) -> dict[str, str]:
    """Conditional and preference headers a write may carry, right or wrong."""
    headers: dict[str, str] = {}
    if draw(st.integers(0, 3)) == 0:
        headers["If-Match"] = draw(
            st.one_of(st.sampled_from(['W/"1"', '"1"', "*", 'W/"99999999999999999999"']), GARBAGE_HEADER)
        )
    if draw(st.integers(0, 3)) == 0:
        headers["If-None-Exist"] = draw(
            st.one_of(
                st.sampled_from(["identifier=x|y", "_id=example", "name=", "Patient?", "?", "&&"]), GARBAGE_HEADER
            )
        )
    if draw(st.integers(0, 3)) == 0:
        headers["Prefer"] = draw(
            st.one_of(
                st.sampled_from(
                    ["return=minimal", "return=representation", "return=OperationOutcome", "handling=strict"]
                ),
                GARBAGE_HEADER,
            )
        )
    return headers


@st.composite
def read_headers(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Accept"] = draw(
            st.one_of(
                st.sampled_from(
                    ["application/fhir+json", "application/fhir+xml", "text/html", "*/*", "application/json;q=0", "x/y"]
                ),
                GARBAGE_HEADER,
            )
        )
    if draw(st.booleans()):
        headers["If-None-Match"] = draw(st.one_of(st.sampled_from(['W/"1"', "*", '"', ""]), GARBAGE_HEADER))
    if draw(st.booleans()):
        headers["If-Modified-Since"] = draw(
            st.one_of(st.sampled_from(["Sat, 01 Jan 2000 00:00:00 GMT", "yesterday", "99999999999"]), GARBAGE_HEADER)
        )
    if draw(st.booleans()):
        headers["Prefer"] = draw(st.one_of(st.sampled_from(["handling=lenient", "handling=strict"]), GARBAGE_HEADER))
    return headers


# --- reads and searches ---------------------------------------------------------------------------

PARAMETERS = {
    "Patient": [
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
        "identifier",
        "_id",
        "address",
        "general-practitioner",
    ],
    "Observation": ["code", "subject", "patient", "date", "value-quantity", "status", "category", "combo-code"],
    "Condition": ["code", "subject", "clinical-status", "onset-date"],
    "Encounter": ["subject", "date", "status", "class"],
}
COMMON = ["_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_lastUpdated", "_format"]
MODIFIERS = [
    "",
    "",
    "",
    ":exact",
    ":contains",
    ":missing",
    ":not",
    ":text",
    ":above",
    ":below",
    ":in",
    ":Patient",
    ":x",
]
PREFIXES = ["", "", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "zz"]
VALUES = st.one_of(
    st.sampled_from(
        [
            "2024",
            "2024-05-01T08:00:00Z",
            "2024-13",
            "100",
            "100|http://unitsofmeasure.org|/min",
            "1e400",
            "99999999999999999999",
            "-1",
            "0",
            "http://loinc.org|8867-4",
            "|",
            "a,b,,",
            "Patient/example",
            "Patient:subject",
            "true",
            "*",
            "",
        ]
    ),
    NASTY_STRINGS.filter(lambda s: "\x00" not in s),
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
)


@st.composite
def searches(draw: st.DrawFn) -> Case:
    """A search or read with random parameters, modifiers, prefixes and values."""
    resource_type = draw(st.sampled_from([*PARAMETERS, "Nothing"]))
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(PARAMETERS.get(resource_type, ["name"]) + COMMON), st.text(max_size=10)))
        pairs.append(
            f"{quote(name + draw(st.sampled_from(MODIFIERS)))}={quote(draw(st.sampled_from(PREFIXES)) + draw(VALUES))}"
        )
    shape = draw(st.sampled_from(["search", "search", "search", "read", "vread", "history", "post-search"]))
    query = "&".join(pairs)
    headers = draw(read_headers())
    if shape == "post-search":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return Case("POST", f"/fhir/{resource_type}/_search", headers, query.encode())
    if shape == "read":
        return Case(
            draw(st.sampled_from(["GET", "HEAD"])), f"/fhir/{resource_type}/{quote(draw(VALUES) or 'x')}", headers
        )
    if shape == "vread":
        version = draw(st.sampled_from(["1", "0", "-1", "99999999999999999999", "2147483648", "1.0", "x"]))
        return Case("GET", f"/fhir/{resource_type}/example/_history/{version}", headers)
    if shape == "history":
        return Case("GET", f"/fhir/{resource_type}/_history?{query}", headers)
    return Case("GET", f"/fhir/{resource_type}?{query}", headers)


# --- JSON Patch -----------------------------------------------------------------------------------

POINTERS = st.one_of(
    st.sampled_from(
        [
            "/active",
            "/name",
            "/name/0",
            "/name/0/family",
            "/name/-",
            "/gender",
            "/id",
            "/resourceType",
            "",
            "/",
            "/~2",
            "/~0",
            "/~1",
            "name",
            "/name/01",
            "/name/99",
            "/telecom/0/value",
            "/birthDate",
            "/meta",
        ]
    ),
    st.text(max_size=10),
)


@st.composite
def patches(draw: st.DrawFn) -> Case:
    """A JSON Patch document of random operations, members present, missing or of the wrong type."""
    operations: list[Any] = []
    for _ in range(draw(st.integers(0, 4))):
        operation: dict[str, Any] = {}
        if draw(st.integers(0, 9)):
            operation["op"] = draw(
                st.one_of(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]), JSON_VALUES)
            )
        if draw(st.integers(0, 9)):
            operation["path"] = draw(st.one_of(POINTERS, POINTERS, JSON_VALUES))
        if draw(st.booleans()):
            operation["from"] = draw(st.one_of(POINTERS, JSON_VALUES))
        if draw(st.integers(0, 3)):
            operation["value"] = draw(st.one_of(JSON_VALUES, st.sampled_from(["female", "male", "mal", "2000-01-01"])))
        operations.append(operation if draw(st.integers(0, 19)) else draw(JSON_VALUES))
    document: Any = operations if draw(st.integers(0, 9)) else draw(JSON_VALUES)
    content_type = draw(st.sampled_from(["application/json-patch+json"] * 4 + ["application/fhir+json", "text/plain"]))
    headers = {"Content-Type": content_type, **draw(write_headers())}
    target = draw(
        st.sampled_from(
            ["/fhir/Patient/example", "/fhir/Patient/example", "/fhir/Patient/none", "/fhir/Patient?name=x"]
        )
    )
    return Case("PATCH", target, headers, json.dumps(document).encode())


# --- Bundles --------------------------------------------------------------------------------------

ENTRY_URLS = st.one_of(
    st.sampled_from(
        [
            "Patient",
            "Patient/example",
            "Patient?name=x",
            "Observation",
            "Patient ",
            "Patient /x",
            "/Patient",
            "http://elsewhere/fhir/Patient/1",
            "",
            "?",
            "Patient/example/_history/1",
            "$everything",
            "metadata",
            "Nothing/1",
        ]
    ),
    st.text(max_size=20),
)


@st.composite
def bundle_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        entry["fullUrl"] = draw(
            st.one_of(st.sampled_from(["urn:uuid:0b3f6e8c-3a4c-4a2f-9f5e-2f8c3f1d2e11", "urn:oid:1.2.3", "x"]), VALUES)
        )
    if draw(st.integers(0, 4)):
        entry["resource"] = draw(mutated_resource(50))
    if draw(st.integers(0, 9)):
        request: dict[str, Any] = {}
        if draw(st.integers(0, 9)):
            request["method"] = draw(
                st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]), VALUES)
            )
        if draw(st.integers(0, 9)):
            request["url"] = draw(ENTRY_URLS)
        if draw(st.integers(0, 4)) == 0:
            request[draw(st.sampled_from(["ifMatch", "ifNoneExist", "ifNoneMatch", "ifModifiedSince"]))] = draw(VALUES)
        entry["request"] = request if draw(st.integers(0, 19)) else draw(JSON_VALUES)
    return entry if draw(st.integers(0, 19)) else draw(JSON_VALUES)


@st.composite
def bundles(draw: st.DrawFn) -> Case:
    """A batch or transaction of random entries (or something that only looks like one)."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": draw(st.sampled_from(["batch", "transaction", "transaction", "collection", "searchset", "", "x"])),
        "entry": draw(st.lists(bundle_entries(), max_size=5)),
    }
    if draw(st.integers(0, 9)) == 0:
        del bundle[draw(st.sampled_from(["type", "entry"]))]
    headers = {
        "Content-Type": draw(st.one_of(st.just("application/fhir+json"), CONTENT_TYPES)),
        **draw(write_headers()),
    }
    return Case("POST", "/fhir", headers, encode(bundle, draw))


def requests(max_depth: int = 300) -> st.SearchStrategy[Case]:
    """Any of the above."""
    return st.one_of(resource_writes(max_depth), searches(), patches(), bundles())


# --- properties -----------------------------------------------------------------------------------


def problems(case: Case, status: int, body: bytes, stored_before: int, stored_after: int) -> list[str]:
    """What is wrong with the answer to ``case`` (empty when it keeps every property)."""
    found = []
    if status >= 500:
        found.append(f"answered {status}")
    if status >= 400 and case.method != "HEAD" and not is_outcome(body):
        found.append(f"answered {status} without an OperationOutcome: {body[:200]!r}")
    if status >= 400 and case.method in WRITE_METHODS and stored_after != stored_before:
        found.append(f"answered {status} but stored {stored_after - stored_before} versions")
    return found


def is_outcome(body: bytes) -> bool:
    """Whether ``body`` is an OperationOutcome with an issue, in JSON or (when asked for) XML."""
    try:
        outcome = json.loads(body)
    except ValueError:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return False
        return root.tag == f"{{{FHIR_NS}}}OperationOutcome" and root.find(f"{{{FHIR_NS}}}issue") is not None
    return (
        isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome" and bool(outcome.get("issue"))
    )


def send(client: Any, case: Case) -> tuple[int, bytes]:
    """Send ``case`` through a Flask test client; header text goes as UTF-8 bytes, as on the wire."""
    headers = {name: value.encode("utf-8").decode("latin-1") for name, value in case.headers.items()}
    response = client.open(case.path, method=case.method, headers=headers, data=case.body)
    return response.status_code, response.get_data()
