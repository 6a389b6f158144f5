"""``Observation/$lastn`` in SQL (R4 observation-operation-lastn.html): per code, the newest ``most``
Observations meeting a search, ranked by ``ROW_NUMBER() OVER (PARTITION BY system, code ...)``.

A code is a coding of Observation.code: the ``code`` parameter's token rows (system and code).
An Observation with several codings ranks under each (HAPI groups by code the same way) and is
listed once, in the first group it made. When the search names codes, only codings matching them
make groups, so ``code=a`` is never answered with a group for the Observation's other coding ``b``.
Newest is the latest instant of the ``date`` parameter (effective[x]), the key ``_sort=-date``
uses; Observations without one rank last, and ties go to the greater id.
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, or_, select

from fhir_twin.search.query import Search, TokenValue
from fhir_twin.store.repository import DatabaseTransaction
from fhir_twin.store.schema import idx_date, idx_token, resource, resource_version
from fhir_twin.store.search import values
from fhir_twin.store.search.conditions import where
from fhir_twin.store.search.terminology import resolve
from fhir_twin.store.version import CURRENT, Version, columns

OBSERVATION = "Observation"


def lastn(tx: DatabaseTransaction, query: Search, base: str, most: int, codes: tuple[TokenValue, ...]) -> list[Version]:
    """The Observations grouped by code (groups ordered by system, then code), newest first within a
    group; one that ranks in several groups is listed once, in the first."""
    query = resolve(tx.connection, query)
    matched = select(resource.c.res_id).where(
        resource.c.res_type == OBSERVATION,
        resource.c.deleted.is_(False),
        *(where(OBSERVATION, resource.c.res_id, condition, base) for condition in query.conditions),
    )
    coding, date = idx_token.alias(), idx_date.alias()
    # The parameter test sits inside the aggregate so that only the (res_type, res_id) index fits the
    # lookup: without statistics PostgreSQL would otherwise scan every Observation date per coding.
    effective = (
        select(func.max(case((date.c.param == "date", date.c.high))))
        .where(date.c.res_type == OBSERVATION, date.c.res_id == coding.c.res_id)
        .scalar_subquery()
    )
    chosen = [or_(*(values.token(coding, code, None) for code in codes))] if codes else []
    codings = (
        select(coding.c.system, coding.c.code, coding.c.res_id, effective.label("effective"))
        .distinct()
        .where(
            coding.c.res_type == OBSERVATION,
            coding.c.param == "code",
            coding.c.code.is_not(None),
            coding.c.res_id.in_(matched),
            *chosen,
        )
        .subquery()
    )
    rank = func.row_number().over(
        partition_by=(codings.c.system, codings.c.code),
        order_by=(codings.c.effective.desc().nulls_last(), codings.c.res_id.desc()),
    )
    ranked = select(codings.c.system, codings.c.code, codings.c.res_id, rank.label("rank")).subquery()
    statement = (
        select(*columns(resource_version))
        .select_from(
            ranked.join(CURRENT, and_(resource.c.res_type == OBSERVATION, resource.c.res_id == ranked.c.res_id))
        )
        .where(ranked.c.rank <= most)
        .order_by(ranked.c.system.asc().nulls_last(), ranked.c.code, ranked.c.rank)
    )
    found: dict[str, Version] = {}
    for row in tx.connection.execute(statement):
        found.setdefault(row.res_id, Version(*row))
    return list(found.values())
