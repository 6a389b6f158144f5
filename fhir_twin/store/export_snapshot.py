"""What a Bulk Data export job reads of each type: the snapshot at its kick-off
(Bulk Data IG v2 export.html, "transactionTime").

A resource is exported as the version that was current at the transaction time, read from
``resource_version``: resources created after it are skipped, resources updated or deleted after
it are exported as they were then. Patient compartment membership and ``_typeFilter`` matches are
decided by the current index rows, as a search decides them (so a resource deleted since the
kick-off no longer matches a ``_typeFilter``).

A job's ``Selection`` is what narrows it beyond its level, types and ``_since``: the members of
its Group, its ``_typeFilter`` queries (OR-ed per type) and its ``_elements`` (IG v2
export.html#query-parameters).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import ColumnElement, Select, Subquery, and_, case, false, func, literal, or_, select, true, union_all

from fhir_twin.errors import Invalid
from fhir_twin.fhir.json import dumps, loads
from fhir_twin.fhir.resource_types import is_resource_type
from fhir_twin.fhir.subsetting import subset
from fhir_twin.search.parameters import patient_compartment
from fhir_twin.search.parser import parse
from fhir_twin.search.query import Condition, InCompartment, Narrowed, Search
from fhir_twin.store import audit_index
from fhir_twin.store.schema import idx_date, idx_reference, resource, resource_version
from fhir_twin.store.search import matching

# includeAssociatedData (IG v2 export.html#query-parameters): every Provenance of what is
# exported, or per resource the latest by ``recorded``.
RELEVANT, LATEST = "RelevantProvenanceResources", "LatestProvenanceResources"
# The cursor's name for a job's last pass, which writes those Provenance resources to Provenance files.
ASSOCIATED = "Provenance (associated)"
# What a _typeFilter query may hold: conditions only, not the shape of a search's answer.
_RESULT_PARAMETERS = ("_count", "_cursor", "_sort", "_summary", "_total", "_elements", "_include", "_revinclude")
_ELEMENT = re.compile(r"(?:([A-Z][A-Za-z]{0,63})\.)?([a-z][A-Za-z0-9]{0,63})")


@dataclass(frozen=True)
class Selection:
    """What narrows a job beyond its level: ``members``, the Patient ids of a Group export (None
    for other levels); ``type_filters``, each type's ``_typeFilter`` queries; ``elements``, the
    ``_elements`` as given (``code`` for every type, ``Observation.code`` for one); ``base``, the
    URL that absolute references in the filters are read against; ``associated``, the
    ``includeAssociatedData`` Provenance asked for (``LATEST`` or ``RELEVANT``), if any;
    ``narrowed``, per type the requester's SMART v2 scopes narrowed by a query grant read on,
    the ways they OR (``security.access.narrowed_ways``): the launch patient whose compartment a
    way is held to (None: none) and its scope's query (None: none). They are kept as written and
    parsed again when the job runs."""

    members: tuple[str, ...] | None = None
    type_filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    elements: tuple[str, ...] = ()
    base: str = ""
    associated: str | None = None
    narrowed: dict[str, tuple[tuple[str | None, str | None], ...]] = field(default_factory=dict)

    def to_json(self) -> str | None:
        if self == Selection(base=self.base):
            return None
        return json.dumps(
            {
                "members": None if self.members is None else list(self.members),
                "type_filters": {name: list(queries) for name, queries in self.type_filters.items()},
                "elements": list(self.elements),
                "base": self.base,
                "associated": self.associated,
                "narrowed": {name: [list(way) for way in ways] for name, ways in self.narrowed.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Selection:
        if not text:
            return cls()
        data = json.loads(text)
        members = data["members"]
        return cls(
            members=None if members is None else tuple(members),
            type_filters={name: tuple(queries) for name, queries in data["type_filters"].items()},
            elements=tuple(data["elements"]),
            base=data["base"],
            associated=data.get("associated"),
            narrowed={
                name: tuple((patient, query) for patient, query in ways)
                for name, ways in data.get("narrowed", {}).items()
            },
        )

    def narrowing(self, res_type: str) -> Narrowed | None:
        """What the requester's narrowed scopes hold ``res_type`` to, or None when not narrowed
        (SMART v2 scopes-and-launch-context.html, "Finer-grained resource constraints using
        search parameters"; IG v2 export.html: only what "the requestor is authorized to access")."""
        ways = self.narrowed.get(res_type)
        if ways is None:
            return None
        return Narrowed(res_type, tuple(_way(res_type, patient, query) for patient, query in ways))

    def elements_of(self, res_type: str) -> tuple[str, ...]:
        """The elements asked of ``res_type``: the unqualified ones and those qualified with it;
        none (the whole resource) when only other types are named."""
        named = [_ELEMENT.fullmatch(element) for element in self.elements]
        return tuple(m.group(2) for m in named if m is not None and m.group(1) in (None, res_type))


@dataclass(frozen=True)
class Snapshot:
    """A job's selection: its level (``system``, ``patient`` or ``group``), patient, ``_since``,
    instant and ``Selection``."""

    scope: str
    patient_id: str | None
    since: datetime | None
    transaction_time: datetime
    selection: Selection = field(default_factory=Selection)


def type_filter(query: str) -> tuple[str, Search]:
    """One ``_typeFilter`` value (``Observation?code=x&status=final``) as the type and the search it
    names; 400 naming the value when it is not a search of one type this server can run."""
    res_type, mark, text = query.partition("?")
    if not mark or not is_resource_type(res_type):
        raise Invalid.at("_typeFilter", f"_typeFilter {query!r} must be a search such as Observation?status=final")
    pairs = parse_qsl(text, keep_blank_values=True)
    shaping = [name for name, _ in pairs if name.split(":")[0] in _RESULT_PARAMETERS]
    if shaping:
        raise Invalid.at(
            "_typeFilter", f"_typeFilter {query!r} may not use {shaping[0]}: it narrows, it does not shape"
        )
    try:
        return res_type, parse((res_type,), pairs, strict=True, default_count=1, max_count=1)
    except Invalid as error:
        raise Invalid.at("_typeFilter", f"_typeFilter {query!r} is not valid: {error.diagnostics}") from None


def _way(res_type: str, patient: str | None, query: str | None) -> tuple[Condition, ...]:
    """One way of a narrowing: the compartment, and the scope's query parsed as a search of
    ``res_type`` (it parsed when the scope was granted)."""
    held: tuple[Condition, ...] = () if patient is None else (InCompartment(patient),)
    if query is None:
        return held
    pairs = parse_qsl(query, keep_blank_values=True)
    return (*held, *parse((res_type,), pairs, strict=True, default_count=1, max_count=1).conditions)


def check_elements(elements: tuple[str, ...]) -> None:
    """400 naming the first ``_elements`` entry that is neither ``name`` nor ``Type.name`` of a known type."""
    for element in elements:
        found = _ELEMENT.fullmatch(element)
        if found is None or (found.group(1) is not None and not is_resource_type(found.group(1))):
            raise Invalid.at("_elements", f"_elements {element!r} is neither an element name nor Type.element")


def shaped(job: Snapshot, res_type: str, body: str) -> str:
    """The line exported for ``body``: the stored JSON, or its ``_elements`` subset, tagged SUBSETTED
    as a search's ``_elements`` answer is (IG v2 export.html#query-parameters, R4 search.html#elements)."""
    elements = job.selection.elements_of(res_type)
    if not elements:
        return body
    part = subset(loads(body), None, elements)
    return body if part is None else dumps(part).decode("utf-8")


def _candidates(
    job: Snapshot, res_type: str, after: str = "", also: tuple[ColumnElement[bool], ...] = ()
) -> Select[Any]:
    """Keys of the resources of ``res_type`` the job may export, each with its version current at
    the job's transaction time (None when created later); in the Patient compartment when asked;
    ids after ``after`` only; meeting ``also``.

    Filters on the resource row only leave out what the version at that time could not bring
    back: deleted before it, or last changed before ``_since``.
    """
    r = resource.c
    at = job.transaction_time
    older = resource_version.alias("older")
    # Most resources were not touched since the kick-off: their current version is the one.
    version_at = case(
        (r.last_updated <= at, r.version),
        else_=select(func.max(older.c.version))
        .where(older.c.res_type == r.res_type, older.c.res_id == r.res_id, older.c.last_updated <= at)
        .scalar_subquery(),
    )
    conditions = [r.res_type == res_type, r.res_id > after, or_(r.deleted.is_(False), r.last_updated > at), *also]
    if job.since is not None:
        conditions.append(r.last_updated >= job.since)
    if job.scope == "patient":
        conditions.append(_in_compartment(res_type, None if job.patient_id is None else (job.patient_id,), after))
    elif job.scope == "group":
        conditions.append(_in_compartment(res_type, job.selection.members or (), after))
    filters = job.selection.type_filters.get(res_type)
    if filters:
        base = job.selection.base
        conditions.append(or_(*(matching(type_filter(query)[1], base) for query in filters)))
    narrowed = job.selection.narrowing(res_type)
    if narrowed is not None:
        conditions.append(matching(Search((res_type,), (narrowed,)), job.selection.base))
    return select(r.res_type, r.res_id, version_at.label("version")).where(*conditions)


def _versions(candidates: Subquery, outer: bool) -> Select[Any]:
    """Each candidate's id with the body and ``last_updated`` of its version at the transaction time."""
    v = resource_version.c
    on = and_(v.res_type == candidates.c.res_type, v.res_id == candidates.c.res_id, v.version == candidates.c.version)
    joined = candidates.join(resource_version, on, isouter=outer)
    return select(candidates.c.res_id, v.body, v.last_updated).select_from(joined)


def page(job: Snapshot, res_type: str, after: str, limit: int, types: tuple[str, ...] = ()) -> Select[Any]:
    """The next ``limit`` candidates after ``after`` by id (keyset paging), each found by index,
    with versions that ``wanted`` may still turn down; for ``ASSOCIATED``, the Provenance of what
    the job exports of ``types``."""
    page = _pass(job, res_type, after, types).order_by(resource.c.res_id).limit(limit)
    candidates = page.subquery()
    return _versions(candidates, outer=True).order_by(candidates.c.res_id)


def count(job: Snapshot, res_type: str, types: tuple[str, ...] = ()) -> Select[Any]:
    """How many resources of ``res_type`` the job exports: the candidates ``wanted`` keeps."""
    return select(func.count()).select_from(_exported(job, _pass(job, res_type, "", types)).subquery())


def file_type(res_type: str) -> str:
    """The type of the resources a pass writes: ``ASSOCIATED`` writes Provenance."""
    return "Provenance" if res_type == ASSOCIATED else res_type


def _pass(job: Snapshot, res_type: str, after: str, types: tuple[str, ...]) -> Select[Any]:
    if res_type == ASSOCIATED:
        return _associated(job, after, types)
    return _candidates(job, res_type, after)


def _exported(job: Snapshot, candidates: Select[Any]) -> Select[Any]:
    """The ids of ``candidates`` the job exports: alive at its transaction time, changed since ``_since``."""
    v = resource_version.c
    wanted = [v.body.is_not(None)] + ([v.last_updated >= job.since] if job.since is not None else [])
    return _versions(candidates.subquery(), outer=False).where(*wanted).with_only_columns(v.res_id)


def _associated(job: Snapshot, after: str, types: tuple[str, ...]) -> Select[Any]:
    """The Provenance resources (alive at the transaction time, changed since ``_since``) whose
    ``target`` is a resource the job exports of ``types``: all of them, or per target the latest
    by ``recorded`` (``Selection.associated``); those its own Provenance pass exports are left out.
    Targets are read from the current index rows, as compartments are."""
    targets = [name for name in types if name not in ("Provenance", ASSOCIATED)]
    if not targets:
        return _candidates(job, "Provenance", after, (false(),))
    exported = union_all(
        *(
            select(
                literal(name).label("target_type"),
                _exported(job, _candidates(job, name)).subquery().c.res_id.label("target_id"),
            )
            for name in targets
        )
    ).subquery()
    ref = idx_reference.c
    linked = (
        select(ref.res_id, ref.target_type, ref.target_id)
        .join(exported, and_(exported.c.target_type == ref.target_type, exported.c.target_id == ref.target_id))
        .where(ref.res_type == "Provenance", ref.param == "target")
    )
    # Held to the requester's narrowed scopes on Provenance, as its own pass is.
    held = Selection(base=job.selection.base, narrowed=job.selection.narrowed)
    anytime = Snapshot("system", None, job.since, job.transaction_time, held)
    if job.selection.associated == LATEST:
        # Only those alive at the transaction time compete for the latest.
        alive = _exported(anytime, _candidates(anytime, "Provenance")).subquery()
        found = linked.where(ref.res_id.in_(select(alive.c.res_id))).subquery()
        d = idx_date.c
        ranked = (
            select(
                found.c.res_id,
                func.row_number()
                .over(
                    partition_by=(found.c.target_type, found.c.target_id),
                    order_by=(d.low.desc(), found.c.res_id.desc()),
                )
                .label("rank"),
            )
            .join(idx_date, and_(d.res_type == "Provenance", d.res_id == found.c.res_id, d.param == "recorded"))
            .subquery()
        )
        chosen = select(ranked.c.res_id).where(ranked.c.rank == 1)
    else:
        chosen = linked.with_only_columns(ref.res_id)
    also = [resource.c.res_id.in_(chosen)]
    if "Provenance" in types:
        own = _exported(job, _candidates(job, "Provenance")).subquery()
        also.append(resource.c.res_id.not_in(select(own.c.res_id)))
    return _candidates(anytime, "Provenance", after, tuple(also))


def wanted(job: Snapshot, body: str | None, last_updated: datetime | None) -> bool:
    """Alive at the transaction time and, with ``_since``, changed at or after it."""
    return body is not None and (job.since is None or (last_updated is not None and last_updated >= job.since))


def _in_compartment(res_type: str, patients: tuple[str, ...] | None, after: str) -> ColumnElement[bool]:
    """In the compartment of one of ``patients``, or of any patient when None (R4
    compartmentdefinition-patient.html), by the reference index of the compartment parameters."""
    if patients == ():
        return false()
    ref = (audit_index.view("reference") if res_type == audit_index.AUDIT_TYPE else idx_reference).c
    linked: Select[Any] = select(ref.res_id).where(
        ref.res_type == res_type,
        ref.param.in_(patient_compartment().get(res_type, ())),
        ref.target_type == "Patient",
        ref.res_id > after,
    )
    if patients is not None:
        linked = linked.where(ref.target_id.in_(patients))
    if res_type != "Patient":
        return resource.c.res_id.in_(linked)
    if patients is None:
        return true()
    return or_(resource.c.res_id.in_(patients), resource.c.res_id.in_(linked))
