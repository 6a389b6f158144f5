"""A Bulk Data export by a credential whose read of a type is narrowed by a query (SMART v2
``user/Observation.rs?category=...``) holds in that type's files only what the scopes match,
ANDed with ``_typeFilter``, at every level and in the associated Provenance; other types are
whole (IG v2 export.html: "only those resources that the requestor is authorized to access")."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from werkzeug.test import TestResponse

from fhir_twin.fhir.resource_types import resource_types
from tests import factories
from tests.security.test_granular_scopes import GLUCOSE, LABS, VITALS, Server, observation

ASYNC = {"Prefer": "respond-async"}
OTHERS = " ".join(f"user/{name}.rs" for name in sorted(resource_types()) if name not in ("Observation", "Provenance"))


@pytest.fixture
def server(make_app: Any) -> Server:
    found = Server(make_app(auth_mode="tokens", doctor=False))
    factories.seed_clinic(found)
    for patient in ("p1", "p2"):
        found.put(observation(f"{patient}-vital", patient, "vital-signs"))
        found.put(observation(f"{patient}-lab", patient, "laboratory", GLUCOSE))
        found.put(provenance(f"prov-{patient}-vital", f"Observation/{patient}-vital"))
        found.put(provenance(f"prov-{patient}-lab", f"Observation/{patient}-lab"))
    found.put({"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "member": [member("p1")]})
    return found


def member(patient: str) -> dict[str, Any]:
    return {"entity": {"reference": f"Patient/{patient}"}}


def provenance(res_id: str, target: str) -> dict[str, Any]:
    """A Provenance of ``target``, recorded by a device (outside any patient's compartment)."""
    return {
        "resourceType": "Provenance",
        "id": res_id,
        "target": [{"reference": target}],
        "recorded": "2024-01-01T10:00:00Z",
        "agent": [{"who": {"display": "lab system"}}],
    }


def export(server: Server, headers: dict[str, str], path: str = "$export", **query: str) -> dict[str, set[str]]:
    """The ids of each type a finished export by ``headers`` holds, polled and read with them."""
    kicked = server.client.get(f"/fhir/{path}", query_string=query, headers={**headers, **ASYNC})
    assert kicked.status_code == 202, kicked.get_json()
    done = wait(server, kicked.headers["Content-Location"], headers)
    assert done.status_code == 200, done.get_data(as_text=True)
    found: dict[str, set[str]] = {}
    for output in done.get_json()["output"]:
        file = server.client.get(output["url"], headers=headers)
        assert file.status_code == 200
        lines = [json.loads(line) for line in file.get_data(as_text=True).splitlines()]
        assert len(lines) == output["count"]
        found.setdefault(output["type"], set()).update(line["id"] for line in lines)
    return found


def wait(server: Server, location: str, headers: dict[str, str]) -> TestResponse:
    deadline = time.monotonic() + 20
    while (response := server.client.get(location, headers=headers)).status_code == 202:
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.02)
    return response


def test_a_narrowed_type_holds_only_what_the_scope_matches_and_others_are_whole(server: Server) -> None:
    vitals = server.token(f"{OTHERS} user/Provenance.rs user/Observation.rs?category={VITALS}")
    found = export(server, vitals)
    assert found["Observation"] == {"p1-vital", "p2-vital"}
    assert found["Patient"] == {"p1", "p2"}
    assert found["Provenance"] == {"prov-p1-vital", "prov-p1-lab", "prov-p2-vital", "prov-p2-lab"}
    # Scopes add up: a patient/ scope on the type adds its patient's whole compartment.
    with_p2 = server.token(
        f"{OTHERS} user/Provenance.rs user/Observation.rs?category={VITALS} patient/Observation.rs", "p2"
    )
    assert export(server, with_p2)["Observation"] == {"p1-vital", "p2-vital", "p2-lab"}
    # A scope on the type not narrowed lifts the narrowing.
    whole = server.token(f"{OTHERS} user/Provenance.rs user/Observation.rs?category={VITALS} user/Observation.rs")
    assert export(server, whole)["Observation"] == {"p1-vital", "p1-lab", "p2-vital", "p2-lab"}


def test_type_filter_and_the_narrowing_are_anded(server: Server) -> None:
    vitals = server.token(f"{OTHERS} user/Provenance.rs user/Observation.rs?category={VITALS}")
    found = export(server, vitals, _type="Observation", _typeFilter="Observation?subject=Patient/p1")
    assert found == {"Observation": {"p1-vital"}}
    # A filter for what the scope leaves out exports nothing of it.
    labs = export(server, vitals, _type="Observation", _typeFilter=f"Observation?category={LABS}")
    assert "Observation" not in labs


def test_patient_and_group_exports_are_narrowed_alike(server: Server) -> None:
    vitals = server.token(f"{OTHERS} user/Provenance.rs user/Observation.rs?category={VITALS}")
    assert export(server, vitals, "Patient/$export", _type="Observation")["Observation"] == {"p1-vital", "p2-vital"}
    assert export(server, vitals, "Patient/p2/$export", _type="Observation")["Observation"] == {"p2-vital"}
    assert export(server, vitals, "Group/g1/$export", _type="Observation")["Observation"] == {"p1-vital"}


def test_associated_provenance_is_of_what_is_exported_and_held_to_its_own_scope(server: Server) -> None:
    vitals = server.token(f"{OTHERS} user/Provenance.rs user/Observation.rs?category={VITALS}")
    found = export(server, vitals, _type="Observation", includeAssociatedData="RelevantProvenanceResources")
    assert found == {"Observation": {"p1-vital", "p2-vital"}, "Provenance": {"prov-p1-vital", "prov-p2-vital"}}
    # Narrowed on Provenance too: the associated pass holds only what that scope matches.
    both = server.token(
        f"{OTHERS} user/Observation.rs?category={VITALS} user/Provenance.rs?target=Observation/p1-vital"
    )
    found = export(server, both, _type="Observation", includeAssociatedData="LatestProvenanceResources")
    assert found == {"Observation": {"p1-vital", "p2-vital"}, "Provenance": {"prov-p1-vital"}}
    assert export(server, both, _type="Provenance") == {"Provenance": {"prov-p1-vital"}}
