"""Each search parameter type's index rows fit its index table."""

from __future__ import annotations

from dataclasses import fields

from fhir_twin.search.index import ROW_TYPES
from fhir_twin.store.indexing import TABLE_OF
from fhir_twin.store.schema import INDEX_TABLE, INDEX_TABLES


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
