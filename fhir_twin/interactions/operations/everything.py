"""``$everything`` on Patient (R4 patient-operation-everything.html): the patient, every resource
in its compartment, and what those resources refer to, one level deep.

The answer is a search over every resource type with an ``InCompartment`` condition that takes
the referenced resources too, so the keyset paging of searches (by type, then id) gives each
resource exactly once across pages, however many compartment resources refer to it, and a page
link stays valid while others write. Entries in the compartment have ``search.mode = match``,
resources only referred to ``include``. Referenced Patients other than the one asked for are left
out: a Group or a link in the compartment must not bring another patient's record along.
``_since``, ``_type`` and ``_count`` apply to every entry, the patient's own included; ``start``
and ``end`` (care dates) are refused as not supported; any other parameter is refused or ignored
with a warning, as a search's unknown parameters are (``search_handling``, ``Prefer: handling=``).
"""

from __future__ import annotations

import uuid

from fhir_twin.errors import Gone, Invalid, NotFound
from fhir_twin.fhir.bundle import Entry, bundle
from fhir_twin.fhir.instant import format_instant, now, parse_range
from fhir_twin.fhir.resource_types import AUDIT_TYPES, is_resource_type, resource_types
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission, parameters
from fhir_twin.interactions.paging import link
from fhir_twin.interactions.search import ignored_entry, strict_handling
from fhir_twin.search.parameters import parameters_for
from fhir_twin.search.parser import HARMLESS, parse
from fhir_twin.search.query import Condition, Criterion, DateValue, InCompartment, Search, TokenValue
from fhir_twin.store.repository import DatabaseTransaction
from fhir_twin.store.version import Version

UNSUPPORTED = ("start", "end")
TAKEN = ("_since", "_type", "_count", "_cursor")


def everything(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    """``Patient/{id}/$everything``, or ``Patient/$everything`` for every patient's compartment."""
    inputs = parameters(request)
    given = [(name, value) for name, value in inputs if isinstance(value, str)]
    ignored: list[tuple[str, str]] = []
    for name, _ in inputs:
        if name in UNSUPPORTED:
            raise Invalid.at(name, f"$everything does not support the parameter {name!r}", "not-supported")
        if name not in TAKEN and name not in HARMLESS:
            why = f"Unknown parameter {name!r} for $everything, which takes {', '.join(TAKEN[:3])}"
            if strict_handling(context.config, request):
                raise Invalid.at(name, why, "not-supported")
            ignored.append((name, why))
    since = [value for name, value in given if name == "_since"]
    named = [item.strip() for name, value in given if name == "_type" for item in value.split(",") if item.strip()]
    unknown = [item for item in named if not is_resource_type(item)]
    if unknown:
        raise Invalid.at("_type", f"Unknown resource type {unknown[0]!r} in _type")
    # The search parser checks _count and _cursor as a search does.
    paging = [(name, value) for name, value in given if name in ("_count", "_cursor")]
    config = context.config
    query = parse(
        tuple(sorted(set(named) or resource_types() - AUDIT_TYPES)),
        paging,
        strict=False,
        default_count=config.default_page_size,
        max_count=config.max_page_size,
    )
    conditions: list[Condition] = [InCompartment(res_id, referenced=True)]
    if since:
        conditions.append(_since_condition(since[-1]))
    query = Search(query.resource_types, tuple(conditions), count=query.count, cursor=query.cursor)
    with context.repository.transaction() as tx:
        if res_id is not None:
            current = tx.current("Patient", res_id)
            if current is None:
                raise NotFound(f"Patient/{res_id} is not known")
            if current.deleted:
                raise Gone(f"Patient/{res_id} was deleted")
        page = tx.search(query, request.base)
        members = _members(tx, page.matches, res_id, request.base)
    url = f"{request.base}/Patient/{res_id + '/' if res_id else ''}$everything"
    criteria = [(name, value) for name, value in given if name in ("_since", "_type")]
    criteria.append(("_count", str(query.count)))
    links = {"self": link(request, url, criteria + ([("_cursor", query.cursor)] if query.cursor else []))}
    if query.cursor is not None:
        links["first"] = link(request, url, criteria)
    if page.previous_cursor is not None:
        links["previous"] = link(request, url, [*criteria, ("_cursor", page.previous_cursor)])
    if page.next_cursor is not None:
        links["next"] = link(request, url, [*criteria, ("_cursor", page.next_cursor)])
    entries = [
        Entry(
            f"{request.base}/{version.res_type}/{version.res_id}",
            version.body,
            search_mode="match" if (version.res_type, version.res_id) in members else "include",
        )
        for version in page.matches
    ]
    entries += ignored_entry(tuple(ignored))
    body = bundle("searchset", entries, links, page.total, str(uuid.uuid4()), format_instant(now()))
    return Response(200, {}, body)


def _since_condition(value: str) -> Criterion:
    """``_since``: last updated at or after the instant, as ``_lastUpdated=ge`` would find."""
    try:
        low, high = parse_range(value)
    except ValueError:
        raise Invalid.at("_since", f"_since must be a FHIR instant, not {value[:40]!r}") from None
    return Criterion(parameters_for("Patient")["_lastUpdated"], values=(DateValue("ge", low, high),))


def _members(
    tx: DatabaseTransaction, matches: list[Version], patient_id: str | None, base: str
) -> set[tuple[str, str]]:
    """Which of ``matches`` are in the compartment itself rather than only referred to from it."""
    by_type: dict[str, list[str]] = {}
    for version in matches:
        by_type.setdefault(version.res_type, []).append(version.res_id)
    found: set[tuple[str, str]] = set()
    for res_type, ids in by_type.items():
        same = Criterion(parameters_for(res_type)["_id"], values=tuple(TokenValue(None, res_id) for res_id in ids))
        page = tx.search(Search((res_type,), (InCompartment(patient_id), same), count=len(ids)), base)
        found |= {(version.res_type, version.res_id) for version in page.matches}
    return found


EVERYTHING = Operation(
    name="everything",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=everything,
    definition="http://hl7.org/fhir/OperationDefinition/Patient-everything",
    types=frozenset({"Patient"}),
    permission=Permission(reads=("Patient",), patient=True),
)
