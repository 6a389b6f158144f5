"""Which patients two datasets share, so that data a model was trained on is never called external.

A patient's keys are SHA-256 digests (the first 128 bits, hex) of

- its logical id with its birth date and gender: ``id|{id}|{birthDate}|{gender}``, and
- each of its business identifiers with its birth date and gender: ``identifier|{system}|{value}|...``.

Two patients are the same when they share any key: the same resource loaded into another server under
the same id, or the same person under a new id (a Bundle that POSTs its entries gets new ids on every
server) whose identifier, birth date and gender match. Keys are digests, so a model's stored training
keys name no patient. Birth date and gender are part of every key so that a reused id or a reused
identifier value of a different person is not a match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

KEY_HEX = 32


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:KEY_HEX]


def keys(patient_id: str, birth_date: str, gender: str, identifiers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The keys of one patient; ``birth_date`` as ``YYYY-MM-DD`` (empty when unknown), ``identifiers``
    as (system, value) pairs."""
    found = {_key("id", patient_id, birth_date, gender)}
    found |= {_key("identifier", system, value, birth_date, gender) for system, value in identifiers}
    return frozenset(found)


def shared(training: frozenset[str], patients: Mapping[str, frozenset[str]]) -> list[str]:
    """The ids of ``patients`` (id → keys) that share a key with the ``training`` keys, in id order."""
    return sorted(patient_id for patient_id, own in patients.items() if not training.isdisjoint(own))
