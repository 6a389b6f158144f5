"""Rebuilding the search index from the stored resources, after a definition change or upgrade.

Works type by type in batches, each batch one transaction, paging by id so it never holds a
long lock; the count it reports is checked against the live resources, so it never claims a
success with rows missing (the HAPI reindex failure users complain of).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import Engine, func, select

from fhir_twin.fhir import json
from fhir_twin.search.extract import extract
from fhir_twin.store import audit_index
from fhir_twin.store.indexing import clear_index, replace_index
from fhir_twin.store.schema import resource, resource_version
from fhir_twin.store.version import CURRENT, Version, columns

BATCH = 500


def live_count(engine: Engine, res_type: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(func.count())
            .select_from(resource)
            .where(resource.c.res_type == res_type, resource.c.deleted.is_(False))
        ).scalar_one()


def stored_types(engine: Engine) -> list[str]:
    """The resource types that have at least one live resource."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(resource.c.res_type).where(resource.c.deleted.is_(False)).group_by(resource.c.res_type)
        )
        return sorted(row[0] for row in rows)


def reindex(engine: Engine, types: Iterable[str], progress: Callable[[str, int], object]) -> dict[str, int]:
    """Re-extract the index rows of every live resource of ``types``; the count per type."""
    done: dict[str, int] = {}
    for res_type in types:
        after = ""
        done[res_type] = 0
        while True:
            # Started as a write (BEGIN IMMEDIATE on SQLite): a read transaction that later writes
            # fails at once, without waiting, when another writer committed in between.
            with engine.connect().execution_options(fhir_write=True) as connection, connection.begin():
                rows = connection.execute(
                    select(*columns(resource_version))
                    .select_from(CURRENT)
                    .where(resource.c.res_type == res_type, resource.c.deleted.is_(False), resource.c.res_id > after)
                    .order_by(resource.c.res_id)
                    .limit(BATCH)
                ).all()
                versions = [Version(*row) for row in rows]
                clear_index(connection, res_type, [version.res_id for version in versions])
                if res_type == audit_index.AUDIT_TYPE:
                    audit_index.rewrite(connection, [json.loads(version.body or "{}") for version in versions])
                    versions = []
                for version in versions:
                    index = extract(json.loads(version.body or "{}"))
                    replace_index(connection, res_type, version.res_id, index, fresh=True)
            if not rows:
                break
            after = rows[-1][1]
            done[res_type] += len(rows)
            progress(res_type, len(rows))
    return done
