"""Each search parameter type's index rows fit its index table."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from sqlalchemy import select

from fhir_twin.search.index import ROW_TYPES, ReferenceRow, StringRow, TokenRow
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.indexing import INDEXED_LENGTH, TABLE_OF
from fhir_twin.store.repository import Repository, Version
from fhir_twin.store.schema import INDEX_TABLE, INDEX_TABLES, idx_reference, idx_string, idx_token


def test_every_row_field_is_a_column_of_its_table() -> None:
    assert set(ROW_TYPES) == set(INDEX_TABLE)
    for kind, row_type in ROW_TYPES.items():
        columns = set(INDEX_TABLE[kind].c.keys())
        stored = {"grp" if field.name == "group" else field.name for field in fields(row_type)}
        assert stored <= columns, kind
        assert columns - stored == {"res_type", "res_id"}, kind


def test_rows_of_each_type_go_to_the_table_named_after_it() -> None:
    assert {row_type.__name__: table.name for row_type, table in TABLE_OF.items()} == {
        "StringRow": "idx_string",
        "TokenRow": "idx_token",
        "ReferenceRow": "idx_reference",
        "DateRow": "idx_date",
        "NumberRow": "idx_number",
        "QuantityRow": "idx_quantity",
        "UriRow": "idx_uri",
    }
    assert [table.name for table in INDEX_TABLES] == [
        "idx_string",
        "idx_token",
        "idx_reference",
        "idx_date",
        "idx_number",
        "idx_quantity",
        "idx_uri",
    ]


def test_long_indexed_text_is_cut_and_an_overlong_target_id_names_no_target(database_url: str) -> None:
    """Indexed text over ``INDEXED_LENGTH`` is cut (the unindexed ``exact`` keeps all of it), and a
    reference whose id no FHIR id can match (over 64 characters) keeps no target, in the rows of a
    new resource and of a replaced index alike."""
    name, code, target = "N" * 2000, "c" * 700, "x" * 70
    rows = [
        StringRow("name", name.lower(), name),
        TokenRow("identifier", "urn:short", code),
        ReferenceRow("link", "Basic", target, url="http://example.org/" + target),
        ReferenceRow("author", "Basic", "short-id"),
    ]
    engine = make_engine(database_url)
    migrate(engine)
    repository = Repository(engine, referential_integrity=False)  # no Basic/short-id to refer to
    for number in (1, 2):
        with repository.transaction(write=True) as tx:
            tx.write(Version("Basic", "long", number, datetime(2026, 1, number), "PUT", 200, "{}"), rows)
        with repository.transaction() as tx:
            strings = tx.connection.execute(select(idx_string.c.normalized, idx_string.c.exact)).all()
            tokens = tx.connection.execute(select(idx_token.c.system, idx_token.c.code)).all()
            references = tx.connection.execute(
                select(idx_reference.c.target_type, idx_reference.c.target_id, idx_reference.c.url).order_by(
                    idx_reference.c.param
                )
            ).all()
        assert strings == [(name.lower()[:INDEXED_LENGTH], name)]
        assert tokens == [("urn:short", code[:INDEXED_LENGTH])]
        assert references == [("Basic", "short-id", None), (None, None, "http://example.org/" + target)]
    engine.dispose()
