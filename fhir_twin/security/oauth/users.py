"""People who sign in at the authorization endpoint: made by ``fhir-twin user create``, their
passwords kept as Argon2id hashes (argon2-cffi; OWASP Password Storage Cheat Sheet)."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fhir_twin.fhir.instant import now
from fhir_twin.store import oauth
from fhir_twin.store.oauth import StoredUser
from fhir_twin.store.repository import Repository

# SMART App Launch scopes-and-launch-context.html, "fhirUser": a Patient, Practitioner,
# PractitionerRole, RelatedPerson or Person, as a relative reference.
_FHIR_USER = re.compile(r"^(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$")
_HASHER = PasswordHasher()
# Verified against when the user is unknown, so a wrong name takes as long as a wrong password.
_DUMMY = _HASHER.hash("not a password")


def create(repository: Repository, username: str, password: str, fhir_user: str | None) -> StoredUser:
    """A new user; ValueError naming what is wrong with the name, password or fhirUser."""
    if not 0 < len(username) <= 128 or username.strip() != username:
        raise ValueError("a user name is 1 to 128 characters, without leading or trailing spaces")
    if len(password) < 8:
        raise ValueError("a password is at least 8 characters")
    if fhir_user is not None and not _FHIR_USER.match(fhir_user):
        raise ValueError(f"{fhir_user!r} is not a reference like Practitioner/123 or Patient/p1")
    if oauth.user(repository, username) is not None:
        raise ValueError(f"there is already a user {username!r}")
    made = StoredUser(username, _HASHER.hash(password), fhir_user, now())
    oauth.add_user(repository, made)
    return made


def authenticate(repository: Repository, username: str, password: str) -> StoredUser | None:
    """The user whose name and password these are, else None."""
    found = oauth.user(repository, username)
    try:
        _HASHER.verify(found.password_hash if found else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return found
