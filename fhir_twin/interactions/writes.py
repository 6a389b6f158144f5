"""Turning a validated resource into a stored version: id, meta, and the no-change rule."""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Issue, Unprocessable
from fhir_twin.fhir import json
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.fhir.references import placeholders
from fhir_twin.interactions import subscription
from fhir_twin.interactions.subscription_topic import topic_of
from fhir_twin.search.extract import extract
from fhir_twin.search.index import IndexRow
from fhir_twin.store.indexing import RECORD_TYPES
from fhir_twin.store.repository import DatabaseTransaction, Version

# meta elements the server owns (R4 resource.html#Meta): a client's values are replaced.
SERVER_META = ("versionId", "lastUpdated")
_PLACEHOLDER = b'"reference":"urn:'


def store_version(
    tx: DatabaseTransaction,
    resource: dict[str, Any],
    res_id: str,
    previous: Version | None,
    method: str,
    index: list[IndexRow] | None = None,
) -> Version:
    """Write ``resource`` as the version after ``previous`` and return what was stored.

    ``index`` may be extracted beforehand, outside the write transaction, to keep it short.
    """
    if resource["resourceType"] == "SubscriptionTopic":
        topic_of(resource)
    if resource["resourceType"] == "Subscription":
        checked = subscription.accepted(resource, tx)
        if checked is not resource:  # its status changed: the index extracted before is stale
            resource, index = checked, None
    number = previous.version + 1 if previous else 1
    stamp = now()
    meta = {key: value for key, value in (resource.get("meta") or {}).items() if key not in SERVER_META}
    body: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id}
    body["meta"] = {"versionId": str(number), "lastUpdated": format_instant(stamp), **meta}
    body.update((key, value) for key, value in resource.items() if key not in ("resourceType", "id", "meta"))
    status = 201 if previous is None or previous.deleted else 200
    encoded = json.dumps(body)
    # Compact JSON names every placeholder reference as ``"reference":"urn:…``: the walk that
    # names the elements runs only when the text has one.
    if tx.referential_integrity and resource["resourceType"] not in RECORD_TYPES and _PLACEHOLDER in encoded:
        refuse_placeholders(resource)
    version = Version(resource["resourceType"], res_id, number, stamp, method, status, encoded.decode("utf-8"))
    tx.write(version, extract(body) if index is None else index, body)
    return version


def refuse_placeholders(resource: dict[str, Any]) -> None:
    """A ``urn:uuid:`` / ``urn:oid:`` reference still in a resource being stored is dangling: a
    transaction replaces those naming its entries (R4 http.html#trules), so what is left names no
    resource. Refused (422) like any dangling reference under ``referential_integrity``."""
    found = placeholders(resource)
    if not found:
        return
    issues = [
        Issue(
            Unprocessable.code,
            f"{element} refers to {reference}, which does not exist: a urn:uuid: or urn:oid: reference must be "
            "the fullUrl of an entry of the same transaction Bundle",
            expression=(element,),
        )
        for element, reference in found
    ]
    more = f" (and {len(issues) - 1} more unresolved references)" if len(issues) > 1 else ""
    raise Unprocessable(issues[0].diagnostics + more, issues=issues)


def store_delete(tx: DatabaseTransaction, previous: Version) -> Version:
    """Write a delete marker version after ``previous`` (R4 http.html#delete)."""
    version = Version(previous.res_type, previous.res_id, previous.version + 1, now(), "DELETE", 200, None)
    tx.write(version, [])
    return version


def same_content(resource: dict[str, Any], stored: Version) -> bool:
    """Whether ``resource`` equals the stored version apart from server-owned meta.

    An update that changes nothing keeps the current version, as HAPI FHIR does, so repeated
    loads of the same data do not grow the history. Compared as text: ``1.0`` and ``1.00``
    differ in FHIR.
    """
    if stored.body is None:
        return False
    return json.canonical(_comparable(json.loads(stored.body))) == json.canonical(_comparable(resource))


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = {key: value for key, value in (out.pop("meta", None) or {}).items() if key not in SERVER_META}
    if meta:
        out["meta"] = meta
    return out
