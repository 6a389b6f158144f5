"""A server started after a crash releases at once the claims its machine's dead processes held
(``claims.release_dead``), and leaves the live ones' and other machines' to ``STALE_CLAIM``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from sqlalchemy import insert, select

from fhir_twin.fhir.instant import now
from fhir_twin.store import claims
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import subscription_outbox


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
