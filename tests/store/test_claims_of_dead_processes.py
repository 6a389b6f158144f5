"""A server started after a crash releases at once the claims its machine's dead processes held
(``claims.release_dead``), and leaves the live ones' and other machines' to ``STALE_CLAIM``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from fhir_twin.app import services_of
from fhir_twin.fhir.instant import now
from fhir_twin.store import claims
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import device_window_reading, subscription_outbox


def _owner_with_pid(pid: int) -> str:
    machine = claims.owner().split(":")[0]
    return f"{machine}:{pid}:0123456789ab"


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and is not yet reaped."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    return child


def test_the_claims_of_dead_processes_of_this_machine_are_released(repository: Repository) -> None:
    reaped = subprocess.Popen(["true"])
    reaped.wait()
    zombie = _zombie()
    try:
        owners = {
            "reaped": _owner_with_pid(reaped.pid),
            "zombie": _owner_with_pid(zombie.pid),
            "alive": _owner_with_pid(os.getpid()),
            "elsewhere": f"another-host:{reaped.pid}:abc",
        }
        at = now()
        with repository.transaction(write=True) as tx:
            for name, owner in owners.items():
                row = {"subscription_id": name, "res_type": "Patient", "res_id": "p", "version": 1}
                tx.connection.execute(
                    insert(subscription_outbox).values(
                        **row, enqueued=at, attempts=0, due=at, claimed_by=owner, claimed_at=at
                    )
                )
        claims.release_dead(repository, [subscription_outbox])
        with repository.transaction() as tx:
            o = subscription_outbox.c
            held = {row[0]: row[1] for row in tx.connection.execute(select(o.subscription_id, o.claimed_by))}
    finally:
        zombie.wait()
    assert held == {
        "reaped": None,
        "zombie": None,
        "alive": owners["alive"],
        "elsewhere": owners["elsewhere"],
    }


def test_a_starting_server_releases_a_dead_bridges_device_windows(make_app: Any) -> None:
    """A window claimed by a bridge killed while closing it is closed by another at once, not
    after the stale time."""
    repository = services_of(make_app()).repository
    reaped = subprocess.Popen(["true"])
    reaped.wait()
    at = now()
    reading = {
        "window": "w1",
        "device_id": "d",
        "value": "spo2",
        "code": "http://loinc.org|59408-5",
        "unit": "%",
        "grouping": "window",
        "start": 0,
        "end": 60,
        "at": 1,
        "number": 97.0,
        "patient": "p",
        "device": "d",
    }
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            insert(device_window_reading).values(
                **reading, due=at, claimed_by=_owner_with_pid(reaped.pid), claimed_at=at
            )
        )
    make_app()  # another server starts on the database
    with repository.transaction() as tx:
        claimed = tx.connection.execute(select(device_window_reading.c.claimed_by)).scalars().all()
    assert claimed == [None]
