"""The route table's match finds, through its index by segment count and first segment, the
route a walk of the whole table finds (R4 http.html: the first pattern that fits is the path's)."""

from __future__ import annotations

import pytest

from fhir_twin.interactions.routes import GET, ROUTES, Route, match


@pytest.mark.parametrize(
    ("method", "path", "interaction", "params"),
    [
        ("GET", "", "search-system", {}),
        ("GET", "metadata", "capabilities", {}),
        ("GET", "_history", "history-system", {}),
        ("POST", "$process-message", "operation", {"op": "process-message"}),
        ("GET", "Patient", "search-type", {"type": "Patient"}),
        ("POST", "Patient/_search", "search-type", {"type": "Patient"}),
        ("GET", "Patient/_history", "history-type", {"type": "Patient"}),
        ("GET", "Patient/$everything", "operation", {"type": "Patient", "op": "everything"}),
        ("GET", "Patient/p1", "read", {"type": "Patient", "id": "p1"}),
        ("DELETE", "Observation/o1", "delete", {"type": "Observation", "id": "o1"}),
        ("GET", "Patient/p1/_history", "history-instance", {"type": "Patient", "id": "p1"}),
        ("GET", "Patient/p1/Observation", "search-type", {"type": "Observation", "compartment": "p1"}),
        ("GET", "Patient/p1/$everything", "operation", {"type": "Patient", "id": "p1", "op": "everything"}),
        ("GET", "Patient/p1/_history/2", "vread", {"type": "Patient", "id": "p1", "vid": "2"}),
    ],
)
def test_each_path_shape_takes_its_route(method: str, path: str, interaction: str, params: dict[str, str]) -> None:
    found = match(ROUTES, method, path)
    assert found.refusal is None
    assert found.interaction.name == interaction
    assert dict(found.params) == params


@pytest.mark.parametrize("path", ["Unknown", "Unknown/1", "Patient/p1/_history/2/more", "metadata/x"])
def test_a_path_of_no_route_is_refused(path: str) -> None:
    assert match(ROUTES, "GET", path).refusal is not None


def test_many_tables_each_match_their_own_routes() -> None:
    """Tables built and matched one after another (the index keeps a few) each answer with
    their own route, never with an earlier table's."""
    for number in range(40):
        table = (Route(GET, f"table{number}", "search-system", "E", "s"),)
        found = match(table, "GET", f"table{number}")
        assert found.route is table[0]
        assert match(table, "GET", f"table{number + 1}").route is None
